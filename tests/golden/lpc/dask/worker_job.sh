#!/bin/bash
# hpckit dask worker job for site lpc, rendered from templates/worker_job.sh.j2.
# Submit by hand: condor_submit worker_job.sub
set -e
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV
export PATH=/usr/local/bin:/usr/bin:/bin
export PYTHONSAFEPATH=1
HPCKIT_SCRATCH=/srv/hpckit-"$(id -u)"
mkdir -p -m 700 "$HPCKIT_SCRATCH" 2>/dev/null || { echo "hpckit: cannot create $HPCKIT_SCRATCH on $(hostname); fix: --set scratch=<a writable directory>" >&2; exit 78; }
{ [ "$(stat -c '%u %F' -- "$HPCKIT_SCRATCH" 2>/dev/null)" = "$(id -u) directory" ] && chmod 700 "$HPCKIT_SCRATCH"; } || { echo "hpckit: $HPCKIT_SCRATCH on $(hostname) is not this user's own directory (another user made it, or it is a link): refusing to put the run's files there; fix: --set scratch=<a directory of yours>" >&2; exit 78; }
export HPCKIT_SCRATCH
export HPCKIT_WORKER_HOST="$(ip -o route get 8.8.8.8 2>/dev/null | sed -n 's/.* src \([^ ]*\).*/\1/p')"
exec python3 -m distributed.cli.dask_worker "${HPCKIT_DASK_SCHEDULER:?export HPCKIT_DASK_SCHEDULER=tls://host:port}" \
    --tls-ca-file "${HPCKIT_DASK_TLS_DIR:?export HPCKIT_DASK_TLS_DIR=<the directory of the scheduler's cert.pem and key.pem: a launch's is <run dir>/tls>}/cert.pem" \
    --tls-cert "$HPCKIT_DASK_TLS_DIR/cert.pem" --tls-key "$HPCKIT_DASK_TLS_DIR/key.pem" \
    --nthreads 1 \
    --memory-limit 2000000000 \
    --lifetime 28200s --lifetime-stagger 150s \
    --host "$HPCKIT_WORKER_HOST" \
    --worker-port 10000:10070 \
    --local-directory "$HPCKIT_SCRATCH" \
    --no-dashboard --dashboard-address 127.0.0.1:0 \
    --nanny
