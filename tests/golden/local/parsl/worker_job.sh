#!/bin/bash
# hpckit parsl worker job for site local, rendered from templates/worker_job.sh.j2.
# Submit by hand: bash worker_job.sh
set -e
export HPCKIT_SCRATCH="${TMPDIR:-/tmp}"
mkdir -p "$HPCKIT_SCRATCH"
exec python3 -m parsl.executors.high_throughput.process_worker_pool \
    -a "${HPCKIT_PARSL_ADDRESSES:?export HPCKIT_PARSL_ADDRESSES=interchange-host}" \
    --port "${HPCKIT_PARSL_PORT:?export HPCKIT_PARSL_PORT=interchange-worker-port}" \
    --cert_dir "${HPCKIT_PARSL_CERT_DIR:-None}" \
    -c 1 --max_workers_per_node 1 \
    --cpu-affinity none \
    --logdir "${HPCKIT_SCRATCH:-$PWD}/parsl-worker-logs"
