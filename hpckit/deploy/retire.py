"""Dask workers that leave before their batch job's walltime, between chunks, handing back nothing half-done.

dask's own ``--lifetime`` calls ``Worker.close_gracefully``: it asks the scheduler to move the worker's data
elsewhere and then closes whatever the answer. When no other worker can take the data (every worker of a
generation retires at about the same time; a single worker) the scheduler aborts the retirement, the worker
closes anyway with a chunk running, and the scheduler counts that chunk as "suspicious": after a few
generations it raises ``KilledWorker``. If the retirement takes too long, the walltime kills the job first.

:class:`RetireBeforeWalltime` (a ``WorkerPlugin`` the launch registers) does it in steps instead, counted from
the job's start (``HPCKIT_JOB_START``, exported first thing by the job script), not the worker's:

1. at ``lifetime`` (+- ``stagger``): stop starting tasks (status ``closing_gracefully``; the scheduler gives the
   worker no more, and the launch submits its replacement now); the chunk in flight runs to its end;
2. move what the worker holds to a worker that stays (retried until one has connected);
3. at ``leave_by`` at the latest (``walltime - guard``), leave as an *expected* departure: a task still
   there is handed back, not counted against it, and data nobody took is recomputed;
4. close the worker and its nanny, so the job ends before its walltime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from typing import Any

from hpckit.deploy.backends.common import JOB_START_ENV

try:  # distributed refuses duck-typed plugins; a core install (no distributed) only renders
    from distributed.diagnostics.plugin import WorkerPlugin as _PluginBase
except ImportError:  # pragma: no cover - the dask extra is missing
    _PluginBase = object

logger = logging.getLogger("hpckit.retire")



def job_start() -> float:
    """When this batch job began (``HPCKIT_JOB_START``), else when this process began."""
    with contextlib.suppress(KeyError, ValueError, TypeError):
        return float(os.environ[JOB_START_ENV])
    try:
        import psutil

        return psutil.Process().create_time()
    except Exception:  # noqa: BLE001 - no psutil: count from now (later, never earlier, than the truth)
        return time.time()


def schedule(walltime: int, lifetime: int, stagger: int) -> tuple[float, float]:
    """(retire_after, leave_by) in seconds from the job's start: the retirement begins at ``lifetime`` +- a
    random ``stagger`` (so a generation does not leave at once); ``leave_by`` keeps a guard of a third of the
    margin (at least 5 s) before the walltime."""
    guard = max(5.0, (walltime - lifetime) / 3)
    retire_after = lifetime + random.uniform(-stagger, stagger)
    return max(0.0, min(retire_after, walltime - guard - 1)), walltime - guard


class RetireBeforeWalltime(_PluginBase):  # type: ignore[misc, valid-type]
    """The ``WorkerPlugin`` a launch registers on its Dask client: every worker, also those joining later."""

    name = "hpckit-retire-before-walltime"
    idempotent = True

    def __init__(self, walltime: int, lifetime: int, stagger: int):
        self.walltime, self.lifetime, self.stagger = int(walltime), int(lifetime), int(stagger)
        self._task: Any = None
        self._retiring = False

    async def setup(self, worker: Any) -> None:
        start = job_start()
        retire_after, leave_by = schedule(self.walltime, self.lifetime, self.stagger)
        self._task = asyncio.ensure_future(self._run(worker, start + retire_after, start + leave_by))

    async def teardown(self, worker: Any) -> None:
        if self._task is not None and not self._task.done() and not self._retiring:
            self._task.cancel()  # the worker closes for another reason before its time

    async def _run(self, worker: Any, retire_at: float, leave_by: float) -> None:
        await asyncio.sleep(max(0.0, retire_at - time.time()))
        self._retiring = True  # from here the worker's own close (teardown) must not cancel this
        await retire(worker, leave_by)


async def retire(worker: Any, leave_by: float) -> None:
    """Steps 1-4 of the module docstring for ``worker`` (a ``distributed.Worker``)."""
    from distributed.core import Status

    if worker.status not in (Status.running, Status.paused):
        return
    logger.info("hpckit: worker %s retires before its walltime (leaves by %.0f s from now)", worker.address,
                leave_by - time.time())
    worker.status = Status.closing_gracefully  # no new task starts; the scheduler sends no more
    while worker.state.executing_count and time.time() < leave_by:
        await asyncio.sleep(0.2)
    addr, stimulus = worker.address, f"hpckit-retire-{time.time()}"
    retired = False
    while not retired and time.time() < leave_by - 1:
        try:
            done = await asyncio.wait_for(
                worker.scheduler.retire_workers(workers=[addr], close_workers=False, remove=True,
                                                stimulus_id=stimulus),
                timeout=max(1.0, leave_by - time.time()))
            retired = addr in (done or {})
        except Exception:  # noqa: BLE001 - timed out or the scheduler went away: leave below
            break
        if not retired:  # no other worker to take the data yet: its replacement is on the way
            if worker.status != Status.closing_gracefully:  # an aborted retirement may have resumed it
                worker.status = Status.closing_gracefully
            await asyncio.sleep(2.0)
    if not retired:
        with contextlib.suppress(Exception):  # an expected departure: nothing counted against the tasks
            await worker.scheduler.unregister(address=addr, stimulus_id=stimulus, expected=True, close=False)
    await worker.close(nanny=True, reason="hpckit-retired-before-walltime")
