#!/usr/bin/env bash

#SBATCH --job-name=dask-worker
#SBATCH --partition=debug
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=1024M
#SBATCH --time=00:30:00
export PYTHONSAFEPATH=1
HPCKIT_SCRATCH=/tmp/hpckit-"$(id -u)"
mkdir -p -m 700 "$HPCKIT_SCRATCH" 2>/dev/null || { echo "hpckit: cannot create $HPCKIT_SCRATCH on $(hostname); fix: --set scratch=<a writable directory>" >&2; exit 78; }
{ [ "$(stat -c '%u %F' -- "$HPCKIT_SCRATCH" 2>/dev/null)" = "$(id -u) directory" ] && chmod 700 "$HPCKIT_SCRATCH"; } || { echo "hpckit: $HPCKIT_SCRATCH on $(hostname) is not this user's own directory (another user made it, or it is a link): refusing to put the run's files there; fix: --set scratch=<a directory of yours>" >&2; exit 78; }
export HPCKIT_SCRATCH
python3 -m distributed.cli.dask_worker tcp://<insert-scheduler-address-here>:8786 --name dummy-name --nthreads 1 --memory-limit 1.00GiB --nanny --death-timeout 60 --local-directory "$HPCKIT_SCRATCH" --no-dashboard --dashboard-address 127.0.0.1:0 --lifetime 1620s --lifetime-stagger 45s --interface lo
