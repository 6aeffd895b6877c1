"""Batch job state changes of a launch, appended to ``jobs.jsonl`` in the run directory as they happen.

A :class:`JobStateRecorder` thread asks the scheduler about the launch's jobs every few seconds (jobs
already ended are not asked again) and appends a line only when a job appears or its state changes::

    {"t": unix time, "job": "123", "state": "SUBMITTED" | "PENDING" | "RUNNING" | "COMPLETED" | ...,
     "exit_code": "0:0" or null, "reason": ... or null, "note": the job's own line or null}

It only reads: job ids come from the backend's own list, states from ``scheduler.status``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable

from hpckit.deploy.schedulers import JobState


class JobStateRecorder:
    """``with JobStateRecorder(job_ids, scheduler, run_dir / "jobs.jsonl"):`` records while inside; one
    last poll on exit records the final states (after teardown has cancelled the jobs)."""

    def __init__(self, job_ids: Callable[[], list[str]], scheduler: Any, path: Path, interval: float = 2.0,
                 on_poll: Callable[[dict[str, str]], None] | None = None):
        self.job_ids = job_ids
        self.on_poll = on_poll  # called with every job's last state after each poll (hpckit.launch.staging)
        self.scheduler = scheduler
        self.path = Path(path)
        self.interval = interval
        self.last: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> "JobStateRecorder":
        return self.start()

    def start(self) -> "JobStateRecorder":
        self._thread = threading.Thread(target=self._loop, name="hpckit-jobstates", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.poll()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.poll()
            # scontrol is one call per job: ask less often when there are many
            self._stop.wait(max(self.interval, 0.2 * len(self.last)))

    def poll(self) -> None:
        with self._lock:
            try:
                ids = [str(j) for j in self.job_ids() if j]
            except Exception:  # noqa: BLE001 - the backend's job list is changing under us: next time
                return
            lines = []
            now = time.time()
            for j in ids:
                if j not in self.last:
                    self.last[j] = "SUBMITTED"
                    lines.append({"t": now, "job": j, "state": "SUBMITTED", "exit_code": None, "reason": None})
            # also those the backend forgot
            live = [j for j in self.last if not JobState.parse(self.last[j]).terminal]
            if live and self.scheduler is not None:
                try:
                    states = self.scheduler.status(live)
                except Exception:  # noqa: BLE001 - a scheduler hiccup: ask again next time
                    states = {}
                now = time.time()
                for j, st in states.items():
                    if st.state.value != self.last.get(j):
                        self.last[j] = st.state.value
                        lines.append({"t": now, "job": j, "state": st.state.value, "exit_code": st.exit_code,
                                      "reason": st.reason, "stderr": st.stderr_path, "note": st.note})
            if lines:
                with open(self.path, "a") as fh:
                    fh.writelines(json.dumps(x, default=str) + "\n" for x in lines)
            if self.on_poll is not None and not self._stop.is_set():
                self.on_poll(dict(self.last))
