#!/bin/bash
# hpckit: TaskVine factory for site polaris; workers dial $(hostname -f):9123
hpckit_scratch=$(mktemp -d "${TMPDIR:-/tmp}/hpckit-vine-factory.XXXXXX") || exit 1
trap 'rm -rf "$hpckit_scratch"' EXIT
vine_factory -T pbs -C vine_factory.json --scratch-dir "$hpckit_scratch" --batch-options '-q debug -l select=1:ncpus=32:mem=457764mb -l place=scatter -l walltime=01:00:00 -l filesystems=home:eagle' --wrapper 'bash vine_worker_wrapper.sh' --wrapper-input vine_worker_wrapper.sh "$(hostname -f)" 9123
