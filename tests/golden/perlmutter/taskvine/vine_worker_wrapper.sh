#!/bin/bash
# hpckit: runs each vine_worker for site perlmutter (prologue, container)
set -e
export HPCKIT_SCRATCH="${SCRATCH}"
mkdir -p "$HPCKIT_SCRATCH"
exec shifter --image=docker:coffeateam/coffea-dask-almalinux9:latest "$@"
