#!/bin/bash
# hpckit: runs each vine_worker for site polaris (prologue, container)
set -e
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV
export PATH=/usr/local/bin:/usr/bin:/bin
module load apptainer
export HPCKIT_SCRATCH=/local/scratch
mkdir -p "$HPCKIT_SCRATCH"
export APPTAINER_TMPDIR=/local/scratch/apptainer-tmp APPTAINER_CACHEDIR=/local/scratch/apptainer-cache
exec apptainer exec --bind /lus/eagle "${HPCKIT_IMAGE:?export HPCKIT_IMAGE=<the image hpckit build --site polaris made>}" "$@"
