#!/usr/bin/env bash

#SBATCH --job-name=dask-worker
#SBATCH --partition=shared
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=512M
#SBATCH --time=00:30:00
export HPCKIT_SCRATCH=/tmp
mkdir -p "$HPCKIT_SCRATCH"
python3 -m distributed.cli.dask_worker tcp://<insert-scheduler-address-here>:8786 --name dummy-name --nthreads 1 --memory-limit 512.00MiB --nanny --death-timeout 60 --local-directory "$HPCKIT_SCRATCH" --no-dashboard --dashboard-address 127.0.0.1:0 --lifetime 1620s --lifetime-stagger 45s --interface cl0
