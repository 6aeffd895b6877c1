#!/bin/bash
# hpckit: TaskVine factory for site lpc; workers dial $(hostname -f):9123
hpckit_scratch=$(mktemp -d "${TMPDIR:-/tmp}/hpckit-vine-factory.XXXXXX") || exit 1
trap 'rm -rf "$hpckit_scratch"' EXIT
vine_factory -T condor -C vine_factory.json --scratch-dir "$hpckit_scratch" --batch-options 'universe = vanilla
+SingularityImage = "$ENV(HPCKIT_IMAGE)"
use_x509userproxy = true
should_transfer_files = YES
when_to_transfer_output = ON_EXIT_OR_EVICT
periodic_remove = (JobStatus == 2) && ((time() - EnteredCurrentStatus) > 28800)' --wrapper 'bash vine_worker_wrapper.sh' --wrapper-input vine_worker_wrapper.sh "$(hostname -f)" 9123
