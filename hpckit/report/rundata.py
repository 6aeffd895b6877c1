"""Read what a run left in its directory into one :class:`RunData`: ``run.json`` (what ran), ``launch.json``
(site, backend, jobs, error), ``jobs.txt`` / ``jobs.jsonl`` (jobs and their state changes), ``chunks.jsonl``
(per-chunk records), the metrics JSON and the results JSON (histograms and counts). Every file may be
missing or cut short (a killed run): what is there is used, and :attr:`RunData.status` says how the run
ended. Nothing is unpickled: the numbers come from the JSON the run wrote next to its output
(:mod:`hpckit.report.numbers`), read only when you own it and nobody else can write it or its directory."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpckit.deploy.schedulers import JobState
from hpckit.core.errors import HpckitError
from hpckit.report.numbers import LIMIT, from_json, metrics_path, results_path


class ReportError(HpckitError):
    """The directory is not a run directory."""


@dataclass
class WorkerRow:
    """One row of the worker timeline: a batch job, or (without jobs) one worker process."""

    name: str
    submitted: float | None = None
    started: float | None = None
    first_chunk: float | None = None
    last_chunk: float | None = None
    ended: float | None = None
    end_state: str | None = None
    chunks: list[dict] = field(default_factory=list)
    processes: set[str] = field(default_factory=set)

    @property
    def failed(self) -> bool:
        """Ended in a state other than done, cancelled (teardown) or forgotten by the scheduler."""
        state = (str(self.end_state).split() or [""])[0].rstrip("+") if self.end_state else ""
        return bool(state) and state not in ("COMPLETED", "CANCELLED", "GONE", "REMOVED")

    @property
    def events(self) -> int:
        return sum(int(c.get("events", 0)) for c in self.chunks)

    @property
    def busy(self) -> float:
        return sum(c["t1"] - c["t0"] for c in self.chunks)

    @property
    def bytes(self) -> int:
        return sum(int(c.get("bytes", 0)) for c in self.chunks)


@dataclass
class RunData:
    run_dir: Path
    info: dict = field(default_factory=dict)  # run.json
    launch: dict = field(default_factory=dict)  # launch.json
    chunks: list[dict] = field(default_factory=list)
    run_events: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    logs: list[dict] = field(default_factory=list)  # what workers logged at WARNING+ (hpckit.processor.worker_log)
    job_ids: list[str] = field(default_factory=list)
    job_states: list[dict] = field(default_factory=list)
    metrics: dict | None = None
    histograms: dict[str, Any] | None = None  # name -> hist.Hist, from the results JSON
    numbers: dict = field(default_factory=dict)  # plain numbers of the output (a cutflow)
    output_path: Path | None = None
    results_note: str | None = None  # why there are no histograms (missing, refused, unreadable)
    bad_lines: int = 0

    # -- how it ended --------------------------------------------------------------------------
    @property
    def status(self) -> tuple[str, str]:
        """(``finished`` | ``failed`` | ``running`` | ``killed``, one sentence)."""
        error = self.launch.get("error") or self.info.get("error")
        if error:
            return "failed", f"The run failed: {error}"
        if self.launch:
            done = self.launch.get("state", "finished") == "finished"
        else:
            done = self.info.get("finished") is not None
        if done:
            return "finished", "The run finished."
        who = self.launch.get("process") or self.info  # launch.json: the launch process; run.json: the run's
        if who.get("pid") and who.get("host") == socket.gethostname() and _alive(int(who["pid"])):
            return "running", f"The run is still in progress (process {who['pid']} on {who['host']})."
        last = max([c["t1"] for c in self.chunks] + [e["t"] for e in self.run_events] + [0.0])
        return "killed", ("The run did not finish: it was killed or its process died "
                          f"(no end record; last record at {_clock(last) if last else 'none'}). "
                          "What it recorded until then is shown.")

    def event(self, name: str) -> dict | None:
        found = [e for e in self.run_events if e.get("event") == name]
        return found[-1] if found else None

    # -- times ---------------------------------------------------------------------------------
    @property
    def t_origin(self) -> float:
        """The run's start: the earliest time any file recorded."""
        times = [self.launch.get("started"), self.info.get("started")]
        times += [e["t"] for e in self.run_events] + [s["t"] for s in self.job_states]
        times += [c["t0"] for c in self.chunks]
        times = [t for t in times if t]
        return min(times) if times else 0.0

    @property
    def t_end(self) -> float:
        times = [self.launch.get("finished"), self.info.get("finished")]
        times += [e["t"] for e in self.run_events] + [s["t"] for s in self.job_states]
        times += [c["t1"] for c in self.chunks] + [f.get("t", 0) for f in self.failures]
        times = [t for t in times if t]
        return max(times) if times else self.t_origin

    # -- workers -------------------------------------------------------------------------------
    def workers(self) -> list[WorkerRow]:
        """One row per batch job when the run had jobs (chunks found by the job id the worker saw),
        else one per worker process; chunks from no known job get rows of their own."""
        rows: dict[str, WorkerRow] = {}
        for j in self.job_ids:
            rows[j] = WorkerRow(f"job {j}")
        for s in self.job_states:
            row = rows.setdefault(s["job"], WorkerRow(f"job {s['job']}"))
            state = str(s["state"])
            if state == "SUBMITTED" or row.submitted is None:
                row.submitted = s["t"] if row.submitted is None else min(row.submitted, s["t"])
            if state.startswith("RUNNING") and row.started is None:
                row.started = s["t"]
            if JobState.parse(state).terminal and row.ended is None:
                row.ended, row.end_state = s["t"], state
        for c in sorted(self.chunks, key=lambda c: c["t0"]):
            job = c.get("job")
            key = job if job in rows else str(c.get("worker"))
            row = rows.setdefault(key, WorkerRow(str(c.get("worker"))))
            row.chunks.append(c)
            row.processes.add(str(c.get("worker")))
        for row in rows.values():
            if row.chunks:
                row.first_chunk = row.chunks[0]["t0"]
                row.last_chunk = max(c["t1"] for c in row.chunks)
                if row.started is None:
                    row.started = row.first_chunk
        inf = float("inf")
        return sorted(rows.values(), key=lambda r: (r.submitted if r.submitted is not None else inf,
                                                    r.started if r.started is not None else inf, r.name))

    # -- totals --------------------------------------------------------------------------------
    @property
    def unique_chunks(self) -> list[dict]:
        """Each chunk once: an engine may run one again (Dask, after a worker was lost with its result), and
        both runs write a record; the last one stands for it."""
        last = {(c.get("dataset"), c.get("file"), c.get("start"), c.get("stop")): c for c in self.chunks}
        return list(last.values())

    @property
    def events_done(self) -> int:
        return sum(int(c.get("events", 0)) for c in self.unique_chunks)

    @property
    def bytes_read(self) -> int:
        if self.metrics and not self.chunks:
            return int(self.metrics.get("bytesread", 0))
        return sum(int(c.get("bytes", 0)) for c in self.chunks)

    @property
    def retries(self) -> int:
        from_chunks = sum(int(c.get("retries", 0)) for c in self.chunks)
        if self.metrics:
            return max(int(self.metrics.get("retries", 0)), from_chunks)
        return from_chunks

    def all_skipped(self) -> list[dict]:
        seen, out = set(), []
        for s in list(self.skipped) + list((self.metrics or {}).get("skipped", [])):
            key = (s.get("chunk"), s.get("file"))
            if key not in seen:
                seen.add(key)
                out.append(s)
        return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is not running
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def _clock(t: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}


