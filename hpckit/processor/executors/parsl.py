"""ParslExecutor (work in progress)."""

from __future__ import annotations

from dataclasses import dataclass

from hpckit.processor.executors.base import ExecutorBase


@dataclass
class ParslExecutor(ExecutorBase):
    def run(self, items, job, progress):
        raise NotImplementedError("ParslExecutor is not implemented yet")
