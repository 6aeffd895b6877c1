#!/bin/bash
# hpckit: runs each vine_worker for site chtc (prologue, container)
set -e
export HPCKIT_SCRATCH="${_CONDOR_SCRATCH_DIR}"
mkdir -p "$HPCKIT_SCRATCH"
exec "$@"
