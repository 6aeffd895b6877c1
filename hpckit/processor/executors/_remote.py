"""What the distributed executors (Dask, Parsl, TaskVine) share.

* ``batches`` / ``tree_reduce``: merge payloads in groups of ``width`` so the driver receives one result.
* ``Failure`` / ``guarded``: an exception carried back as a value (with the worker's traceback text), for
  engines that would otherwise lose it (TaskVine prints it to the task's stdout).
* ``StreamingDriver``: the submit / wait / retry / merge-on-workers loop for engines that hand back
  futures one at a time (Parsl, TaskVine), submitting through the shared bounded window
  (:mod:`._window`), tiny chunks a merge group a task where the engine can run one (:mod:`._groups`).
  Dask submits through the same window and lets its scheduler wait for a merge's inputs (a merge is
  submitted as soon as its group's tasks are).
* ``chunk_failure``: the error that ends a run when a chunk keeps failing; it keeps the processor's own
  exception (and message, chunk, traceback) when there is one.
* ``run_stats``: the ``executor.stats`` every executor reports (tasks retried, workers).
* ``JobRef`` / ``run_cached``: the processor travels once per worker process for engines without
  scatter (Parsl): a task carries the job's fingerprint, and the job itself only when the worker may not
  have it yet; a worker that misses answers ``NotCached`` and the driver sends the task again with it.
"""

from __future__ import annotations

import hashlib
import queue
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hpckit.core.errors import ChunkError, EngineError
from hpckit.processor.accumulate import MergeTree, canonical_result
from hpckit.processor.executors._groups import ChunkGroups, describe_run
from hpckit.processor.executors._window import SubmitWindow, window_size
from hpckit.processor.fileset import WorkItem
from hpckit.processor.progress import ChunkProgress
from hpckit.processor.serialize import decompress
from hpckit.processor.work import merge_payloads, run_chunks


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


class Completions:
    """Futures in the order they finish, at O(1) a future (``concurrent.futures.wait`` over every pending
    future costs O(pending) a call: quadratic at 10^4 chunks)."""

    def __init__(self) -> None:
        self._done: queue.SimpleQueue = queue.SimpleQueue()

    def watch(self, fut: Any) -> Any:
        fut.add_done_callback(self._done.put)
        return fut

    def next_batch(self) -> list[Any]:
        """Block for one finished future, then take every other one already finished."""
        out = [self._done.get()]
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out


_JOBS: dict[str, Any] = {}  # per worker process: job fingerprint -> the unpickled ChunkJob


@dataclass(frozen=True)
class NotCached:
    """A worker's answer to a task whose job it does not hold: send the task again with the job."""

    key: str


@dataclass(frozen=True)
class JobRef:
    """A job by fingerprint; ``blob`` (the pickled job) only rides along when the worker may lack it."""

    key: str
    blob: bytes | None = None

    @classmethod
    def of(cls, job: Any) -> "JobRef":
        import cloudpickle

        blob = cloudpickle.dumps(job)
        return cls(hashlib.sha256(blob).hexdigest()[:20], blob)

    def light(self) -> "JobRef":
        return JobRef(self.key)

    def load(self) -> Any:
        job = _JOBS.get(self.key)
        if job is None and self.blob is not None:
            import cloudpickle

            if len(_JOBS) >= 8:  # a long-lived worker serving many runs
                _JOBS.clear()
            job = _JOBS[self.key] = cloudpickle.loads(self.blob)
        return job


def run_cached(ref: JobRef, item: WorkItem) -> Any:
    """Run a chunk with the worker's cached job (a miss is answered, not raised: it is no failure)."""
    job = ref.load()
    if job is None:
        return NotCached(ref.key)
    return job(item)


def run_cached_group(ref: JobRef, items: list[WorkItem]) -> Any:
    """A merge group of chunks with the worker's cached job, folded there (:func:`run_chunks`)."""
    job = ref.load()
    if job is None:
        return NotCached(ref.key)
    return run_chunks(items, job)


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

    # optional: ``submit_group(items)`` runs consecutive chunks in one task and returns their folded
    # payload (:func:`run_chunks`); an engine without it is sent one chunk a task

    def wait(self, handles: list[Any]) -> list[tuple[Any, bool, Any, int, str]]: ...

    def workers(self) -> int:
        """Workers connected now (sizes the submission window)."""


class _Saved:
    """A chunk answered from the driver's checkpoints: finished before it was submitted."""

    def __init__(self, payload: Any):
        self.payload = payload


class _DriverCheckpointing:
    """An engine seen through :class:`hpckit.processor.work.DriverCheckpoints`: a chunk saved before is
    answered at once with its saved payload, a finished one is saved as its payload passes the driver. It
    has no ``submit_group``: checkpoints are per chunk, so chunks go one a task."""

    def __init__(self, engine: TaskEngine, checkpoints: Any):
        self.engine = engine
        self.checkpoints = checkpoints
        self._items: dict[Any, WorkItem] = {}

    def submit_chunk(self, item: WorkItem) -> Any:
        payload = self.checkpoints.load(item)
        if payload is not None:
            return _Saved(payload)
        handle = self.engine.submit_chunk(item)
        self._items[handle] = item
        return handle

    def submit_merge(self, payloads: list[Any]) -> Any:
        return self.engine.submit_merge(payloads)

    def workers(self) -> int:
        return self.engine.workers()

    def wait(self, handles: list[Any]) -> list[tuple[Any, bool, Any, int, str]]:
        saved = [(h, True, h.payload, 0, "") for h in handles if isinstance(h, _Saved)]
        if saved:
            return saved
        done = self.engine.wait(handles)
        for handle, ok, value, _, _ in done:
            item = self._items.pop(handle, None)
            if item is not None and ok and not isinstance(value, Failure):
                self.checkpoints.save(item, value)
        return done


