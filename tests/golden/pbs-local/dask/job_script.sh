#!/usr/bin/env bash

#PBS -N dask-worker
#PBS -q debug
#PBS -l nodes=1:ppn=1
#PBS -l mem=1024mb
#PBS -l walltime=00:30:00
export HPCKIT_SCRATCH=/tmp
mkdir -p "$HPCKIT_SCRATCH"
python3 -m distributed.cli.dask_worker tcp://<insert-scheduler-address-here>:8786 --name dummy-name --nthreads 1 --memory-limit 1.00GiB --nanny --death-timeout 60 --local-directory "$HPCKIT_SCRATCH" --no-dashboard --dashboard-address 127.0.0.1:0 --lifetime 1620s --lifetime-stagger 45s --interface lo
