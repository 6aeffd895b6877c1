"""The few calls `hpckit run` and `hpckit launch` make for the report, kept here so their code stays one
line each: ``run.json`` says what ran (:class:`RunInfo`, written at the start so a killed run keeps it) and
per-chunk records go to ``chunks.jsonl``; ``launch.json`` says when a launch started and how it ended (a
killed launch leaves ``state: running``, :class:`RunRecord`); job state changes go to ``jobs.jsonl``
(:class:`JobStateRecorder`); ``report.html`` is written last (:func:`write_report_quietly`)."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from hpckit.io.paths import atomic_write, umask_mode
from hpckit.processor.records import ChunkRecorder
from hpckit.report.jobs import JobStateRecorder

__all__ = ["JobStateRecorder", "RunInfo", "RunRecord", "lock_hash", "write_report_quietly"]


def _write_json(path: Path, data: dict) -> None:
    """Whole or not at all (a full disk leaves no ``.part`` file and says which file and how much room)."""
    atomic_write(path, (json.dumps(data, indent=2, default=str) + "\n").encode(), umask_mode())


class RunInfo:
    """``with RunInfo(spec, processor, executor) as info:`` around a run of a ``hpckit.run.RunSpec``: writes
    ``run.json`` (what ran) and starts a new ``chunks.jsonl`` on entry, completes ``run.json`` with the end
    time and the error (if any) on exit. ``info.recorder`` goes to the Runner; ``info.data`` are the datasets
    drawn as data (``spec.data`` plus fileset metadata; a name the fileset lacks is a PlotError here,
    before anything runs) and ``info.datasets`` every dataset with its file count."""

    def __init__(self, spec: Any, processor: Any, executor: Any):
        from hpckit.processor.fileset import normalize_fileset
        from hpckit.report.plots import data_datasets

        self.dir = spec.records_dir()
        self.data = data_datasets(spec.fileset, spec.data, spec.treename)
        self.datasets: dict[str, dict] = {}
        for f in normalize_fileset(str(spec.fileset), spec.treename):
            d = self.datasets.setdefault(f.dataset, {"files": 0, "data": f.dataset in self.data})
            d["files"] += 1
        self.recorder = ChunkRecorder(self.dir / "chunks.jsonl")
        workers = getattr(executor, "workers", None)
        self.info = {
            "analysis": str(Path(spec.analysis).resolve()), "processor": type(processor).__name__,
            "fileset": str(Path(spec.fileset).resolve()), "datasets": self.datasets, "data": self.data,
            "executor": type(executor).__name__.removesuffix("Executor").lower(),
            **({"workers": workers} if workers else {}), "chunksize": spec.chunksize,
            "output": str(Path(spec.output or "out.pkl").resolve()), "plot_split": spec.plot_split,
            "nominal": spec.nominal, "band": spec.band,
            "argv": sys.argv, "host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
            "finished": None, "error": None,
        }

    def __enter__(self) -> RunInfo:
        self.recorder.reset()
        _write_json(self.dir / "run.json", self.info)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        self.info.update(finished=time.time(), error=None if exc is None else f"{exc_type.__name__}: {exc}")
        try:
            _write_json(self.dir / "run.json", self.info)
        except OSError:
            if exc is None:
                raise  # otherwise the run's own error (e.g. the full disk at the output) is the one to show


class RunRecord:
    """Fields merged into ``launch.json`` at the start and the end of a launch, and the final report."""

    def __init__(self, run_dir: Path, spec: Any):
        self.run_dir = Path(run_dir)
        self.plots = spec.plots
        self.t_started = time.time()
        self.lock_hash: str | None = None
        # what ran, for a launch that stops before the run itself writes run.json
        self.what: dict = {"analysis": str(spec.analysis), "fileset": str(spec.fileset), "chunksize": spec.chunksize}

    def started(self, workers: int | None = None) -> dict:
        if workers:
            self.what["workers"] = workers
        return {"state": "running", "started": self.t_started, **self.what}

    def ended(self, error: BaseException | None) -> dict:
        return {**self.started(), "state": "finished" if error is None else "failed", "finished": time.time(),
                "error": None if error is None else f"{type(error).__name__}: {error}", "lock_hash": self.lock_hash}

    def report(self) -> Path | None:
        return write_report_quietly(self.run_dir, self.plots)


def lock_hash(check: Any) -> str | None:
    """The environment fingerprint's hash from ``launch.environment_check``'s partial (None when off)."""
    try:
        return json.loads(check.args[0])["hash"]
    except Exception:  # noqa: BLE001 - no check (HPCKIT_NO_ENV_CHECK=1) or another shape
        return None


def write_report_quietly(run_dir: Path, plots: bool = True) -> Path | None:
    """report.html for ``run_dir``; a failure to write it is a warning, never the run's error."""
    from hpckit.report import ReportError, write_report

    try:
        return write_report(run_dir, plots=plots)
    except ReportError:
        return None  # the run stopped before it wrote anything (e.g. a bad fileset): nothing to report
    except Exception as err:  # noqa: BLE001 - the results are written; the report is an extra
        warnings.warn(f"hpckit: report.html not written: {type(err).__name__}: {err}")
        return None
