#!/bin/bash
# hpckit parsl worker job for site chtc, rendered from templates/worker_job.sh.j2.
# Submit by hand: condor_submit worker_job.sub
set -e
export HPCKIT_SCRATCH="${_CONDOR_SCRATCH_DIR}"
mkdir -p "$HPCKIT_SCRATCH"
exec process_worker_pool.py \
    -a "${HPCKIT_PARSL_ADDRESSES:?export HPCKIT_PARSL_ADDRESSES=interchange-host}" \
    --port "${HPCKIT_PARSL_PORT:?export HPCKIT_PARSL_PORT=interchange-worker-port}" \
    --cert_dir "${HPCKIT_PARSL_CERT_DIR:-None}" \
    -c 1 --max_workers_per_node 1 -m 4.0 \
    --drain_period 71400 \
    --cpu-affinity none \
    --logdir "${HPCKIT_SCRATCH:-$PWD}/parsl-worker-logs"
