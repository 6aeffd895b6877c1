#!/bin/bash
# hpckit: TaskVine factory for site chtc; workers dial $(hostname -f):9123
hpckit_scratch=$(mktemp -d "${TMPDIR:-/tmp}/hpckit-vine-factory.XXXXXX") || exit 1
trap 'rm -rf "$hpckit_scratch"' EXIT
vine_factory -T condor -C vine_factory.json --scratch-dir "$hpckit_scratch" --batch-options 'universe = container
container_image = $ENV(HPCKIT_IMAGE)
should_transfer_files = YES
when_to_transfer_output = ON_EXIT_OR_EVICT
periodic_remove = (JobStatus == 2) && ((time() - EnteredCurrentStatus) > 72000)' --wrapper 'bash vine_worker_wrapper.sh' --wrapper-input vine_worker_wrapper.sh "$(hostname -f)" 9123
