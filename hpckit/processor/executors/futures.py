"""Fan chunks out over a local ``concurrent.futures`` pool (processes by default, threads allowed)."""

from __future__ import annotations

import concurrent.futures as cf
from concurrent.futures.process import BrokenProcessPool
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from multiprocessing import context as mp_context, popen_forkserver, spawn
from typing import Any

from hpckit.core.errors import EngineError
from hpckit.processor.accumulate import DEFAULT_TREE_WIDTH, FoldTree, MergeTree, canonical_result
from hpckit.processor.executors._groups import ChunkGroups, describe_run
from hpckit.processor.executors._remote import Completions
from hpckit.processor.executors._window import SubmitWindow, window_size
from hpckit.processor.executors.base import ExecutorBase, warn_tailtimeout
from hpckit.processor.fileset import WorkItem
from hpckit.processor.lifeline import die_with_parent
from hpckit.processor.planning import batch_size
from hpckit.processor.serialize import decompress
from hpckit.processor.work import load_result, merge_payloads, run_group, worker_id

_PARALLEL_OPEN_MIN_WORKERS = 4
_INHERITED: dict[int, Any] = {}  # jobs handed to forked workers through fork itself, not pickling


def _run_inherited(key: int, item: Any) -> Any:
    return _INHERITED[key](item)


class _InFlight:
    """Which chunk each worker process of the default pool is running, in shared memory the workers
    inherit: when a worker dies (SIGKILL, OOM) the pool breaks and every future fails alike; this says
    which chunks were actually cut short, so only they use up one of their ``retries``."""

    def __init__(self, ctx: Any, workers: int):
        self.slots = ctx.RawArray("q", max(1, workers))  # chunk index + 1 per worker process, 0: idle
        self.claimed = ctx.Value("i", 0)

    def running(self) -> set[int]:
        return {int(v) - 1 for v in self.slots if v > 0}


_SLOT: tuple[Any, int] | None = None  # in a worker: (its in-flight array, its slot)


def _init_worker(parent: int | None, inflight: _InFlight) -> None:
    global _SLOT
    # workers die with the driver (SIGKILL, OOM), not linger under PID 1; a fork server's workers die with
    # the fork server, which ends when the driver does
    die_with_parent(parent if parent is not None else os.getppid())
    with inflight.claimed.get_lock():
        slot = inflight.claimed.value % len(inflight.slots)
        inflight.claimed.value += 1
    _SLOT = (inflight.slots, slot)


def _tracked(index: int, fn: Any, *args: Any) -> Any:
    slots, slot = _SLOT if _SLOT is not None else (None, 0)
    if slots is not None:
        slots[slot] = index + 1
    try:
        return fn(*args)
    finally:
        if slots is not None:
            slots[slot] = 0


def _run_group(first: int, key: int | None, job: Any, items: list, compression: int | None) -> Any:
    """A merge group in a pool process, each chunk marked running in its turn, so a dying process is
    charged to the chunk it was on."""
    job = _INHERITED[key] if key is not None else job
    return run_group(lambda offset, item: _tracked(first + offset, job.run, item), items, compression)


def fork_is_safe() -> bool:
    """Whether the pool may fork this process. Not once the XRootD client is loaded: its threads and
    fork handlers are live after a root:// read, and a fork then can hang for good (seen here: the
    driver stuck in fork() after planning against a stopped server; xrootd/xrootd#1405)."""
    return sys.platform.startswith("linux") and not any(m in sys.modules for m in ("XRootD.client", "pyxrootd"))


class _NoMainPopen(popen_forkserver.Popen):
    """A fork server's worker that does not import the driver's ``__main__`` (multiprocessing runs the
    user's script again in each worker, so a script without an ``if __name__ == "__main__":`` guard would
    start its whole analysis in every worker). The workers need nothing from it: the processor travels as a
    pickled blob, by value."""

    def _launch(self, process_obj: Any) -> None:
        make = spawn.get_preparation_data

        def without_main(name: str) -> dict:
            data = make(name)
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
            return data

        spawn.get_preparation_data = without_main
        try:
            super()._launch(process_obj)
        finally:
            spawn.get_preparation_data = make


class _NoMainProcess(mp_context.ForkServerProcess):
    @staticmethod
    def _Popen(process_obj: Any) -> Any:
        return _NoMainPopen(process_obj)


class _NoMainForkServer(mp_context.ForkServerContext):
    Process = _NoMainProcess


