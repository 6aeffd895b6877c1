"""While a launch runs: keep workers coming as long as there is work and they do some, and stop the launch
(within a minute, saying why) when no worker is left and none can come.

* Replacements follow the work: the pool replaces a job that ended (walltime, retirement, preemption) for as
  long as the run needs workers, with no fixed cap; it stops when ``failures_allowed`` jobs in a row
  (:mod:`hpckit.engines.base`) ended without a worker ever connecting (a broken environment, a site that kills them), and says so.
* Stalled: no worker connected and no job of the run pending or running, for ``grace`` seconds once the pool
  says why (replacing stopped, a refused submission, the engine gave up), or for the pool's
  ``quiet_allowed()`` when nothing says why (Parsl replaces ended blocks only at its next poll): nothing will
  ever finish the chunks. The main thread gets a
  :class:`Stalled` error naming what happened (the pool's reason, the scheduler's refusal) and how to resume.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from typing import Any, Iterator

from hpckit.core.errors import LaunchError

logger = logging.getLogger("hpckit.launch")


class Stalled(LaunchError):
    """No worker left and none can come; the message says why and how to resume."""


_KEEP_LOCK = threading.Lock()  # one keep_alive at a time, whichever loop calls it


def _keep_alive(pool: Any) -> None:
    with _KEEP_LOCK, contextlib.suppress(Exception):
        pool.keep_alive()


@contextlib.contextmanager
def keep_up(pool: Any, every: float = 5.0) -> Iterator[None]:
    """Between the runs of a standing pool: replace ended jobs, and never stop anything (an idle notebook is
    not a stalled launch; :func:`keeper` watches for that during a run)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every):
            _keep_alive(pool)

    t = threading.Thread(target=loop, name="hpckit-keep-up", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(timeout=10)


class Watch:
    """One look every ``every`` seconds: ``pool.keep_alive()``, then the stall check."""

    def __init__(self, pool: Any, sched: Any, resume_hint: str, grace: float = 30.0, every: float = 2.0):
        self.pool, self.sched, self.resume_hint = pool, sched, resume_hint
        self.grace, self.every = grace, every
        self.idle_since: float | None = None
        self.reason: str | None = None
        self._last_status = 0.0
        self._queued: list[str] = []

    def step(self, now: float) -> str | None:
        """Returns the stall message once the launch should stop, else None."""
        _keep_alive(self.pool)
        if (self.pool.connected() or 0) > 0:
            self.idle_since = None
            return None
        batch = self.sched is not None and self.sched.batch
        if batch and now - self._last_status >= 5.0:
            self._last_status = now
            with contextlib.suppress(Exception):
                self._queued = self.sched.queued(self.pool.job_ids())
        if batch and self._queued:
            self.idle_since = None
            return None
        self.idle_since = self.idle_since or now
        known = bool(self.pool.stop_reason() or self.pool.refusals())
        if now - self.idle_since < (self.grace if known else max(self.grace, self.pool.quiet_allowed())):
            return None
        return self.message()

    def message(self) -> str:
        why = self.pool.stop_reason() or ""
        refused = self.pool.refusals()
        if refused:
            why = (why + "; " if why else "") + f"the scheduler refused a submission: {refused[-1]}"
        if not why:
            why = "every worker job ended and none could be submitted again"
        n = len(self.pool.job_ids())
        return (f"no worker left and none can come (site {self.pool.site.name}, backend {self.pool.name}, "
                f"{n} job{'s' if n != 1 else ''} submitted in all): {why}. {self.resume_hint}")


def resume_hint(checkpoint: Any) -> str:
    if checkpoint:
        return f"Finished chunks are kept in {checkpoint}: run the same command again to resume from them."
    return "Rerun with --checkpoint DIR to keep finished chunks, and run it again to resume from them."


@contextlib.contextmanager
def keeper(pool: Any, sched: Any, hint: str, grace: float = 30.0, every: float = 2.0) -> Iterator[Watch]:
    """While inside: the pool's workers are kept up; a stalled launch raises :class:`Stalled` in the main
    thread (interrupting whatever it waits on, through SIGUSR1 to itself)."""
    watch = Watch(pool, sched, hint, grace, every)
    stop = threading.Event()
    main = threading.current_thread() is threading.main_thread()
    old = None

    def on_stall(signum, frame):
        if watch.reason is not None:  # a KeyboardInterrupt gets through every `except Exception` on the way
            raise KeyboardInterrupt("stalled")

    if main:
        old = signal.signal(signal.SIGUSR1, on_stall)

    def loop() -> None:
        while not stop.wait(every):
            msg = watch.step(time.monotonic())
            if msg is not None:
                watch.reason = msg
                logger.error("hpckit: %s", msg)
                if main:
                    signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
                return

    t = threading.Thread(target=loop, name="hpckit-keeper", daemon=True)
    t.start()
    try:
        yield watch
    except KeyboardInterrupt:
        if watch.reason is not None:
            raise Stalled(watch.reason) from None
        raise
    finally:
        stop.set()
        t.join(timeout=10)
        if main:
            signal.signal(signal.SIGUSR1, old if old is not None else signal.SIG_DFL)
