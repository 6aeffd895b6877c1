#!/bin/bash
#SBATCH --job-name=hpckit-dask
#SBATCH --qos=regular
#SBATCH --constraint=cpu
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=128
#SBATCH --mem=457764M
#SBATCH --time=02:00:00
#SBATCH --module=cvmfs
# hpckit dask worker job for site perlmutter, rendered from templates/worker_job.sh.j2.
# Submit by hand: sbatch worker_job.sh
set -e
export HPCKIT_SCRATCH="${SCRATCH}"
mkdir -p "$HPCKIT_SCRATCH"
exec shifter --image=docker:coffeateam/coffea-dask-almalinux9:latest python3 -m distributed.cli.dask_worker "${HPCKIT_DASK_SCHEDULER:?export HPCKIT_DASK_SCHEDULER=tcp://host:port}" \
    --nthreads 4 --nworkers 32 \
    --memory-limit 15000000000 \
    --lifetime 6600s --lifetime-stagger 150s \
    --interface hsn0 \
    --local-directory "$HPCKIT_SCRATCH" \
    --no-dashboard \
    --nanny
