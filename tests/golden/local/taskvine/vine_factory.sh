#!/bin/bash
# hpckit: TaskVine factory for site local; workers dial 127.0.0.1:9123
exec vine_factory -T local -C vine_factory.json --wrapper 'bash vine_worker_wrapper.sh' --wrapper-input vine_worker_wrapper.sh 127.0.0.1 9123
