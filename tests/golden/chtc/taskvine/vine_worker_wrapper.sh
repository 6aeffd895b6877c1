#!/bin/bash
# hpckit: runs each vine_worker for site chtc (prologue, container)
set -e
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV
export PATH=/usr/local/bin:/usr/bin:/bin
export HPCKIT_SCRATCH="${_CONDOR_SCRATCH_DIR}"
mkdir -p "$HPCKIT_SCRATCH"
exec "$@"
