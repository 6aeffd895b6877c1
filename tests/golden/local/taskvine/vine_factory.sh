#!/bin/bash
# hpckit: TaskVine factory for site local; workers dial 127.0.0.1:9123
hpckit_scratch=$(mktemp -d "${TMPDIR:-/tmp}/hpckit-vine-factory.XXXXXX") || exit 1
trap 'rm -rf "$hpckit_scratch"' EXIT
vine_factory -T local -C vine_factory.json --scratch-dir "$hpckit_scratch" --wrapper 'bash vine_worker_wrapper.sh' --wrapper-input vine_worker_wrapper.sh 127.0.0.1 9123
