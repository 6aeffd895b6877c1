#!/bin/bash
#SBATCH --job-name=hpckit-dask
#SBATCH --partition=debug
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=1024M
#SBATCH --time=00:30:00
# hpckit dask worker job for site slurm-podman, rendered from templates/worker_job.sh.j2.
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
hpckit_podman run --rm --init --network=host --pull=never -v /tmp:/tmp "${HPCKIT_IMAGE:?export HPCKIT_IMAGE=<the image hpckit build --site slurm-podman made>}" python3 -m distributed.cli.dask_worker "${HPCKIT_DASK_SCHEDULER:?export HPCKIT_DASK_SCHEDULER=tls://host:port}" \
    --tls-ca-file "${HPCKIT_DASK_TLS_DIR:?export HPCKIT_DASK_TLS_DIR=<the directory of the scheduler's cert.pem and key.pem: a launch's is <run dir>/tls>}/cert.pem" \
    --tls-cert "$HPCKIT_DASK_TLS_DIR/cert.pem" --tls-key "$HPCKIT_DASK_TLS_DIR/key.pem" \
    --nthreads 1 \
    --memory-limit 1073741824 \
    --lifetime 1620s --lifetime-stagger 45s \
    --interface lo \
    --local-directory "$HPCKIT_SCRATCH" \
    --no-dashboard --dashboard-address 127.0.0.1:0 \
    --nanny
