#!/usr/bin/env bash

#SBATCH --job-name=dask-worker
#SBATCH --partition=debug
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=1024M
#SBATCH --time=00:30:00
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV
export PATH=/usr/local/bin:/usr/bin:/bin
export HPCKIT_SCRATCH=/tmp
mkdir -p "$HPCKIT_SCRATCH"
podman run --rm --init --network=host --pull=never -v /tmp:/tmp "${HPCKIT_IMAGE:?export HPCKIT_IMAGE=<the image hpckit build --site slurm-podman made>}" python3 -m distributed.cli.dask_worker tcp://<insert-scheduler-address-here>:8786 --name dummy-name --nthreads 1 --memory-limit 1.00GiB --nanny --death-timeout 60 --local-directory $HPCKIT_SCRATCH --lifetime 1620s --lifetime-stagger 45s --interface lo
