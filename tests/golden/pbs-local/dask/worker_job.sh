#!/bin/bash
#PBS -N hpckit-dask
#PBS -q debug
#PBS -l nodes=1:ppn=1
#PBS -l mem=1024mb
#PBS -l walltime=00:30:00
# hpckit dask worker job for site pbs-local, rendered from templates/worker_job.sh.j2.
# Submit by hand: qsub worker_job.sh
set -e
export HPCKIT_SCRATCH=/tmp
mkdir -p "$HPCKIT_SCRATCH"
exec python3 -m distributed.cli.dask_worker "${HPCKIT_DASK_SCHEDULER:?export HPCKIT_DASK_SCHEDULER=tcp://host:port}" \
    --nthreads 1 \
    --memory-limit 1073741824 \
    --lifetime 1620s --lifetime-stagger 45s \
    --interface lo \
    --local-directory "$HPCKIT_SCRATCH" \
    --no-dashboard --dashboard-address 127.0.0.1:0 \
    --nanny