def _default_pool(workers: int, fork: bool = True) -> tuple[cf.Executor, _InFlight]:
    # fork starts a worker in milliseconds and inherits the open files from preprocessing; the
    # driver has no threads running yet when the pool is made (the progress bar starts after).
    # Without fork (XRootD loaded): a fork server started fresh, which never held an XRootD connection and
    # imports nothing of the user's script (nor do its workers).
    if not sys.platform.startswith("linux"):
        method, ctx = None, multiprocessing.get_context()
    elif fork:
        method, ctx = "fork", multiprocessing.get_context("fork")
    else:
        method, ctx = "forkserver", _NoMainForkServer()
        ctx.set_forkserver_preload([])
    inflight = _InFlight(ctx, workers)
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                                  initargs=(os.getpid() if method == "fork" else None, inflight))
    return pool, inflight


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
    window: int | None = None  # chunks submitted ahead of the oldest unfinished one (None: max(64, 16 x workers))
    # tiny chunks sent a whole merge group a task (None: when the first chunks show they are tiny)
    group_chunks: bool | None = None
    _session: Any = field(default=None, init=False, repr=False, compare=False)
    _forks: bool = field(default=True, init=False, repr=False, compare=False)  # the pool forks this process
    _replaced: int = field(default=0, init=False, repr=False, compare=False)  # pools replaced in this run

    def __post_init__(self) -> None:
        warn_tailtimeout(self.tailtimeout)
        window_size(1, self.window)  # checked now, not when the run starts

    @property
    def _threads(self) -> bool:
        pool = self.pool
        cls = pool if isinstance(pool, type) else type(pool)
        return pool is not None and issubclass(cls, cf.ThreadPoolExecutor)

    @property
    def result_compression(self) -> int | None:
        return None if self._threads else self.compression

    def _make_pool(self) -> tuple[cf.Executor, bool, _InFlight | None]:
        if self.pool is None:
            pool, inflight = _default_pool(self.workers, fork=self._forks)
            return pool, True, inflight
        if isinstance(self.pool, type):
            return self.pool(max_workers=self.workers), True, None
        return self.pool, False, None

    def _open_pool(self, job: Any, warm_item: Any) -> tuple[cf.Executor, int | None]:
        """The pool of this run, kept from preprocessing to processing. The default pool forks its
        workers after the driver has warmed the event machinery and registered the live job, so
        workers start warm and need nothing pickled but the work item."""
        if self._session is None:
            self._forks = fork_is_safe()
            inherit = self.pool is None and self._forks and job is not None
            key = None
            if inherit:
                if warm_item is not None:
                    job.warm_up(warm_item)
                key = id(job)
                _INHERITED[key] = job
            pool, owned, inflight = self._make_pool()
            self._session = (pool, owned, key, inflight)
        pool, _, key, _ = self._session
        return pool, key

    def _replace_pool(self) -> cf.Executor:
        """A fresh default pool after one broke (a worker process died); the job stays inherited."""
        pool, owned, key, _ = self._session
        pool.shutdown(wait=False, cancel_futures=True)
        new, inflight = _default_pool(self.workers, fork=self._forks)
        self._session = (new, owned, key, inflight)
        return new

    def map_files(self, task, specs, job=None) -> list:
        # With few workers the driver opens every file itself before forking, so every worker inherits
        # them all open; with many, opening them in parallel in the pool wins (measured: bench/).
        # Many files are read the light way (no tree is kept open to inherit): then the pool reads them,
        # a batch of files a task.
        many = getattr(task, "light", False)
        if len(specs) < 2 or self._threads:
            return super().map_files(task, specs, job)
        if job is None:  # planning alone (Runner.preprocess): a pool of plain workers, ended by close()
            if not many or self.workers < 2:
                return super().map_files(task, specs, job)
            pool, _ = self._open_pool(None, None)
            return list(pool.map(task, specs, chunksize=batch_size(len(specs), self.workers)))
        if self.workers < _PARALLEL_OPEN_MIN_WORKERS and not many:
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
            pool, owned, key, _ = self._session
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
            tree = MergeTree(len(items), self.treereduction) if in_pool else FoldTree(len(items), self.treereduction, load_result)
        workers: set[str] = set()
        finished = Completions()
        chunks_left, last_chunk = len(items), time.perf_counter()
        merge_s = 0.0
        # chunks run at most a window ahead of the oldest unfinished one, so the pool's queue and the
        # results waiting for their turn in the fold stay bounded whatever the number of chunks
        window = SubmitWindow(len(items), window_size(self.workers, self.window))
        width = tree.width if tree is not None else 2
        grouping = ChunkGroups(len(items), width, self.workers, self.group_chunks)
        grouping.widen(window)
        todo: dict[cf.Future, tuple[int, int]] = {}
        merges: dict[tuple[int, int], list] = {}  # a merge's inputs, kept until it is done (resubmitted if lost)
        lost: dict[int, int] = {}  # chunk index -> times a dying pool process cut it short
        self._replaced = 0

        def submit(node: tuple[int, int]) -> None:
            level, index = node
            run = grouping.runs.get(node)
            if run is not None:
                lo, hi = run
                fut = pool.submit(_run_group, lo, key, None if key is not None else job, items[lo:hi],
                                  self.result_compression)
            elif level:
                fut = pool.submit(_tracked, -1, merge_payloads, merges[node], self.result_compression)
            elif key is not None:
                fut = pool.submit(_tracked, index, _run_inherited, key, items[index])
            else:
                fut = pool.submit(_tracked, index, job, items[index])
            todo[finished.watch(fut)] = node

        def submit_more() -> None:
            for index in window.take():
                node = grouping.take(index)
                if node is not None:
                    submit(node)

        try:
            submit_more()
            progress.set_workers(self.workers)
            while todo:
                for fut in finished.next_batch():
                    if fut not in todo:
                        continue  # a future of a pool that broke, already resubmitted
                    level, index = node = todo[fut]
                    if _broken(fut) and self._recoverable():
                        # a pool process died: every unfinished future of that pool is lost with it
                        pool = self._recover(fut, lost, items)
                        nodes = sorted(todo.values())
                        todo.clear()
                        for n in nodes:
                            submit(n)
                        break
                    todo.pop(fut)
                    run = grouping.runs.pop(node, None)
                    if level == 0 or run is not None:
                        lo, hi = run or (index, index + 1)
                        what = describe_run(items[lo], hi - lo)
                        payload = _result(fut, what)
                        for i in range(lo, hi):
                            window.finish(i)
                        progress.advance(hi - lo, sum(len(items[i]) for i in range(lo, hi)))
                        grouping.finished(hi - lo, window)
                        chunks_left -= hi - lo
                        if not chunks_left:
                            last_chunk = time.perf_counter()
                    else:
                        payload = _result(fut, "merging results")
                        merges.pop(node, None)
                    t0 = time.perf_counter()
                    if not in_pool:
                        tree.put(level, index, payload, raw=level == 0 or run is not None)
                    else:
                        for up, group in tree.put(level, index, payload):
                            merges[up] = group
                            submit(up)
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
        self.stats = {"retried": sum(lost.values()), "workers": sorted(workers), "held_max": tree.held_max if tree else 0,
                      "waiting_max": getattr(tree, "waiting_max", 0), "merge_tail_s": time.perf_counter() - last_chunk,
                      "merge_s": merge_s, "pools_replaced": self._replaced,
                      "in_flight_max": window.in_flight_max,
                      "grouped_chunks": grouping.grouped}
        return result

    def _recoverable(self) -> bool:
        """Only the default process pool is replaced; a pool the caller gave is theirs to mend."""
        return self._session is not None and self._session[3] is not None

    def _recover(self, fut: cf.Future, lost: dict[int, int], items: list) -> cf.Executor:
        """A pool process died: charge one attempt to each chunk that was running (over ``retries``: the
        run fails naming it), start a fresh pool; the caller resubmits everything not finished."""
        inflight = self._session[3]
        for index in sorted(inflight.running()):
            if index < 0 or index >= len(items):
                continue
            lost[index] = lost.get(index, 0) + 1
            if lost[index] > self.retries:
                raise EngineError(
                    f"{items[index].describe()}: the pool process running it died {lost[index]} times (killed, or "
                    f"out of memory; retries={self.retries}); finished chunks are kept if a checkpointer is set"
                ) from fut.exception()
        if self._replaced >= max(8, 2 * len(items)):
            _result(fut, "the run")  # the pool keeps dying with nothing to blame: give up
        self._replaced += 1
        return self._replace_pool()


def _broken(fut: cf.Future) -> bool:
    return fut.done() and not fut.cancelled() and isinstance(fut.exception(), BrokenProcessPool)


def _result(fut: cf.Future, what: str) -> Any:
    try:
        return fut.result()
    except BrokenProcessPool as err:
        raise EngineError(
            f"a worker process of the pool died while running {what} (killed, or out of memory); "
            "finished chunks are kept if a checkpointer is set"
        ) from err
