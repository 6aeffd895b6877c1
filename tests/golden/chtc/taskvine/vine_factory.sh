#!/bin/bash
# hpckit: TaskVine factory for site chtc; workers dial $(hostname -f):9123
exec vine_factory -T condor -C vine_factory.json --batch-options 'universe = container
container_image = $ENV(HPCKIT_IMAGE)
should_transfer_files = YES
when_to_transfer_output = ON_EXIT_OR_EVICT
periodic_remove = (JobStatus == 2) && ((time() - EnteredCurrentStatus) > 72000)' --wrapper 'bash vine_worker_wrapper.sh' --wrapper-input vine_worker_wrapper.sh "$(hostname -f)" 9123
