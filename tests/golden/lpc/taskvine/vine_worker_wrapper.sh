#!/bin/bash
# hpckit: runs each vine_worker for site lpc (prologue, container)
set -e
export HPCKIT_SCRATCH=/srv
mkdir -p "$HPCKIT_SCRATCH"
exec "$@"
