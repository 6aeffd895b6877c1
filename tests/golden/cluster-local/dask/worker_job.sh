#!/bin/bash
#SBATCH --job-name=hpckit-dask
#SBATCH --partition=shared
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=512M
#SBATCH --time=00:30:00
# hpckit dask worker job for site cluster-local, rendered from templates/worker_job.sh.j2.
# Submit by hand: sbatch worker_job.sh
set -e
export PYTHONSAFEPATH=1
HPCKIT_SCRATCH=/tmp/hpckit-"$(id -u)"
mkdir -p -m 700 "$HPCKIT_SCRATCH" 2>/dev/null || { echo "hpckit: cannot create $HPCKIT_SCRATCH on $(hostname); fix: --set scratch=<a writable directory>" >&2; exit 78; }
{ [ "$(stat -c '%u %F' -- "$HPCKIT_SCRATCH" 2>/dev/null)" = "$(id -u) directory" ] && chmod 700 "$HPCKIT_SCRATCH"; } || { echo "hpckit: $HPCKIT_SCRATCH on $(hostname) is not this user's own directory (another user made it, or it is a link): refusing to put the run's files there; fix: --set scratch=<a directory of yours>" >&2; exit 78; }
export HPCKIT_SCRATCH
exec python3 -m distributed.cli.dask_worker "${HPCKIT_DASK_SCHEDULER:?export HPCKIT_DASK_SCHEDULER=tls://host:port}" \
    --tls-ca-file "${HPCKIT_DASK_TLS_DIR:?export HPCKIT_DASK_TLS_DIR=<the directory of the scheduler's cert.pem and key.pem: a launch's is <run dir>/tls>}/cert.pem" \
    --tls-cert "$HPCKIT_DASK_TLS_DIR/cert.pem" --tls-key "$HPCKIT_DASK_TLS_DIR/key.pem" \
    --nthreads 1 \
    --memory-limit 536870912 \
    --lifetime 1620s --lifetime-stagger 45s \
    --interface cl0 \
    --local-directory "$HPCKIT_SCRATCH" \
    --no-dashboard --dashboard-address 127.0.0.1:0 \
    --nanny
