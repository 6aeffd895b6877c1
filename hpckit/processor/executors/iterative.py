"""Run chunks one after the other in this process: for debugging and deterministic tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpckit.processor.accumulate import Merger
from hpckit.processor.executors.base import ExecutorBase
from hpckit.processor.work import worker_id


@dataclass
class IterativeExecutor(ExecutorBase):
    workers: int = 1  # accepted for coffea compatibility; one chunk at a time

    @property
    def result_compression(self) -> int | None:
        return None

    def run(self, items, job, progress) -> Any:
        merged = Merger()
        progress.set_workers(1)
        for item in items:
            merged.add(job(item))
            progress.advance(1, len(item))
        self.stats = {"retried": 0, "workers": [worker_id()]}
        return merged.result
