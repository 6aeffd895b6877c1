#!/bin/bash
# hpckit: runs each vine_worker for site local (prologue, container)
set -e
export HPCKIT_SCRATCH="${TMPDIR:-/tmp}"
mkdir -p "$HPCKIT_SCRATCH"
exec "$@"
