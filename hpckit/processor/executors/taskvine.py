"""TaskVineExecutor (work in progress)."""

from __future__ import annotations

from dataclasses import dataclass

from hpckit.processor.executors.base import ExecutorBase


@dataclass
class TaskVineExecutor(ExecutorBase):
    def run(self, items, job, progress):
        raise NotImplementedError("TaskVineExecutor is not implemented yet")
