#!/usr/bin/env bash

#PBS -N dask-worker
#PBS -q debug
#PBS -l select=1:ncpus=32:mem=457764mb
#PBS -l place=scatter
#PBS -l walltime=01:00:00
#PBS -l filesystems=home:eagle
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV
export PATH=/usr/local/bin:/usr/bin:/bin
export PYTHONSAFEPATH=1
module load apptainer
HPCKIT_SCRATCH=/local/scratch/hpckit-"$(id -u)"
mkdir -p -m 700 "$HPCKIT_SCRATCH" 2>/dev/null || { echo "hpckit: cannot create $HPCKIT_SCRATCH on $(hostname); fix: --set scratch=<a writable directory>" >&2; exit 78; }
{ [ "$(stat -c '%u %F' -- "$HPCKIT_SCRATCH" 2>/dev/null)" = "$(id -u) directory" ] && chmod 700 "$HPCKIT_SCRATCH"; } || { echo "hpckit: $HPCKIT_SCRATCH on $(hostname) is not this user's own directory (another user made it, or it is a link): refusing to put the run's files there; fix: --set scratch=<a directory of yours>" >&2; exit 78; }
export HPCKIT_SCRATCH
export APPTAINER_TMPDIR=/local/scratch/apptainer-tmp APPTAINER_CACHEDIR=/local/scratch/apptainer-cache
apptainer exec --bind /lus/eagle "${HPCKIT_IMAGE:?export HPCKIT_IMAGE=<the image hpckit build --site polaris made>}" python3 -m distributed.cli.dask_worker tcp://<insert-scheduler-address-here>:8786 --name dummy-name --nthreads 1 --memory-limit 13.97GiB --nworkers 32 --nanny --death-timeout 60 --local-directory "$HPCKIT_SCRATCH" --no-dashboard --dashboard-address 127.0.0.1:0 --lifetime 3240s --lifetime-stagger 90s --interface bond0
