"""What every executor shares. An executor only moves work items to workers and results back;
chunking, merging rules, metrics and checkpoints live in the Runner and ``ChunkJob``."""

from __future__ import annotations

import dataclasses
import warnings
from abc import ABC
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hpckit.processor.accumulate import accumulate
from hpckit.processor.fileset import WorkItem
from hpckit.processor.progress import ChunkProgress
from hpckit.processor.serialize import compress
from hpckit.processor.work import ChunkJob


@dataclass
class ExecutorBase(ABC):
    """``status``: draw a progress bar. ``compression``: LZ4 level for results crossing processes
    (None: raw pickles). ``retries``: attempts after the first for file errors inside a chunk; engines
    that can lose a worker also use it for re-running lost tasks."""

    status: bool = True
    compression: int | None = 1
    retries: int = 3
    unit: str = "items"  # coffea's progress-bar labels, accepted with the same meaning
    desc: str = "Processing"
    function_name: str | None = None
    # False where the workers cannot see the driver's files (a site without a shared file system; set by
    # `hpckit launch` and hpckit.cluster there): a checkpointer's files are then read and written by the
    # driver, in the executors that can (``checkpoints_on_driver``), and refused by the others
    shared_filesystem: bool = True
    # filled by run(): engine-level facts for the metrics (tasks retried, workers seen)
    stats: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    checkpoints_on_driver: ClassVar[bool] = False  # run() honours ChunkJob.driver_checkpoints

    def copy(self, **changes: Any) -> "ExecutorBase":
        with warnings.catch_warnings():  # a copy is not a second occasion to deprecate an argument
            warnings.simplefilter("ignore", DeprecationWarning)
            return dataclasses.replace(self, **changes)

    def __call__(self, items: Any, function: Any, accumulator: Any) -> tuple[Any, Any]:
        """coffea's executor call: ``function(item)`` for every item, accumulated into ``accumulator``;
        returns ``(accumulator, 0)``. A subclass written coffea's way overrides this and returns
        ``(partial accumulator, exception)`` on failure; the Runner then uses it through ``run``."""
        items = list(items)
        if type(self).run is ExecutorBase.run:
            raise TypeError(f"{type(self).__name__} implements neither run() nor __call__()")
        wrapped = [_ForeignItem(i, n) for n, i in enumerate(items)]
        with ChunkProgress(False, len(wrapped)) as progress:
            out = self.run(wrapped, _CallFunction(function, self.result_compression), progress)
        return accumulate([out], accumulator) if accumulator is not None else out, 0

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

    def run(self, items: list[WorkItem], job: ChunkJob, progress: ChunkProgress) -> Any:
        """Run ``job`` on every item and return the merged (decompressed) chunk result.

        This default serves executors written coffea's way (only ``__call__``): a failure they hand
        back with the partial accumulator is returned under ``"exception"`` for the Runner to judge."""
        if type(self).__call__ is ExecutorBase.__call__:
            raise TypeError(f"{type(self).__name__} implements neither run() nor __call__()")

        def one(item: WorkItem) -> Any:
            result = job.run(item)
            progress.advance(1, len(item))
            return result

        merged, exception = self(items, one, None)
        if exception not in (0, None):
            merged = dict(merged or {})
            merged["exception"] = exception
        return merged


def warn_tailtimeout(value: Any) -> None:
    """coffea deprecated ``tailtimeout``; hpckit accepts it with the same warning and ignores it."""
    if value is not None:
        warnings.warn(
            "tailtimeout is deprecated and has no effect; it will be removed", DeprecationWarning, stacklevel=4
        )


def missing_extra(package: str, extra: str) -> ImportError:
    from hpckit.core.errors import MissingExtra

    return MissingExtra(f"{package} is not installed; install it with: pip install 'hpckit[{extra}]'")


class _ForeignItem:
    """An item of a coffea-style ``executor(items, function, accumulator)`` call, which may be anything:
    it travels through the executor's ``run`` as a chunk of no entries."""

    def __init__(self, value: Any, index: int):
        self.value, self.index = value, index

    def __len__(self) -> int:
        return 0

    def describe(self) -> str:
        return f"item {self.index} ({self.value!r})"

    @property
    def filename(self) -> str:
        return ""


@dataclass
class _CallFunction:
    """``function`` as a job: called on the item's value, result compressed like a chunk's."""

    function: Any
    compression: int | None = None

    def __call__(self, item: _ForeignItem) -> Any:
        return compress(self.function(item.value), self.compression)

    def warm_up(self, item: Any) -> None:
        pass
