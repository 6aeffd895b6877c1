#!/bin/bash
#SBATCH --job-name=hpckit-taskvine
#SBATCH --qos=regular
#SBATCH --constraint=cpu
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=128
#SBATCH --mem=457764M
#SBATCH --time=02:00:00
#SBATCH --module=cvmfs
# hpckit taskvine worker job for site perlmutter, rendered from templates/worker_job.sh.j2.
# Submit by hand: sbatch worker_job.sh
set -e
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV
export PATH=/usr/local/bin:/usr/bin:/bin
export PYTHONSAFEPATH=1
HPCKIT_SCRATCH="${SCRATCH}"/hpckit-"$(id -u)"
mkdir -p -m 700 "$HPCKIT_SCRATCH" 2>/dev/null || { echo "hpckit: cannot create $HPCKIT_SCRATCH on $(hostname); fix: --set scratch=<a writable directory>" >&2; exit 78; }
{ [ "$(stat -c '%u %F' -- "$HPCKIT_SCRATCH" 2>/dev/null)" = "$(id -u) directory" ] && chmod 700 "$HPCKIT_SCRATCH"; } || { echo "hpckit: $HPCKIT_SCRATCH on $(hostname) is not this user's own directory (another user made it, or it is a link): refusing to put the run's files there; fix: --set scratch=<a directory of yours>" >&2; exit 78; }
export HPCKIT_SCRATCH
hpckit_mine="${TMPDIR:-/tmp}"/hpckit-"$(id -u)"
mkdir -p -m 700 "$hpckit_mine" 2>/dev/null || { echo "hpckit: cannot create $hpckit_mine on $(hostname); fix: --set env_delivery.node_scratch=<a writable directory>" >&2; exit 78; }
{ [ "$(stat -c '%u %F' -- "$hpckit_mine" 2>/dev/null)" = "$(id -u) directory" ] && chmod 700 "$hpckit_mine"; } || { echo "hpckit: $hpckit_mine on $(hostname) is not this user's own directory (another user made it, or it is a link): refusing to put the run's files there; fix: --set env_delivery.node_scratch=<a directory of yours>" >&2; exit 78; }
export TMPDIR="$HPCKIT_SCRATCH"
exec podman-hpc run --rm --net host "${HPCKIT_IMAGE:?export HPCKIT_IMAGE=<the image hpckit build --site perlmutter made>}" vine_worker \
    --cores 128 --memory 457764 --disk 610352 \
    --wall-time 6600 \
    --timeout 300 \
    ${HPCKIT_VINE_PASSWORD:+--password "$HPCKIT_VINE_PASSWORD"} \
    "${HPCKIT_VINE_MANAGER:?export HPCKIT_VINE_MANAGER=manager-host}" "${HPCKIT_VINE_PORT:?export HPCKIT_VINE_PORT=9123}"
