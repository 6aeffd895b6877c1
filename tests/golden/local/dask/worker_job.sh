#!/bin/bash
# hpckit dask worker job for site local, rendered from templates/worker_job.sh.j2.
# Submit by hand: bash worker_job.sh
set -e
export HPCKIT_SCRATCH="${TMPDIR:-/tmp}"
mkdir -p "$HPCKIT_SCRATCH"
exec python3 -m distributed.cli.dask_worker "${HPCKIT_DASK_SCHEDULER:?export HPCKIT_DASK_SCHEDULER=tcp://host:port}" \
    --nthreads 1 \
    --interface lo \
    --local-directory "$HPCKIT_SCRATCH" \
    --no-dashboard --dashboard-address 127.0.0.1:0 \
    --nanny
