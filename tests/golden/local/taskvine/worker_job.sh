#!/bin/bash
# hpckit taskvine worker job for site local, rendered from templates/worker_job.sh.j2.
# Submit by hand: bash worker_job.sh
set -e
export HPCKIT_SCRATCH="${TMPDIR:-/tmp}"
mkdir -p "$HPCKIT_SCRATCH"
exec vine_worker \
    --cores 1 \
    --workdir "$HPCKIT_SCRATCH" \
    --timeout 300 \
    ${HPCKIT_VINE_PASSWORD:+--password "$HPCKIT_VINE_PASSWORD"} \
    "${HPCKIT_VINE_MANAGER:?export HPCKIT_VINE_MANAGER=manager-host}" "${HPCKIT_VINE_PORT:?export HPCKIT_VINE_PORT=9123}"
