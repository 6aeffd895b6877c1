#!/bin/bash
# hpckit: runs each vine_worker for site slurm-podman (prologue, container)
set -e
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV
export PATH=/usr/local/bin:/usr/bin:/bin
export HPCKIT_SCRATCH=/tmp
mkdir -p "$HPCKIT_SCRATCH"
exec podman run --rm --init --network=host --pull=never -v /tmp:/tmp "${HPCKIT_IMAGE:?export HPCKIT_IMAGE=<the image hpckit build --site slurm-podman made>}" "$@"
