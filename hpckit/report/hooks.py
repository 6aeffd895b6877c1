"""The few calls `hpckit launch` makes for the report, kept here so the launch code stays one line each:
``launch.json`` says when the run started and how it ended (a killed launch leaves ``state: running``),
job state changes go to ``jobs.jsonl`` (:class:`JobStateRecorder`), and ``report.html`` is written last."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from hpckit.report.jobs import JobStateRecorder

__all__ = ["JobStateRecorder", "RunRecord", "lock_hash"]


class RunRecord:
    """Fields merged into ``launch.json`` at the start and the end of a launch, and the final report."""

    def __init__(self, run_dir: Path, opts: Any = None):
        self.run_dir = Path(run_dir)
        self.plots = getattr(opts, "plots", True)
        self.t_started = time.time()
        self.lock_hash: str | None = None
        # what ran, for a launch that stops before the run itself writes run.json
        self.what = {k: str(getattr(opts, k)) for k in ("analysis", "fileset", "chunksize", "workers")
                     if getattr(opts, k, None) is not None}

    def started(self) -> dict:
        return {"state": "running", "started": self.t_started, "pid": os.getpid(), "host": socket.gethostname(),
                **self.what}

    def ended(self, error: BaseException | None) -> dict:
        return {**self.started(), "state": "finished" if error is None else "failed", "finished": time.time(),
                "error": None if error is None else f"{type(error).__name__}: {error}", "lock_hash": self.lock_hash}

    def report(self) -> Path | None:
        from hpckit.localrun import write_report_quietly

        return write_report_quietly(self.run_dir, self.plots)


def lock_hash(check: Any) -> str | None:
    """The environment fingerprint's hash from ``launch.environment_check``'s partial (None when off)."""
    try:
        return json.loads(check.args[0])["hash"]
    except Exception:  # noqa: BLE001 - no check (HPCKIT_NO_ENV_CHECK=1) or another shape
        return None
