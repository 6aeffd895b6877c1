#!/bin/bash
#PBS -N hpckit-dask
#PBS -q debug
#PBS -l select=1:ncpus=32:mem=457764mb
#PBS -l place=scatter
#PBS -l walltime=01:00:00
#PBS -l filesystems=home:eagle
# hpckit dask worker job for site polaris, rendered from templates/worker_job.sh.j2.
# Submit by hand: qsub worker_job.sh
set -e
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV
export PATH=/usr/local/bin:/usr/bin:/bin
module load apptainer
export HPCKIT_SCRATCH=/local/scratch
mkdir -p "$HPCKIT_SCRATCH"
export APPTAINER_TMPDIR=/local/scratch/apptainer-tmp APPTAINER_CACHEDIR=/local/scratch/apptainer-cache
exec apptainer exec --bind /lus/eagle "${HPCKIT_IMAGE:?export HPCKIT_IMAGE=<the image hpckit build --site polaris made>}" python3 -m distributed.cli.dask_worker "${HPCKIT_DASK_SCHEDULER:?export HPCKIT_DASK_SCHEDULER=tcp://host:port}" \
    --nthreads 1 --nworkers 32 \
    --memory-limit 15000000000 \
    --lifetime 3240s --lifetime-stagger 90s \
    --interface bond0 \
    --local-directory "$HPCKIT_SCRATCH" \
    --no-dashboard --dashboard-address 127.0.0.1:0 \
    --nanny
