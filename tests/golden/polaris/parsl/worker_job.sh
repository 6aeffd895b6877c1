#!/bin/bash
#PBS -N hpckit-parsl
#PBS -q debug
#PBS -l select=1:ncpus=32:mem=457764mb
#PBS -l place=scatter
#PBS -l walltime=01:00:00
#PBS -l filesystems=home:eagle
# hpckit parsl worker job for site polaris, rendered from templates/worker_job.sh.j2.
# Submit by hand: qsub worker_job.sh
set -e
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV
export PATH=/usr/local/bin:/usr/bin:/bin
module load apptainer
export HPCKIT_SCRATCH=/local/scratch
mkdir -p "$HPCKIT_SCRATCH"
export APPTAINER_TMPDIR=/local/scratch/apptainer-tmp APPTAINER_CACHEDIR=/local/scratch/apptainer-cache
exec apptainer exec --bind /lus/eagle "${HPCKIT_IMAGE:?export HPCKIT_IMAGE=<the image hpckit build --site polaris made>}" python3 -m parsl.executors.high_throughput.process_worker_pool \
    -a "${HPCKIT_PARSL_ADDRESSES:?export HPCKIT_PARSL_ADDRESSES=interchange-host}" \
    --port "${HPCKIT_PARSL_PORT:?export HPCKIT_PARSL_PORT=interchange-worker-port}" \
    --cert_dir "${HPCKIT_PARSL_CERT_DIR:-None}" \
    -c 1 --max_workers_per_node 32 -m 15.0 \
    --drain_period 3240 \
    --cpu-affinity none \
    --logdir "${HPCKIT_SCRATCH:-$PWD}/parsl-worker-logs"
