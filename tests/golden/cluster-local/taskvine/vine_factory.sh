#!/bin/bash
# hpckit: TaskVine factory for site cluster-local; workers dial $(hostname -f):9123
exec vine_factory -T slurm -C vine_factory.json --batch-options '--partition=shared --nodes=1 --ntasks=1 --cpus-per-task=1 --mem=512M --time=00:30:00' --wrapper 'bash vine_worker_wrapper.sh' --wrapper-input vine_worker_wrapper.sh "$(hostname -f)" 9123
