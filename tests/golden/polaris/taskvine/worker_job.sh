#!/bin/bash
#PBS -N hpckit-taskvine
#PBS -q debug
#PBS -l select=1:ncpus=32:mem=457764mb
#PBS -l place=scatter
#PBS -l walltime=01:00:00
#PBS -l filesystems=home:eagle
# hpckit taskvine worker job for site polaris, rendered from templates/worker_job.sh.j2.
# Submit by hand: qsub worker_job.sh
set -e
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV
export PATH=/usr/local/bin:/usr/bin:/bin
export PYTHONSAFEPATH=1
module load apptainer
HPCKIT_SCRATCH=/local/scratch/hpckit-"$(id -u)"
mkdir -p -m 700 "$HPCKIT_SCRATCH" 2>/dev/null || { echo "hpckit: cannot create $HPCKIT_SCRATCH on $(hostname); fix: --set scratch=<a writable directory>" >&2; exit 78; }
{ [ "$(stat -c '%u %F' -- "$HPCKIT_SCRATCH" 2>/dev/null)" = "$(id -u) directory" ] && chmod 700 "$HPCKIT_SCRATCH"; } || { echo "hpckit: $HPCKIT_SCRATCH on $(hostname) is not this user's own directory (another user made it, or it is a link): refusing to put the run's files there; fix: --set scratch=<a directory of yours>" >&2; exit 78; }
export HPCKIT_SCRATCH
export APPTAINER_TMPDIR=/local/scratch/apptainer-tmp APPTAINER_CACHEDIR=/local/scratch/apptainer-cache
hpckit_mine="${TMPDIR:-/tmp}"/hpckit-"$(id -u)"
mkdir -p -m 700 "$hpckit_mine" 2>/dev/null || { echo "hpckit: cannot create $hpckit_mine on $(hostname); fix: --set env_delivery.node_scratch=<a writable directory>" >&2; exit 78; }
{ [ "$(stat -c '%u %F' -- "$hpckit_mine" 2>/dev/null)" = "$(id -u) directory" ] && chmod 700 "$hpckit_mine"; } || { echo "hpckit: $hpckit_mine on $(hostname) is not this user's own directory (another user made it, or it is a link): refusing to put the run's files there; fix: --set env_delivery.node_scratch=<a directory of yours>" >&2; exit 78; }
export TMPDIR="$HPCKIT_SCRATCH"
exec apptainer exec --bind /lus/eagle "${HPCKIT_IMAGE:?export HPCKIT_IMAGE=<the image hpckit build --site polaris made>}" vine_worker \
    --cores 32 --memory 457764 --disk 610352 \
    --wall-time 3240 \
    --timeout 300 \
    ${HPCKIT_VINE_PASSWORD:+--password "$HPCKIT_VINE_PASSWORD"} \
    "${HPCKIT_VINE_MANAGER:?export HPCKIT_VINE_MANAGER=manager-host}" "${HPCKIT_VINE_PORT:?export HPCKIT_VINE_PORT=9123}"
