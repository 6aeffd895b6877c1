#!/bin/bash
# hpckit taskvine worker job for site lpc, rendered from templates/worker_job.sh.j2.
# Submit by hand: condor_submit worker_job.sub
set -e
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV
export PATH=/usr/local/bin:/usr/bin:/bin
export HPCKIT_SCRATCH=/srv
mkdir -p "$HPCKIT_SCRATCH"
exec vine_worker \
    --cores 1 --memory 1908 --disk 191 \
    --wall-time 28200 \
    --workdir "$HPCKIT_SCRATCH" \
    --timeout 300 \
    ${HPCKIT_VINE_PASSWORD:+--password "$HPCKIT_VINE_PASSWORD"} \
    "${HPCKIT_VINE_MANAGER:?export HPCKIT_VINE_MANAGER=manager-host}" "${HPCKIT_VINE_PORT:?export HPCKIT_VINE_PORT=9123}"
