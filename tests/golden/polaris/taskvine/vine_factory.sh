#!/bin/bash
# hpckit: TaskVine factory for site polaris; workers dial $(hostname -f):9123
exec vine_factory -T pbs -C vine_factory.json --batch-options '-q debug -l select=1:ncpus=32:mem=457764mb -l place=scatter -l walltime=01:00:00 -l filesystems=home:eagle' --wrapper 'bash vine_worker_wrapper.sh' --wrapper-input vine_worker_wrapper.sh "$(hostname -f)" 9123
