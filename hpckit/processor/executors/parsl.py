"""Run chunks as Parsl apps and merge their results with Parsl apps too (merging happens on the workers).

Which DataFlowKernel runs them:

* one is loaded already (``parsl.load(config)``) and ``config`` is None or that same config: use it and
  leave it loaded (the documented ``parsl.load(config)`` then ``ParslExecutor(config=config)`` works);
* none is loaded and ``config`` is given: load it for the run and clean it up afterwards (only it);
* a different config is loaded, or none at all and no ``config``: a clear ``RuntimeError``.

The processor travels once per worker, not with every task (Parsl has no scatter): each worker keeps
the job in a module-level cache keyed by its fingerprint; the first tasks carry the job, later ones only
the fingerprint, and a worker without it answers so and gets the task again with the job.
Parsl's HighThroughputExecutor offers no per-task worker placement: chunks are submitted in file order,
so consecutive chunks of a file mostly meet workers that already hold it open.

``retries``: a chunk (or merge) whose app failed is submitted again up to ``retries`` times, whatever the
DFK's own ``Config(retries=...)`` (re-runs that Parsl did on its own are counted too). A worker that
dies (killed, out of memory) fails its task with ``WorkerLost``; it is re-run on another worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hpckit.processor.executors._remote import (
    Completions,
    JobRef,
    NotCached,
    StreamingDriver,
    run_cached,
    run_cached_group,
    run_stats,
)
from hpckit.processor.executors._window import window_size
from hpckit.processor.accumulate import DEFAULT_TREE_WIDTH
from hpckit.processor.executors.base import ExecutorBase, missing_extra, warn_tailtimeout
from hpckit.processor.planning import FileBatch, batch_size, in_batches
from hpckit.processor.work import ChunkJob, merge_payloads


def _merge(payloads: list, compression):
    return merge_payloads(payloads, compression)


def _plan(batch_task, specs: list):
    return batch_task(specs)


def _current_dfk() -> Any:
    import parsl
    from parsl.errors import NoDataFlowKernelError

    try:
        return parsl.dfk()
    except NoDataFlowKernelError:
        return None


class _ParslEngine:
    """Handles are plain ints: a task sent again after a cache miss keeps its handle."""

    def __init__(self, dfk: Any, job: ChunkJob, jobs_executors: Any, merges_executors: Any):
        from parsl.app.app import python_app

        self.job = job
        self.ref = JobRef.of(job)
        self.light = self.ref.light()
        self.chunk_app = python_app(run_cached, data_flow_kernel=dfk, executors=jobs_executors)
        self.group_app = python_app(run_cached_group, data_flow_kernel=dfk, executors=jobs_executors)
        self.merge_app = python_app(_merge, data_flow_kernel=dfk, executors=merges_executors)
        # the first tasks carry the job: about one per worker slot (a miss costs one short round trip)
        self.with_job = max(4, 2 * _connected_workers(dfk))
        # parsl future -> (handle, app, its chunk or chunks): what is sent again after a cache miss
        self.futures: dict[Any, tuple[int, Any, Any]] = {}
        self.next_handle = 0
        self.misses = 0
        self.completions = Completions()
        self.dfk = dfk

    def workers(self) -> int:
        return _connected_workers(self.dfk)

    def _track(self, fut: Any, handle: int, app: Any = None, work: Any = None) -> int:
        self.futures[fut] = (handle, app, work)
        self.completions.watch(fut)
        return handle

    def _send(self, app: Any, work: Any) -> int:
        self.next_handle += 1
        ref = self.ref if self.next_handle <= self.with_job else self.light
        return self._track(app(ref, work), self.next_handle, app, work)

    def submit_chunk(self, item):
        return self._send(self.chunk_app, item)

    def submit_group(self, items):
        return self._send(self.group_app, items)

    def submit_merge(self, payloads):
        self.next_handle += 1
        return self._track(self.merge_app(payloads, self.job.compression), self.next_handle)

    def wait(self, handles):
        while True:
            done = self.completions.next_batch()
            out = []
            for fut in done:
                handle, app, work = self.futures.pop(fut)
                record = getattr(fut, "task_record", {}) or {}
                extra = int(record.get("fail_count", 0) or 0)  # re-runs the DFK did itself
                err = fut.exception()
                if err is not None:
                    out.append((handle, False, err, max(0, extra - 1), ""))
                    continue
                value = fut.result()
                if isinstance(value, NotCached):  # this worker lacks the job: send it along this time
                    self.misses += 1
                    self._track(app(self.ref, work), handle, app, work)
                    continue
                out.append((handle, True, value, extra, ""))
            if out:
                return out


@dataclass
class ParslExecutor(ExecutorBase):
    checkpoints_on_driver = True
    config: Any = None
    treereduction: int = DEFAULT_TREE_WIDTH  # results merged on the workers in batches of this many
    jobs_executors: Any = "all"  # Parsl executor labels that run chunks ...
    merges_executors: Any = "all"  # ... and merges
    merging: Any = True  # accepted for coffea compatibility; hpckit always merges on the workers
    tailtimeout: Any = None  # accepted for coffea compatibility (unused)
    recoverable: bool = False  # accepted for coffea compatibility (unused)
    window: int | None = None  # chunks submitted ahead of the oldest unfinished one (None: max(64, 16 x workers))
    # tiny chunks sent a level-0 merge group an app (None: judged from the first chunks' pace; True/False)
    group_chunks: bool | None = None

    def __post_init__(self) -> None:
        warn_tailtimeout(self.tailtimeout)
        window_size(1, self.window)
        try:
            import parsl  # noqa: F401
        except ImportError:
            raise missing_extra("parsl", "parsl") from None
        if int(self.treereduction) < 2:
            raise ValueError(f"treereduction must be at least 2, got {self.treereduction}")

    def map_files(self, task, specs, job=None) -> list:
        """Planning on the Parsl workers, a batch of files an app; a DataFlowKernel loaded here for it
        stays loaded for ``run`` and is cleaned up by ``close``."""
        if len(specs) < 2:
            return super().map_files(task, specs, job)
        from parsl.app.app import python_app

        dfk, owned = self._dfk()
        if owned:
            self._planning_dfk = dfk
        app = python_app(_plan, data_flow_kernel=dfk, executors=self.jobs_executors)
        size = batch_size(len(specs), max(2, _connected_workers(dfk)))
        futures = [app(FileBatch(task), batch) for batch in in_batches(specs, size)]
        return [meta for fut in futures for meta in fut.result()]

    def close(self) -> None:
        dfk, self._planning_dfk = getattr(self, "_planning_dfk", None), None
        if dfk is not None:
            dfk.cleanup()

    def _dfk(self) -> tuple[Any, bool]:
        import parsl

        current = _current_dfk()
        if current is not None:
            if self.config is None or current.config is self.config:
                return current, False
            raise RuntimeError(
                "a different Parsl config is already loaded (parsl.load was called with another Config); "
                "pass that same config to ParslExecutor(config=...), or config=None to use it, or call "
                "parsl.dfk().cleanup() first"
            )
        if self.config is None:
            raise RuntimeError(
                "no Parsl DataFlowKernel is loaded: call parsl.load(config) first or pass "
                "ParslExecutor(config=config)"
            )
        return parsl.load(self.config), True

    def run(self, items, job, progress) -> Any:
        dfk, owned = self._dfk()
        try:
            engine = _ParslEngine(dfk, job, self.jobs_executors, self.merges_executors)
            progress.set_workers(_connected_workers(dfk))
            driver = StreamingDriver(engine, self.retries, self.treereduction, progress, self.window,
                                     self.group_chunks, job.driver_checkpoints)
            result = driver.run(items)
            managers = _managers(dfk)
        finally:
            if owned:
                dfk.cleanup()
        self.stats = run_stats(result, driver.retried, managers)
        self.stats.update(held_max=driver.held_max, job_misses=engine.misses, merge_tail_s=driver.merge_tail,
                          in_flight_max=driver.in_flight_max, grouped_chunks=driver.grouped)
        return result


def _managers(dfk: Any) -> set[str]:
    names = set()
    for label, executor in dfk.executors.items():
        connected = getattr(executor, "connected_managers", None)
        if not callable(connected):
            continue
        try:
            for m in connected():
                names.add(f"{label}:{m.get('hostname', '?')}:{m.get('manager', '?')}")
        except Exception:  # noqa: BLE001 - informational only
            pass
    return names


def _connected_workers(dfk: Any) -> int:
    total = 0
    for executor in dfk.executors.values():
        try:
            total += int(getattr(executor, "connected_workers", 0) or 0)
        except Exception:  # noqa: BLE001
            pass
    return total
