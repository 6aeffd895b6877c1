#!/bin/bash
# hpckit parsl worker job for site lpc, rendered from templates/worker_job.sh.j2.
# Submit by hand: condor_submit worker_job.sub
set -e
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV
export PATH=/usr/local/bin:/usr/bin:/bin
export HPCKIT_SCRATCH=/srv
mkdir -p "$HPCKIT_SCRATCH"
exec python3 -m parsl.executors.high_throughput.process_worker_pool \
    -a "${HPCKIT_PARSL_ADDRESSES:?export HPCKIT_PARSL_ADDRESSES=interchange-host}" \
    --port "${HPCKIT_PARSL_PORT:?export HPCKIT_PARSL_PORT=interchange-worker-port}" \
    --cert_dir "${HPCKIT_PARSL_CERT_DIR:-None}" \
    -c 1 --max_workers_per_node 1 -m 2.0 \
    --drain_period 28200 \
    --cpu-affinity none \
    --logdir "${HPCKIT_SCRATCH:-$PWD}/parsl-worker-logs"
