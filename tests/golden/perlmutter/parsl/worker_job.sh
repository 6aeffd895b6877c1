#!/bin/bash
#SBATCH --job-name=hpckit-parsl
#SBATCH --qos=regular
#SBATCH --constraint=cpu
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=128
#SBATCH --mem=457764M
#SBATCH --time=02:00:00
#SBATCH --module=cvmfs
# hpckit parsl worker job for site perlmutter, rendered from templates/worker_job.sh.j2.
# Submit by hand: sbatch worker_job.sh
set -e
export HPCKIT_SCRATCH="${SCRATCH}"
mkdir -p "$HPCKIT_SCRATCH"
exec shifter --image=docker:coffeateam/coffea-dask-almalinux9:latest process_worker_pool.py \
    -a "${HPCKIT_PARSL_ADDRESSES:?export HPCKIT_PARSL_ADDRESSES=interchange-host}" \
    --port "${HPCKIT_PARSL_PORT:?export HPCKIT_PARSL_PORT=interchange-worker-port}" \
    --cert_dir "${HPCKIT_PARSL_CERT_DIR:-None}" \
    -c 4 --max_workers_per_node 32 -m 15.0 \
    --drain_period 6600 \
    --cpu-affinity none \
    --logdir "${HPCKIT_SCRATCH:-$PWD}/parsl-worker-logs"
