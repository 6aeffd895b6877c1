"""What every executor shares. An executor only moves work items to workers and results back;
chunking, merging rules, metrics and checkpoints live in the Runner and ``ChunkJob``."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from hpckit.processor.fileset import WorkItem
from hpckit.processor.progress import ChunkProgress
from hpckit.processor.work import ChunkJob


@dataclass
class ExecutorBase(ABC):
    """``status``: draw a progress bar. ``compression``: LZ4 level for results crossing processes
    (None: raw pickles). ``retries``: attempts after the first for file errors inside a chunk; engines
    that can lose a worker also use it for re-running lost tasks."""

    status: bool = True
    compression: int | None = 1
    retries: int = 3
    # filled by run(): engine-level facts for the metrics (tasks retried, workers seen)
    stats: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def copy(self, **changes: Any) -> "ExecutorBase":
        return dataclasses.replace(self, **changes)

    @property
    def result_compression(self) -> int | None:
        """Compression for chunk results: executors that never cross a process boundary use None."""
        return self.compression

    def map_files(self, task: Any, specs: list, job: ChunkJob | None = None) -> list:
        """Preprocessing: ``task(spec)`` for every file, in order. Executors with workers may fan this
        out and keep those workers (with the files open) for ``run``; ``close`` ends them."""
        return [task(spec) for spec in specs]

    def close(self) -> None:
        """Release whatever ``map_files`` kept for ``run`` (called by the Runner at the end)."""

    @abstractmethod
    def run(self, items: list[WorkItem], job: ChunkJob, progress: ChunkProgress) -> Any:
        """Run ``job`` on every item and return the merged (decompressed) chunk result."""


def missing_extra(package: str, extra: str) -> ImportError:
    from hpckit.errors import MissingExtra

    return MissingExtra(f"{package} is not installed; install it with: pip install 'hpckit[{extra}]'")
