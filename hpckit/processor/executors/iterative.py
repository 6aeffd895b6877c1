"""Run chunks one after the other in this process: for debugging and deterministic tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpckit.processor.accumulate import DEFAULT_TREE_WIDTH, canonical_result, tree_accumulate
from hpckit.processor.executors.base import ExecutorBase
from hpckit.processor.work import worker_id


@dataclass
class IterativeExecutor(ExecutorBase):
    workers: int = 1  # accepted for coffea compatibility; one chunk at a time
    treereduction: int = DEFAULT_TREE_WIDTH  # merge order: the fixed tree every executor follows

    @property
    def result_compression(self) -> int | None:
        return None

    def run(self, items, job, progress) -> Any:
        progress.set_workers(1)

        def results():
            for item in items:
                yield job(item)
                progress.advance(1, len(item))

        result = canonical_result(tree_accumulate(results(), len(items), self.treereduction))
        self.stats = {"retried": 0, "workers": [worker_id()]}
        return result
