#!/bin/bash
#SBATCH --job-name=hpckit-taskvine
#SBATCH --partition=debug
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=1024M
#SBATCH --time=00:30:00
# hpckit taskvine worker job for site slurm-podman, rendered from templates/worker_job.sh.j2.
# Submit by hand: sbatch worker_job.sh
set -e
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV
export PATH=/usr/local/bin:/usr/bin:/bin
export PYTHONSAFEPATH=1
HPCKIT_SCRATCH=/tmp/hpckit-"$(id -u)"
mkdir -p -m 700 "$HPCKIT_SCRATCH" 2>/dev/null || { echo "hpckit: cannot create $HPCKIT_SCRATCH on $(hostname); fix: --set scratch=<a writable directory>" >&2; exit 78; }
{ [ "$(stat -c '%u %F' -- "$HPCKIT_SCRATCH" 2>/dev/null)" = "$(id -u) directory" ] && chmod 700 "$HPCKIT_SCRATCH"; } || { echo "hpckit: $HPCKIT_SCRATCH on $(hostname) is not this user's own directory (another user made it, or it is a link): refusing to put the run's files there; fix: --set scratch=<a directory of yours>" >&2; exit 78; }
export HPCKIT_SCRATCH
hpckit_job="hpckit-worker-${SLURM_JOB_ID:-${PBS_JOBID:-job}}-$$"
hpckit_stop() { podman ps -q --filter "name=^$hpckit_job-" | xargs -r podman stop --time 2 >/dev/null 2>&1; }
trap hpckit_stop TERM INT HUP
hpckit_podman() { hpckit_n=$((${hpckit_n:-0} + 1)); hpckit_sub=$1; shift; podman "$hpckit_sub" --name "$hpckit_job-$hpckit_n-$(date +%s%N)" "$@" & hpckit_p=$!; hpckit_rc=0; wait "$hpckit_p" || hpckit_rc=$?; if [ "$hpckit_rc" -gt 128 ]; then hpckit_rc=0; wait "$hpckit_p" || hpckit_rc=$?; fi; return "$hpckit_rc"; }
hpckit_mine="${TMPDIR:-/tmp}"/hpckit-"$(id -u)"
mkdir -p -m 700 "$hpckit_mine" 2>/dev/null || { echo "hpckit: cannot create $hpckit_mine on $(hostname); fix: --set env_delivery.node_scratch=<a writable directory>" >&2; exit 78; }
{ [ "$(stat -c '%u %F' -- "$hpckit_mine" 2>/dev/null)" = "$(id -u) directory" ] && chmod 700 "$hpckit_mine"; } || { echo "hpckit: $hpckit_mine on $(hostname) is not this user's own directory (another user made it, or it is a link): refusing to put the run's files there; fix: --set env_delivery.node_scratch=<a directory of yours>" >&2; exit 78; }
export TMPDIR="$HPCKIT_SCRATCH"
hpckit_podman run --rm --init --network=host --pull=never -v /tmp:/tmp "${HPCKIT_IMAGE:?export HPCKIT_IMAGE=<the image hpckit build --site slurm-podman made>}" vine_worker \
    --cores 1 --memory 1024 --disk 1024 \
    --wall-time 1620 \
    --timeout 300 \
    ${HPCKIT_VINE_PASSWORD:+--password "$HPCKIT_VINE_PASSWORD"} \
    "${HPCKIT_VINE_MANAGER:?export HPCKIT_VINE_MANAGER=manager-host}" "${HPCKIT_VINE_PORT:?export HPCKIT_VINE_PORT=9123}"
