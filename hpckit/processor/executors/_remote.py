"""What the distributed executors (Dask, Parsl, TaskVine) share.

* ``batches`` / ``tree_reduce``: merge payloads in groups of ``width`` so the driver receives one result.
* ``Failure`` / ``guarded``: an exception carried back as a value (with the worker's traceback text), for
  engines that would otherwise lose it (TaskVine prints it to the task's stdout).
* ``StreamingDriver``: the submit / wait / retry / merge-on-workers loop for engines that hand back
  futures one at a time (Parsl, TaskVine). Dask builds its reduction graph up front instead and lets
  the scheduler do the same work (``tree_reduce``).
* ``chunk_failure``: the error that ends a run when a chunk keeps failing; it keeps the processor's own
  exception (and message, chunk, traceback) when there is one.
* ``run_stats``: the ``executor.stats`` every executor reports (tasks retried, workers).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hpckit.errors import ChunkError, EngineError
from hpckit.processor.fileset import WorkItem
from hpckit.processor.progress import ChunkProgress
from hpckit.processor.serialize import decompress
from hpckit.processor.work import merge_payloads


def batches(seq: Sequence[Any], width: int) -> list[list[Any]]:
    width = max(2, int(width))
    return [list(seq[i : i + width]) for i in range(0, len(seq), width)]


def tree_reduce(leaves: Sequence[Any], merge: Callable[[list[Any], int], Any], width: int) -> Any:
    """Combine ``leaves`` level by level, ``width`` at a time, with ``merge(group, level)``; returns the root.
    A single leaf is returned as is (no merge task)."""
    if not leaves:
        raise ValueError("nothing to reduce")
    level, nodes = 0, list(leaves)
    while len(nodes) > 1:
        nodes = [merge(group, level) if len(group) > 1 else group[0] for group in batches(nodes, width)]
        level += 1
    return nodes[0]


@dataclass
class Failure:
    """An exception returned as a value: it survives engines that only transport return values."""

    error: BaseException
    traceback_text: str = ""


def guarded(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` on a worker; an exception comes back as a :class:`Failure`."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 - carried back to the driver and raised there
        return Failure(err, traceback.format_exc())


def guarded_merge(payloads: list[Any], compression: int | None) -> Any:
    failed = [p for p in payloads if isinstance(p, Failure)]
    if failed:
        return failed[0]
    return guarded(merge_payloads, payloads, compression)


def chunk_failure(what: str, err: BaseException, attempts: int, traceback_text: str = "") -> BaseException:
    """The exception that ends the run after ``attempts`` tries of ``what`` (a chunk or a merge)."""
    if isinstance(err, ChunkError):
        return err  # the processor's own error: its message names the chunk and carries its traceback
    detail = f"{type(err).__name__}: {err}"
    if traceback_text:
        detail += f"\n\nTraceback from the worker:\n{traceback_text}"
    return EngineError(f"{what} failed after {attempts} attempt(s): {detail}")


def run_stats(result: Any, retried: int, engine_workers: Iterable[str] = ()) -> dict:
    """``executor.stats``: tasks retried, the workers that ran chunks (host:pid, as the local executors
    report them) and the engine's own names for its workers (addresses)."""
    workers: set[str] = set()
    if isinstance(result, dict):
        workers = set(result.get("metrics", {}).get("workers", ()))
    return {"retried": int(retried), "workers": sorted(workers), "engine_workers": sorted(set(engine_workers))}


class TaskEngine(Protocol):
    """What :class:`StreamingDriver` needs from an engine: submit the two kinds of task, and wait.

    ``wait`` returns finished tasks as ``(handle, ok, value, extra_attempts, worker)``: ``value`` is the
    payload when ``ok``, else the exception (or a :class:`Failure`); ``extra_attempts`` counts re-runs the
    engine did on its own (e.g. after losing a worker); ``worker`` names where it ran ('' if unknown).
    """

    def submit_chunk(self, item: WorkItem) -> Any: ...

    def submit_merge(self, payloads: list[Any]) -> Any: ...

    def wait(self, handles: list[Any]) -> list[tuple[Any, bool, Any, int, str]]: ...


@dataclass
class _Task:
    what: str  # "chunk" or "merge"
    item: WorkItem | None = None
    payloads: list[Any] = field(default_factory=list)
    attempt: int = 1


class StreamingDriver:
    """Submit every chunk, retry a failed task up to ``retries`` times, and merge finished payloads on
    the workers in batches of ``width`` as they arrive, until one payload is left."""

    def __init__(self, engine: TaskEngine, retries: int, width: int, progress: ChunkProgress):
        self.engine = engine
        self.retries = max(0, int(retries))
        self.width = max(2, int(width))
        self.progress = progress
        self.retried = 0
        self.engine_workers: set[str] = set()

    def _submit(self, task: _Task) -> Any:
        if task.what == "chunk":
            return self.engine.submit_chunk(task.item)
        return self.engine.submit_merge(task.payloads)

    def run(self, items: list[WorkItem]) -> Any:
        pending: dict[Any, _Task] = {}
        for item in items:
            task = _Task("chunk", item)
            pending[self._submit(task)] = task
        chunks_left = len(items)
        ready: list[Any] = []
        while pending:
            for handle, ok, value, extra, worker in self.engine.wait(list(pending)):
                task = pending.pop(handle)
                self.retried += int(extra)
                if worker:
                    self.engine_workers.add(worker)
                if isinstance(value, Failure):
                    ok, tb, value = False, value.traceback_text, value.error
                else:
                    tb = getattr(value, "traceback_text", "") if not ok else ""
                if not ok:
                    if task.attempt <= self.retries:
                        task.attempt += 1
                        self.retried += 1
                        pending[self._submit(task)] = task
                        continue
                    what = task.item.describe() if task.item is not None else "merging results"
                    raise chunk_failure(what, value, task.attempt, tb)
                if task.what == "chunk":
                    chunks_left -= 1
                    self.progress.advance(1, len(task.item))
                ready.append(value)
            merging = any(t.what == "merge" for t in pending.values())
            while len(ready) >= self.width or (chunks_left == 0 and not merging and len(ready) > 1):
                batch, ready = ready[: self.width], ready[self.width :]
                task = _Task("merge", payloads=batch)
                pending[self._submit(task)] = task
                merging = True
        if not ready:
            raise EngineError("the engine returned no result")
        return decompress(ready[0])
