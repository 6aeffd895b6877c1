#!/bin/bash
# hpckit: TaskVine factory for site slurm-podman; workers dial 127.0.0.1:9123
exec vine_factory -T slurm -C vine_factory.json --batch-options '--partition=debug --nodes=1 --ntasks=1 --cpus-per-task=1 --mem=1024M --time=00:30:00' --wrapper 'bash vine_worker_wrapper.sh' --wrapper-input vine_worker_wrapper.sh 127.0.0.1 9123
