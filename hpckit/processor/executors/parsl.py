"""Run chunks as Parsl apps and merge their results with Parsl apps too (merging happens on the workers).

Which DataFlowKernel runs them:

* one is loaded already (``parsl.load(config)``) and ``config`` is None or that same config: use it and
  leave it loaded (the documented ``parsl.load(config)`` then ``ParslExecutor(config=config)`` works);
* none is loaded and ``config`` is given: load it for the run and clean it up afterwards (only it);
* a different config is loaded, or none at all and no ``config``: a clear ``RuntimeError``.

``retries``: a chunk (or merge) whose app failed is submitted again up to ``retries`` times, whatever the
DFK's own ``Config(retries=...)`` (re-runs that Parsl did on its own are counted too). A worker that
dies (killed, out of memory) fails its task with ``WorkerLost``; it is re-run on another worker.
"""

from __future__ import annotations

import concurrent.futures as cf
from dataclasses import dataclass
from typing import Any

from hpckit.processor.executors._remote import StreamingDriver, run_stats
from hpckit.processor.executors.base import ExecutorBase, missing_extra, warn_tailtimeout
from hpckit.processor.work import ChunkJob, merge_payloads


def _run_chunk(item, job: ChunkJob):
    return job(item)


def _merge(payloads: list, compression):
    return merge_payloads(payloads, compression)


def _current_dfk() -> Any:
    import parsl
    from parsl.errors import NoDataFlowKernelError

    try:
        return parsl.dfk()
    except NoDataFlowKernelError:
        return None


class _ParslEngine:
    def __init__(self, dfk: Any, job: ChunkJob, jobs_executors: Any, merges_executors: Any):
        from parsl.app.app import python_app

        self.job = job
        self.chunk_app = python_app(_run_chunk, data_flow_kernel=dfk, executors=jobs_executors)
        self.merge_app = python_app(_merge, data_flow_kernel=dfk, executors=merges_executors)

    def submit_chunk(self, item):
        return self.chunk_app(item, self.job)

    def submit_merge(self, payloads):
        return self.merge_app(payloads, self.job.compression)

    def wait(self, handles):
        done, _ = cf.wait(handles, return_when=cf.FIRST_COMPLETED)
        out = []
        for fut in done:
            record = getattr(fut, "task_record", {}) or {}
            extra = int(record.get("fail_count", 0) or 0)  # re-runs the DFK did itself
            err = fut.exception()
            if err is None:
                out.append((fut, True, fut.result(), extra, ""))
            else:
                out.append((fut, False, err, max(0, extra - 1), ""))
        return out


@dataclass
class ParslExecutor(ExecutorBase):
    config: Any = None
    treereduction: int = 20  # results merged on the workers in batches of this many
    jobs_executors: Any = "all"  # Parsl executor labels that run chunks ...
    merges_executors: Any = "all"  # ... and merges
    merging: Any = True  # accepted for coffea compatibility; hpckit always merges on the workers
    tailtimeout: Any = None  # accepted for coffea compatibility (unused)
    recoverable: bool = False  # accepted for coffea compatibility (unused)

    def __post_init__(self) -> None:
        warn_tailtimeout(self.tailtimeout)
        try:
            import parsl  # noqa: F401
        except ImportError:
            raise missing_extra("parsl", "parsl") from None
        if int(self.treereduction) < 2:
            raise ValueError(f"treereduction must be at least 2, got {self.treereduction}")

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
            driver = StreamingDriver(engine, self.retries, self.treereduction, progress)
            result = driver.run(items)
            managers = _managers(dfk)
        finally:
            if owned:
                dfk.cleanup()
        self.stats = run_stats(result, driver.retried, managers)
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