def _jsonl(path: Path) -> tuple[list[dict], int]:
    """The records of a JSON-lines file; a line cut short by a kill is counted, not fatal."""
    out, bad = [], 0
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            bad += 1
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out, bad


def progress_line(run_dir: str | Path) -> str:
    """A running (or ended) run's progress from its ``chunks.jsonl``: chunks done/total, failures, rate and
    ETA. Cheap on a large file: only the planned and end lines are parsed, the others are counted."""
    try:
        text = (Path(run_dir) / "chunks.jsonl").read_text(errors="replace")
    except OSError:
        return "no records yet"
    done = failed = 0
    planned: dict = {}
    first = last = None
    ended = False
    for line in text.splitlines():
        if '"kind":"chunk"' in line:
            done += 1
            if first is None:
                first = line
            last = line
        elif '"kind":"failure"' in line or '"kind":"skipped"' in line:
            failed += 1
        elif '"event":"planned"' in line:
            planned = _line(line)
        elif '"event":"end"' in line or '"event":"error"' in line:
            ended = True
    total = int(planned.get("chunks") or 0)
    out = f"{done:,}/{total:,} chunks" if total else f"{done:,} chunks (not planned yet)"
    if failed:
        out += f", {failed} failed"
    t0, t1 = _line(first or "").get("t1"), _line(last or "").get("t1")
    if done > 1 and isinstance(t0, (int, float)) and isinstance(t1, (int, float)) and t1 > t0:
        rate = (done - 1) / (t1 - t0)
        out += f", {rate:,.1f} chunks/s"
        if total > done and not ended:
            out += f", ETA {_duration((total - done) / rate)}"
    return out + (", ended" if ended else "")


