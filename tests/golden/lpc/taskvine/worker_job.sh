#!/bin/bash
# hpckit taskvine worker job for site lpc, rendered from templates/worker_job.sh.j2.
# Submit by hand: condor_submit worker_job.sub
set -e
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV
export PATH=/usr/local/bin:/usr/bin:/bin
export PYTHONSAFEPATH=1
HPCKIT_SCRATCH=/srv/hpckit-"$(id -u)"
mkdir -p -m 700 "$HPCKIT_SCRATCH" 2>/dev/null || { echo "hpckit: cannot create $HPCKIT_SCRATCH on $(hostname); fix: --set scratch=<a writable directory>" >&2; exit 78; }
{ [ "$(stat -c '%u %F' -- "$HPCKIT_SCRATCH" 2>/dev/null)" = "$(id -u) directory" ] && chmod 700 "$HPCKIT_SCRATCH"; } || { echo "hpckit: $HPCKIT_SCRATCH on $(hostname) is not this user's own directory (another user made it, or it is a link): refusing to put the run's files there; fix: --set scratch=<a directory of yours>" >&2; exit 78; }
export HPCKIT_SCRATCH
hpckit_mine="${TMPDIR:-/tmp}"/hpckit-"$(id -u)"
mkdir -p -m 700 "$hpckit_mine" 2>/dev/null || { echo "hpckit: cannot create $hpckit_mine on $(hostname); fix: --set env_delivery.node_scratch=<a writable directory>" >&2; exit 78; }
{ [ "$(stat -c '%u %F' -- "$hpckit_mine" 2>/dev/null)" = "$(id -u) directory" ] && chmod 700 "$hpckit_mine"; } || { echo "hpckit: $hpckit_mine on $(hostname) is not this user's own directory (another user made it, or it is a link): refusing to put the run's files there; fix: --set env_delivery.node_scratch=<a directory of yours>" >&2; exit 78; }
export TMPDIR="$HPCKIT_SCRATCH"
exec vine_worker \
    --cores 1 --memory 1908 --disk 191 \
    --wall-time 28200 \
    --timeout 300 \
    ${HPCKIT_VINE_PASSWORD:+--password "$HPCKIT_VINE_PASSWORD"} \
    "${HPCKIT_VINE_MANAGER:?export HPCKIT_VINE_MANAGER=manager-host}" "${HPCKIT_VINE_PORT:?export HPCKIT_VINE_PORT=9123}"
