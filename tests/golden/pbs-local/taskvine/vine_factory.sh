#!/bin/bash
# hpckit: TaskVine factory for site pbs-local; workers dial 127.0.0.1:9123
exec vine_factory -T torque -C vine_factory.json --batch-options '-q debug -l nodes=1:ppn=1 -l mem=1024mb -l walltime=00:30:00' --wrapper 'bash vine_worker_wrapper.sh' --wrapper-input vine_worker_wrapper.sh 127.0.0.1 9123