@dataclass
class _Task:
    what: str  # "chunk", "group" (a level-0 merge group's chunks) or "merge"
    item: WorkItem | None = None  # the chunk, or a group's first chunk
    payloads: list[Any] = field(default_factory=list)
    attempt: int = 1
    node: tuple[int, int] = (0, 0)  # (level, index) in the merge tree; a chunk is (0, its index), a group (1, g)
    span: tuple[int, int] = (0, 0)  # the chunks it runs, [lo, hi)


class StreamingDriver:
    """Submit chunks through the bounded window (``window``: its size, None: from the engine's workers,
    followed as they come and go), retry a failed task up to ``retries`` times, and merge finished
    payloads on the workers in the fixed :class:`MergeTree` order (``width`` consecutive chunks at a
    time), so the output does not depend on which task finished first. Results waiting for their
    siblings are the only ones the driver holds (``held_max`` records the most at once); they are
    bounded by the window. ``group_chunks`` (None|True|False, as :class:`._groups.ChunkGroups`) sends
    tiny chunks a merge group a task, where the engine has ``submit_group``. ``checkpoints``: the job's
    :class:`hpckit.processor.work.DriverCheckpoints`, if any."""

    def __init__(self, engine: TaskEngine, retries: int, width: int, progress: ChunkProgress,
                 window: int | None = None, group_chunks: bool | None = False, checkpoints: Any = None):
        if checkpoints is not None:
            engine = _DriverCheckpointing(engine, checkpoints)
        self.engine = engine
        self.group_chunks = group_chunks if hasattr(engine, "submit_group") else False
        self.grouped = 0
        self.window = window
        self.in_flight_max = 0
        self.retries = max(0, int(retries))
        self.width = max(2, int(width))
        self.progress = progress
        self.retried = 0
        self.held_max = 0
        self.merge_tail = 0.0  # seconds from the last chunk's result to the merged one
        self.engine_workers: set[str] = set()

    def _submit(self, task: _Task, items: list[WorkItem]) -> Any:
        if task.what == "chunk":
            return self.engine.submit_chunk(task.item)
        if task.what == "group":
            return self.engine.submit_group(items[task.span[0]:task.span[1]])  # type: ignore[attr-defined]
        return self.engine.submit_merge(task.payloads)

    def run(self, items: list[WorkItem]) -> Any:
        if not items:
            raise EngineError("the engine returned no result")
        tree = MergeTree(len(items), self.width)
        chunks_left, last_chunk = len(items), time.perf_counter()
        pending: dict[Any, _Task] = {}
        window = SubmitWindow(len(items), window_size(self.engine.workers(), self.window))
        grouping = ChunkGroups(len(items), tree.width, self.engine.workers(), self.group_chunks)
        grouping.widen(window)
        polled = time.monotonic()

        def submit_more() -> None:
            nonlocal polled
            if self.window is None and time.monotonic() - polled > 2.0:  # workers come and go
                polled = time.monotonic()
                workers = self.engine.workers()
                window.resize(window_size(workers))
                grouping.workers = max(1, workers)
                grouping.widen(window)
            for i in window.take():
                node = grouping.take(i)
                if node is None:
                    continue  # its group goes out with the group's last chunk
                if node[0]:
                    lo, hi = grouping.runs.pop(node)
                    task = _Task("group", items[lo], node=node, span=(lo, hi))
                else:
                    task = _Task("chunk", items[i], node=node, span=(i, i + 1))
                pending[self._submit(task, items)] = task

        submit_more()
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
                    self.progress.failed()
                    if task.attempt <= self.retries:
                        task.attempt += 1
                        self.retried += 1
                        pending[self._submit(task, items)] = task
                        continue
                    lo, hi = task.span
                    what = describe_run(task.item, hi - lo) if task.item is not None else "merging results"
                    raise chunk_failure(what, value, task.attempt, tb)
                if task.what != "merge":
                    lo, hi = task.span
                    self.progress.advance(hi - lo, sum(len(items[j]) for j in range(lo, hi)))
                    for j in range(lo, hi):
                        window.finish(j)
                    grouping.finished(hi - lo, window)
                    chunks_left -= hi - lo
                    if not chunks_left:
                        last_chunk = time.perf_counter()
                task.payloads = []
                for node, group in tree.put(*task.node, value):
                    merge = _Task("merge", payloads=group, node=node)
                    pending[self._submit(merge, items)] = merge
                self.held_max = max(self.held_max, tree.held_max)
            submit_more()
        self.in_flight_max = window.in_flight_max
        self.grouped = grouping.grouped
        if not tree.done:
            raise EngineError("the engine returned no result")
        result = canonical_result(decompress(tree.root))
        self.merge_tail = time.perf_counter() - last_chunk
        return result