def _line(text: str) -> dict:
    try:
        rec = json.loads(text)
    except ValueError:
        return {}
    return rec if isinstance(rec, dict) else {}


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def load_run(run_dir: str | Path) -> RunData:
    """Everything ``run_dir`` holds about its run. A directory with none of the run files is a ReportError."""
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise ReportError(f"run directory not found: {run_dir}")
    names = ("run.json", "launch.json", "chunks.jsonl", "jobs.txt", "jobs.jsonl")
    if not any((run_dir / n).exists() for n in names):
        raise ReportError(f"{run_dir} holds none of {', '.join(names)}: not a run directory of hpckit run or launch")
    data = RunData(run_dir, info=_json(run_dir / "run.json"), launch=_json(run_dir / "launch.json"))
    records, data.bad_lines = _jsonl(run_dir / "chunks.jsonl")
    for rec in records:
        kind = rec.get("kind")
        if kind == "chunk" and "t0" in rec and "t1" in rec:
            data.chunks.append(rec)
        elif kind == "run" and "t" in rec:
            data.run_events.append(rec)
        elif kind == "skipped":
            data.skipped.append(rec)
        elif kind == "failure":
            data.failures.append(rec)
        elif kind == "log":
            data.logs.append(rec)
    try:
        data.job_ids = list(dict.fromkeys((run_dir / "jobs.txt").read_text().split()))
    except OSError:
        data.job_ids = [str(j) for j in data.launch.get("job_ids", [])]
    data.job_states = [s for s in _jsonl(run_dir / "jobs.jsonl")[0] if "job" in s and "t" in s]
    output = data.info.get("output") or (data.launch.get("written") or [None])[0]
    if output:  # only the output run.json / launch.json name; never a file found lying in the directory
        data.output_path = Path(output)
        data.metrics = _json(metrics_path(data.output_path)) or None
        data.histograms, data.numbers, data.results_note = _results(results_path(data.output_path))
    return data


def _results(path: Path) -> tuple[dict | None, dict, str | None]:
    """(histograms, numbers, None) from the results JSON at ``path``, or (None, {}, why not)."""
    from hpckit.io.paths import untrusted_file

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None, {}, f"no results file {path}"
    except OSError as err:
        return None, {}, f"{path} cannot be opened safely: {err.strerror or err}"
    with os.fdopen(fd, "rb") as fh:
        problem = untrusted_file(path, os.fstat(fh.fileno()))
        if problem:
            return None, {}, f"{path} not read: {problem}"
        data = fh.read(LIMIT + 1)
    if len(data) > LIMIT:
        return None, {}, f"{path} is larger than {LIMIT:,} bytes"
    try:
        hists, nums = from_json(data)
    except (ValueError, TypeError, KeyError, RecursionError) as err:
        return None, {}, f"{path} is not readable: {type(err).__name__}: {str(err)[:200]}"
    return hists, nums, None
