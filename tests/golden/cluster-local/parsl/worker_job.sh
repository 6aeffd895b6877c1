#!/bin/bash
#SBATCH --job-name=hpckit-parsl
#SBATCH --partition=shared
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=512M
#SBATCH --time=00:30:00
# hpckit parsl worker job for site cluster-local, rendered from templates/worker_job.sh.j2.
# Submit by hand: sbatch worker_job.sh
set -e
export HPCKIT_SCRATCH=/tmp
mkdir -p "$HPCKIT_SCRATCH"
exec python3 -m parsl.executors.high_throughput.process_worker_pool \
    -a "${HPCKIT_PARSL_ADDRESSES:?export HPCKIT_PARSL_ADDRESSES=interchange-host}" \
    --port "${HPCKIT_PARSL_PORT:?export HPCKIT_PARSL_PORT=interchange-worker-port}" \
    --cert_dir "${HPCKIT_PARSL_CERT_DIR:-None}" \
    -c 1 --max_workers_per_node 1 -m 0.537 \
    --drain_period 1620 \
    --cpu-affinity none \
    --logdir "${HPCKIT_SCRATCH:-$PWD}/parsl-worker-logs"
