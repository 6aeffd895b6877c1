#!/bin/bash
# hpckit: TaskVine factory for site perlmutter; workers dial $(hostname -f):9123
exec vine_factory -T slurm -C vine_factory.json --batch-options '--qos=regular --constraint=cpu --nodes=1 --ntasks=1 --cpus-per-task=128 --mem=457764M --time=02:00:00 --module=cvmfs' --wrapper 'bash vine_worker_wrapper.sh' --wrapper-input vine_worker_wrapper.sh "$(hostname -f)" 9123
