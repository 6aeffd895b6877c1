"""DaskExecutor (work in progress)."""

from __future__ import annotations

from dataclasses import dataclass

from hpckit.processor.executors.base import ExecutorBase


@dataclass
class DaskExecutor(ExecutorBase):
    def run(self, items, job, progress):
        raise NotImplementedError("DaskExecutor is not implemented yet")
