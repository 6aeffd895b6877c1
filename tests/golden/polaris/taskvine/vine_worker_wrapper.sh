#!/bin/bash
# hpckit: runs each vine_worker for site polaris (prologue, container)
set -e
module load apptainer
export HPCKIT_SCRATCH=/local/scratch
mkdir -p "$HPCKIT_SCRATCH"
export APPTAINER_TMPDIR=/local/scratch/apptainer-tmp APPTAINER_CACHEDIR=/local/scratch/apptainer-cache
exec apptainer exec --bind /lus/eagle /lus/eagle/projects/"${HPCKIT_PROJECT}"/coffea.sif "$@"
