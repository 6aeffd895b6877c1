#!/bin/bash
#SBATCH --job-name=hpckit-dask
#SBATCH --partition=shared
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=512M
#SBATCH --time=00:30:00
# hpckit dask worker job for site cluster-local, rendered from templates/worker_job.sh.j2.
# Submit by hand: sbatch worker_job.sh
set -e
export HPCKIT_SCRATCH=/tmp
mkdir -p "$HPCKIT_SCRATCH"
exec python3 -m distributed.cli.dask_worker "${HPCKIT_DASK_SCHEDULER:?export HPCKIT_DASK_SCHEDULER=tcp://host:port}" \
    --nthreads 1 \
    --memory-limit 536870912 \
    --lifetime 1620s --lifetime-stagger 45s \
    --interface cl0 \
    --local-directory "$HPCKIT_SCRATCH" \
    --no-dashboard --dashboard-address 127.0.0.1:0 \
    --nanny
