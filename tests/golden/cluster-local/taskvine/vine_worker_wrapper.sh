#!/bin/bash
# hpckit: runs each vine_worker for site cluster-local (prologue, container)
set -e
export HPCKIT_SCRATCH=/tmp
mkdir -p "$HPCKIT_SCRATCH"
exec "$@"
