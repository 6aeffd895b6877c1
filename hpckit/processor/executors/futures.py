"""Fan chunks out over a local ``concurrent.futures`` pool (processes by default, threads allowed)."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from hpckit.errors import EngineError
from hpckit.processor.accumulate import DEFAULT_TREE_WIDTH, FoldTree, MergeTree, canonical_result
from hpckit.processor.executors._remote import Completions
from hpckit.processor.executors.base import ExecutorBase, warn_tailtimeout
from hpckit.processor.fileset import WorkItem
from hpckit.processor.lifeline import die_with_parent
from hpckit.processor.planning import batch_size
from hpckit.processor.serialize import decompress
from hpckit.processor.work import merge_payloads, worker_id


_PARALLEL_OPEN_MIN_WORKERS = 4
_INHERITED: dict[int, Any] = {}  # jobs handed to forked workers through fork itself, not pickling


def _run_inherited(key: int, item: Any) -> Any:
    return _INHERITED[key](item)



def _default_pool(workers: int) -> cf.Executor:
    # fork starts a worker in milliseconds and inherits the open files from preprocessing; the
    # driver has no threads running yet when the pool is made (the progress bar starts after).
    method = "fork" if sys.platform.startswith("linux") else None
    ctx = multiprocessing.get_context(method)
    # workers die with the driver (SIGKILL, OOM), not linger under PID 1
    return cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=die_with_parent,
                                  initargs=(os.getpid(),))


def _merge_in_pool(merging: Any) -> bool:
    """coffea's ``merging``: False merges in the driver; True or ``(n_batches, min, max)`` merges in the
    pool. Group sizes always follow the fixed merge tree (``treereduction``), so results do not depend
    on this choice."""
    if merging is False or merging is None:
        return False
    if merging is not True:
        n_batches, min_size, max_size = merging  # accepted for coffea compatibility (checked, unused)
        int(n_batches), int(min_size), int(max_size)
    return True


@dataclass
class FuturesExecutor(ExecutorBase):
    """``pool``: a ``concurrent.futures.Executor`` class (built with ``workers``) or an instance (used as
    is, not shut down). ``merging``: False (merge in the driver), True or ``(n_batches, min, max)``
    (merge in the pool, so the driver never holds them all). Either way groups of ``treereduction``
    consecutive chunks are merged in the fixed tree order every executor follows."""

    workers: int = 1
    pool: Any = None
    merging: Any = False
    # coffea's arguments, accepted with their meaning where hpckit has one: merges run in ``pool`` whatever
    # ``mergepool`` says (it is never shut down or changed); ``recoverable`` is honoured by the Runner only
    # for executors written coffea's way; ``tailtimeout`` is deprecated in coffea and ignored
    mergepool: Any = None
    recoverable: bool = False
    tailtimeout: Any = None
    treereduction: int = DEFAULT_TREE_WIDTH
    _session: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        warn_tailtimeout(self.tailtimeout)

    @property
    def _threads(self) -> bool:
        pool = self.pool
        cls = pool if isinstance(pool, type) else type(pool)
        return pool is not None and issubclass(cls, cf.ThreadPoolExecutor)

    @property
    def result_compression(self) -> int | None:
        return None if self._threads else self.compression

    def _make_pool(self) -> tuple[cf.Executor, bool]:
        if self.pool is None:
            return _default_pool(self.workers), True
        if isinstance(self.pool, type):
            return self.pool(max_workers=self.workers), True
        return self.pool, False

    def _open_pool(self, job: Any, warm_item: Any) -> tuple[cf.Executor, int | None]:
        """The pool of this run, kept from preprocessing to processing. The default pool forks its
        workers after the driver has warmed the event machinery and registered the live job, so
        workers start warm and need nothing pickled but the work item."""
        if self._session is None:
            inherit = self.pool is None and sys.platform.startswith("linux") and job is not None
            key = None
            if inherit:
                if warm_item is not None:
                    job.warm_up(warm_item)
                key = id(job)
                _INHERITED[key] = job
            pool, owned = self._make_pool()
            self._session = (pool, owned, key)
        pool, _, key = self._session
        return pool, key

    def map_files(self, task, specs, job=None) -> list:
        # With few workers the driver opens every file itself before forking, so every worker inherits
        # them all open; with many, opening them in parallel in the pool wins (measured: bench/).
        # Many files are read the light way (no tree is kept open to inherit): then the pool reads them,
        # a batch of files a task.
        many = getattr(task, "light", False)
        if len(specs) < 2 or job is None or self._threads or (self.workers < _PARALLEL_OPEN_MIN_WORKERS and not many):
            return super().map_files(task, specs, job)
        first = task(specs[0])  # in the driver: its open file and a warm-up are inherited by the workers
        warm = None
        if "error" not in first:
            s0 = specs[0]
            warm = WorkItem(s0.dataset, s0.filename, s0.treename, 0, 0, first["uuid"], s0.metadata, replicas=s0.replicas)
        pool, _ = self._open_pool(job, warm)
        return [first, *pool.map(task, specs[1:], chunksize=batch_size(len(specs), self.workers))]

    def close(self, cancel: bool = False) -> None:
        if self._session is not None:
            pool, owned, key = self._session
            self._session = None
            _INHERITED.pop(key, None)
            if owned:
                pool.shutdown(wait=not cancel, cancel_futures=cancel)

    def run(self, items, job, progress) -> Any:
        in_pool = _merge_in_pool(self.merging)
        opened_here = self._session is None
        pool, key = self._open_pool(job, items[0] if items else None)
        # merged in the pool: groups complete in the fixed tree; merged here: folded as they arrive
        tree: Any = None
        if items:
            tree = MergeTree(len(items), self.treereduction) if in_pool else FoldTree(len(items), self.treereduction, decompress)
        workers: set[str] = set()
        finished = Completions()
        chunks_left, last_chunk = len(items), time.perf_counter()
        merge_s = 0.0
        # chunks run at most ``window`` ahead of the oldest unfinished one, so the pool's queue and the
        # results waiting for their turn in the fold stay bounded whatever the number of chunks
        window, submitted, oldest = max(64, 16 * self.workers), 0, 0
        finished_chunks = bytearray(len(items))
        todo: dict = {}

        def submit_more() -> None:
            nonlocal submitted, oldest
            while oldest < len(items) and finished_chunks[oldest]:
                oldest += 1
            while submitted < len(items) and submitted < oldest + window:
                item = items[submitted]
                fut = pool.submit(_run_inherited, key, item) if key is not None else pool.submit(job, item)
                todo[finished.watch(fut)] = (0, submitted)
                submitted += 1

        try:
            submit_more()
            progress.set_workers(self.workers)
            while todo:
                for fut in finished.next_batch():
                    level, index = todo.pop(fut)
                    if level == 0:
                        item = items[index]
                        payload = _result(fut, item.describe())
                        finished_chunks[index] = 1
                        progress.advance(1, len(item))
                        chunks_left -= 1
                        if not chunks_left:
                            last_chunk = time.perf_counter()
                    else:
                        payload = _result(fut, "merging results")
                    t0 = time.perf_counter()
                    if not in_pool:
                        tree.put(level, index, payload)
                    else:
                        for node, group in tree.put(level, index, payload):
                            todo[finished.watch(pool.submit(merge_payloads, group, self.result_compression))] = node
                    merge_s += time.perf_counter() - t0
                submit_more()
        except BaseException:
            self.close(cancel=True)
            raise
        if opened_here:
            self.close()
        t0 = time.perf_counter()
        result = canonical_result(tree.root if not in_pool else decompress(tree.root)) if tree is not None else None
        merge_s += time.perf_counter() - t0
        if result is not None:
            workers = set(result.get("metrics", {}).get("workers", ())) or {worker_id()}
        self.stats = {"retried": 0, "workers": sorted(workers), "held_max": tree.held_max if tree else 0,
                      "waiting_max": getattr(tree, "waiting_max", 0), "merge_tail_s": time.perf_counter() - last_chunk,
                      "merge_s": merge_s}
        return result


def _result(fut: cf.Future, what: str) -> Any:
    try:
        return fut.result()
    except cf.process.BrokenProcessPool as err:
        raise EngineError(
            f"a worker process of the pool died while running {what} (killed, or out of memory); "
            "finished chunks are kept if a checkpointer is set"
        ) from err
