#!/bin/bash
# hpckit: runs each vine_worker for site frontier (prologue, container)
set -e
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV
export PATH=/usr/local/bin:/usr/bin:/bin
export HPCKIT_SCRATCH=/lustre/orion/"${HPCKIT_PROJECT}"/scratch/"${USER}"
mkdir -p "$HPCKIT_SCRATCH"
exec apptainer exec --bind /lustre/orion "${HPCKIT_IMAGE:?export HPCKIT_IMAGE=<the image hpckit build --site frontier made>}" "$@"
