#!/bin/bash
# hpckit: runs each vine_worker for site frontier (prologue, container)
set -e
export HPCKIT_SCRATCH=/lustre/orion/"${HPCKIT_PROJECT}"/scratch/"${USER}"
mkdir -p "$HPCKIT_SCRATCH"
exec apptainer exec --bind /lustre/orion /lustre/orion/"${HPCKIT_PROJECT}"/world-shared/coffea.sif "$@"
