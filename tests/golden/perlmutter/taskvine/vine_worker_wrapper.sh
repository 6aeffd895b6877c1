#!/bin/bash
# hpckit: runs each vine_worker for site perlmutter (prologue, container)
set -e
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV
export PATH=/usr/local/bin:/usr/bin:/bin
export HPCKIT_SCRATCH="${SCRATCH}"
mkdir -p "$HPCKIT_SCRATCH"
exec podman-hpc run --rm --net host "${HPCKIT_IMAGE:?export HPCKIT_IMAGE=<the image hpckit build --site perlmutter made>}" "$@"
