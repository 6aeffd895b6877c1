#!/bin/bash
# hpckit: TaskVine factory for site cluster-local; workers dial $(hostname -f):9123
hpckit_scratch=$(mktemp -d "${TMPDIR:-/tmp}/hpckit-vine-factory.XXXXXX") || exit 1
trap 'rm -rf "$hpckit_scratch"' EXIT
vine_factory -T slurm -C vine_factory.json --scratch-dir "$hpckit_scratch" --batch-options '--partition=shared --nodes=1 --ntasks=1 --cpus-per-task=1 --mem=512M --time=00:30:00' --wrapper 'bash vine_worker_wrapper.sh' --wrapper-input vine_worker_wrapper.sh "$(hostname -f)" 9123
