#!/bin/bash
# hpckit: runs each vine_worker for site lpc (prologue, container)
set -e
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV
export PATH=/usr/local/bin:/usr/bin:/bin
export HPCKIT_SCRATCH=/srv
mkdir -p "$HPCKIT_SCRATCH"
exec "$@"
