#!/bin/bash
# hpckit: TaskVine factory for site frontier; workers dial $(hostname -f):9123
exec vine_factory -T slurm -C vine_factory.json --batch-options '--partition=batch --nodes=1 --ntasks=1 --cpus-per-task=56 --mem=427247M --time=02:00:00' --wrapper 'bash vine_worker_wrapper.sh' --wrapper-input vine_worker_wrapper.sh "$(hostname -f)" 9123
