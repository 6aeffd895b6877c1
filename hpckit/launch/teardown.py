"""Ending a launch cleanly: signals turned into exceptions (so one teardown runs on success, error, Ctrl-C
and SIGTERM), cancelling every job, waiting for the first worker (failing fast on a refused submission or on
jobs that all ended), and `hpckit jobs` / `hpckit cancel` for launches whose process is gone."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from hpckit.deploy.schedulers import Scheduler, SubmitError, scheduler_class
from hpckit.core.errors import LaunchError
from hpckit.report.rundata import progress_line
from hpckit.core.units import plural


class WorkerTimeout(LaunchError):
    """No worker connected in time (or every worker job ended first); the message holds the jobs' states
    and the tail of their stderr."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; raised in the main thread so the same teardown as Ctrl-C runs."""


def _on_term(signum, frame):
    raise Terminated(f"received signal {signum}")


def raise_on_signals() -> None:
    """SIGINT raises KeyboardInterrupt and SIGTERM :class:`Terminated` (main thread only).

    Called again after a pool starts: importing dask_jobqueue installs a SIGINT handler that calls
    ``sys.exit()`` (dask_jobqueue/runner.py), which would end the launch with status 0 and no teardown message.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _on_term)


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """Inside: SIGTERM raises :class:`Terminated` in the main thread (like Ctrl-C raises KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    olds = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    raise_on_signals()
    try:
        yield
    finally:
        for s, h in olds.items():
            signal.signal(s, h)


@contextlib.contextmanager
def shielded() -> Iterator[list[int]]:
    """Inside: SIGINT and SIGTERM are recorded, not raised, so teardown finishes; yields the received list."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    olds = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, h in olds.items():
            signal.signal(s, h)


def cancel_and_wait(sched: Scheduler, ids: list[str], wait: float = 30.0) -> list[str]:
    """Cancel the jobs of ``ids`` the scheduler still lists; wait until it lists none. Returns those left."""
    left = sched.queued(ids) if ids else []
    if left:
        sched.cancel(left)
    deadline = time.monotonic() + wait
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = sched.queued(left)
    return left


def teardown(pool, sched: Scheduler | None, say: Callable[[str], None], failed: bool, wait: float = 30.0) -> list[str]:
    """Close the pool, then cancel every job it submitted that is still listed, and wait until the scheduler
    no longer lists them (said only when the launch failed: on success it is routine). Returns the job ids
    still listed at the end (normally none)."""
    if pool is None:
        return []
    with shielded():
        pool.close()
        ids = pool.job_ids()
        if sched is None or not sched.batch or not ids:
            return []
        left = sched.queued(ids)
        if left and failed:
            say(f"hpckit: cancelling {plural(len(left), 'batch job')}: {' '.join(left)}")
        left = cancel_and_wait(sched, left, wait) if left else []
        if left:
            say(f"hpckit: WARNING: jobs still listed after cancel: {' '.join(left)} (hpckit cancel RUN_DIR retries)")
        return left


def wait_for_workers(pool, sched: Scheduler | None, timeout: float, expected_jobs: int,
                          poll: float = 0.5, at_least: int = 1) -> int:
    """Return once ``at_least`` workers are connected (or, after ``timeout``, at least one: the run starts
    with those), with how many are. Raise :class:`SubmitError` as soon as the scheduler refused a
    submission (its own message first), :class:`WorkerTimeout` after ``timeout`` seconds or as soon as every
    submitted job has ended without a worker connecting (each job's state and the tail of its stderr)."""
    deadline = time.monotonic() + timeout
    last_status = 0.0
    while True:
        connected = pool.connected() or 0
        if connected >= at_least:
            return connected
        refused = pool.refusals()
        if refused:
            first = "\n".join(refused)
            n = pool.record.refused_count
            more = f"\n({plural(n, 'submission')} refused)" if n > 1 else ""
            raise SubmitError(f"{first}{more}\nsite {pool.site.name}, backend {pool.name}; nothing ran. "
                              f"Check the site with: hpckit doctor --site {pool.site.name}")
        now = time.monotonic()
        ids = pool.job_ids()
        ended_early = False
        if sched is not None and sched.batch and ids and now - last_status > 2.0:
            last_status = now
            states = sched.status(ids)
            ended_early = len(ids) >= expected_jobs and all(s.terminal for s in states.values())
        if ended_early or now > deadline:
            connected = pool.connected() or 0
            if connected >= 1:
                return connected
            why = ("every worker job ended before a worker connected" if ended_early
                   else f"no worker connected within {timeout:g} s")
            raise WorkerTimeout(_timeout_message(why, pool, sched, ids))
        time.sleep(poll)


def _timeout_message(why: str, pool, sched: Scheduler | None, ids: list[str]) -> str:
    lines = [f"{why} (site {pool.site.name}, backend {pool.name})."]
    if not ids:
        lines.append("No batch job was submitted (see the logs in the run directory).")
    elif sched is not None:
        lines.append(f"{plural(len(ids), 'batch job')}, as the scheduler sees them:")
        logs_here = pool.site.shared_filesystem  # else on each job's node: its note says why it ended
        for st in sched.status(ids).values():
            lines.append(st.summary(logs_here=logs_here))
    lines.append(f"The jobs are being cancelled. Check the site with: hpckit doctor --site {pool.site.name}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------
# the launch process, as recorded in launch.json: is it still alive?


def _start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_identity(pid: int | None = None) -> dict:
    """A process as launch.json records it: pid, host, start time (pids are reused)."""
    pid = os.getpid() if pid is None else pid
    return {"pid": pid, "host": socket.gethostname(), "start_ticks": _start_ticks(pid)}


def _same_process(proc: dict) -> bool:
    ticks = _start_ticks(int(proc["pid"]))
    return ticks is not None and proc.get("host") == socket.gethostname() and proc.get("start_ticks") == ticks


def end_helpers(helpers: list[dict], wait: float = 10.0) -> list[int]:
    """SIGTERM (then SIGKILL) the recorded helper processes that still run; returns the pids ended."""
    alive = [h for h in helpers if _same_process(h)]
    for h in alive:
        with contextlib.suppress(OSError):
            os.kill(int(h["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + wait
    while any(_same_process(h) for h in alive) and time.monotonic() < deadline:
        time.sleep(0.2)
    for h in alive:
        if _same_process(h):
            with contextlib.suppress(OSError):
                os.kill(int(h["pid"]), signal.SIGKILL)
    return [int(h["pid"]) for h in alive]


def launch_alive(record: dict) -> bool | None:
    """True/False whether the launch process of ``record`` still runs; None when it ran on another host."""
    proc = record.get("process") or {}
    if record.get("finished"):
        return False
    if not proc.get("pid"):
        return False
    if proc.get("host") != socket.gethostname():
        return None
    ticks = _start_ticks(int(proc["pid"]))
    if ticks is None:
        try:
            os.kill(int(proc["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return proc.get("start_ticks") is None
    return proc.get("start_ticks") in (None, ticks)


# ------------------------------------------------------------------------------------------------
# hpckit jobs / hpckit cancel


@dataclass
class RunJobs:
    run_dir: Path
    record: dict
    job_ids: list[str]

    @property
    def scheduler(self) -> Scheduler | None:
        name = self.record.get("scheduler")
        if not name:
            return None
        return scheduler_class(name)(self.run_dir / "logs")

    def all_ids(self) -> list[str]:
        """jobs.txt, plus any job listed under the run's job name (jobs another program submitted)."""
        ids = list(self.job_ids)
        sched, name = self.scheduler, self.record.get("job_name")
        if sched is not None and sched.batch and name and not sched.missing():
            ids += [j for j in sched.ids_named(name) if j not in ids]
        return ids


def _local_run(run_dir: Path) -> RunJobs:
    """An `hpckit run` (no launch): its ``run.json`` names the process; no batch jobs."""
    f = run_dir / "run.json"
    try:
        info = json.loads(f.read_text())
    except ValueError as exc:
        raise LaunchError(f"{f}: not valid JSON ({exc})") from None
    pid, started = info.get("pid"), info.get("started") or 0
    ticks = _start_ticks(int(pid)) if pid else None
    same = ticks is not None and _ticks_epoch(ticks) <= float(started) + 2 and float(started) - _ticks_epoch(ticks) < 3600
    record = {"process": {"pid": pid, "host": info.get("host"), "start_ticks": ticks if same else "gone"},
              "finished": info.get("finished"), "state": "failed" if info.get("error") else "finished"}
    return RunJobs(run_dir, record, [])


def _ticks_epoch(ticks: str) -> float:
    with open("/proc/stat") as fh:
        btime = next(int(line.split()[1]) for line in fh if line.startswith("btime"))
    return btime + int(ticks) / os.sysconf("SC_CLK_TCK")


def _read_run(run_dir: Path) -> RunJobs:
    run_dir = Path(run_dir)
    f = run_dir / "launch.json"
    if not f.is_file() and (run_dir / "run.json").is_file():
        return _local_run(run_dir)
    if not f.is_file():
        raise LaunchError(f"{run_dir} is neither a launch run directory nor an `hpckit run` output directory "
                          "(no launch.json, no run.json)")
    try:
        record = json.loads(f.read_text())
    except ValueError as exc:
        raise LaunchError(f"{f}: not valid JSON ({exc})") from None
    jobs = run_dir / "jobs.txt"
    ids = jobs.read_text().split() if jobs.is_file() else []
    return RunJobs(run_dir, record, ids)


def find_runs(run: Path | None, runs_dir: Path | list[Path]) -> list[RunJobs]:
    """One run directory, or every run directory under ``runs_dir`` (one directory or several; by name,
    which starts with the launch's date and time, so newest last)."""
    if run is not None:
        return [_read_run(run)]
    roots = [runs_dir] if isinstance(runs_dir, (str, Path)) else list(runs_dir)
    found = [d for root in roots if Path(root).is_dir() for d in Path(root).iterdir() if (d / "launch.json").is_file()]
    return [_read_run(d) for d in sorted(found, key=lambda d: (d.name, str(d)))]


def _alive_word(record: dict) -> str:
    if record.get("finished"):
        return f"launch {record.get('state') or 'finished'}"  # its jobs were ended by the launch itself
    alive = launch_alive(record)
    return {True: "launch running", False: "launch gone", None: "launch on another host"}[alive]


def run_jobs_table(runs: list[RunJobs]) -> list[str]:
    """One line per job: run directory, job id, scheduler state, whether its launch still runs."""
    rows = []
    for r in runs:
        ids = r.all_ids()
        sched = r.scheduler
        if not ids or sched is None or not sched.batch:
            continue
        alive = _alive_word(r.record)
        if r.record.get("finished"):  # the launch ended and cancelled what was left: nothing to look up
            left = r.record.get("jobs_left_after_teardown") or []
            rows += [f"{r.run_dir}  {j}  {'LEFT AFTER TEARDOWN' if j in left else 'ENDED'}  {alive}" for j in ids]
            continue
        states = sched.status(ids) if not sched.missing() else {}
        progress = progress_line(r.run_dir)
        for j in ids:
            st = states.get(j)
            rows.append(f"{r.run_dir}  {j}  {st.state.value if st else 'UNKNOWN (no ' + sched.status_command + ')'}"
                        f"  {alive}  {progress}")
    return rows


class CancelRefused(LaunchError):
    """`hpckit cancel` did not cancel a run it was asked to (its launch still runs); the lines say which."""

    def __init__(self, lines: list[str]):
        super().__init__("\n".join(lines))
        self.lines = lines


def cancel_runs(runs: list[RunJobs], force: bool = False, wait: float = 30.0, strict: bool = False) -> list[str]:
    """Cancel the still-listed jobs of each run whose launch process is gone (every run with ``force``).
    ``strict`` (one named run): a run left alone because its launch still runs raises :class:`CancelRefused`."""
    lines = []
    refused = False
    for r in runs:
        sched = r.scheduler
        alive = launch_alive(r.record)
        if alive and not force:
            if sched is not None and sched.batch or r.record.get("helpers") or strict:
                lines.append(f"{r.run_dir}: launch still running (pid {r.record['process']['pid']}); "
                             "not cancelling (--force to cancel anyway)")
                refused = True
            continue
        if sched is not None and sched.batch:
            lines.append(_cancel_jobs(r, sched, wait))
        ended = end_helpers(list(r.record.get("helpers") or []))
        if alive and force and not (sched is not None and sched.batch) and r.record.get("process"):
            ended += end_helpers([r.record["process"]])  # a local engine run: its guardian ends the engine
        if ended:
            lines.append(f"{r.run_dir}: ended process(es) {' '.join(map(str, ended))}")
    if refused and strict:
        raise CancelRefused(lines)
    return lines


def _cancel_jobs(r: RunJobs, sched: Scheduler, wait: float) -> str:
    if sched.missing():
        raise LaunchError(f"{', '.join(sched.missing())} not on PATH: cannot cancel the jobs of {r.run_dir}")
    ids = r.all_ids()
    listed = sched.queued(ids)
    if not listed:
        return f"{r.run_dir}: none of its {plural(len(ids), 'job')} is listed any more"
    left = cancel_and_wait(sched, listed, wait)
    return (f"{r.run_dir}: cancelled {' '.join(j for j in listed if j not in left)}"
            + (f"; still listed: {' '.join(left)}" if left else ""))
