"""`hpckit launch`: a site file -> worker jobs on its batch system -> the Runner -> the result -> teardown.

This module joins the two halves (``hpckit.deploy`` renders sites, ``hpckit.processor`` runs processors) and
owns every side effect: submitting, polling and cancelling batch jobs, helper processes, signals.

Layout (small pieces with one job each, Parsl-provider style):

* :class:`JobStatus` - one batch job's state plus its stdout/stderr paths; :meth:`JobStatus.summary` gives the
  head and tail of its stderr (the batch error a user otherwise never sees).
* :class:`BatchScheduler` with :class:`SlurmScheduler`, :class:`PBSScheduler`, :class:`HTCondorScheduler`:
  three verbs, ``submit`` / ``status`` / ``cancel`` (plus ``queued``), each one scheduler command.
* Backends that start workers: :class:`DaskBackend` (dask-jobqueue cluster from the rendered kwargs, scaled
  to N jobs), :class:`ParslBackend` (the rendered ``parsl_config.py`` loaded with N initial blocks),
  :class:`TaskVineBackend` (a ``vine_factory`` subprocess; the manager is the executor's).
* :func:`launch` - the whole flow with :class:`LaunchOptions` -> :class:`LaunchResult`; teardown in a
  ``finally`` that also runs on SIGINT and SIGTERM (SIGTERM is turned into :class:`Terminated`).

Local fallback: ``--site local`` or ``--backend futures|iterative`` run :class:`FuturesExecutor` /
:class:`IterativeExecutor` here; a batch site whose scheduler commands are missing says so and runs locally
(``fallback=False`` makes it a :class:`LaunchError`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.util
import json
import math
import functools
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from hpckit.deploy import load_site, render_all
from hpckit.deploy.site import Site

__all__ = [
    "BACKENDS",
    "BatchScheduler",
    "HTCondorScheduler",
    "JobStatus",
    "LaunchError",
    "LaunchOptions",
    "LaunchResult",
    "PBSScheduler",
    "SlurmScheduler",
    "Terminated",
    "WorkerTimeout",
    "default_run_dir",
    "launch",
    "scheduler_for",
]

BACKENDS = ("dask", "parsl", "taskvine", "futures", "iterative")
BATCH_BACKENDS = ("dask", "parsl", "taskvine")


class LaunchError(RuntimeError):
    """Launch could not start or finish; the message says why and what to do."""


class WorkerTimeout(LaunchError):
    """No worker connected in time (or every worker job ended first); the message holds the jobs' states
    and the tail of their stderr."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; raised in the main thread so the same teardown as Ctrl-C runs."""


# ------------------------------------------------------------------------------------------------
# batch jobs: status with log paths, and one small class per scheduler


def _tail(path: str | None, n: int) -> list[str]:
    if not path:
        return []
    try:
        with open(path, errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    return lines[-n:]


@dataclass
class JobStatus:
    """One batch job as its scheduler sees it. ``state`` is Slurm-style upper case (PENDING, RUNNING,
    COMPLETED, FAILED, CANCELLED, ..., or GONE when the scheduler no longer knows it)."""

    job_id: str
    state: str
    exit_code: str | None = None
    reason: str | None = None
    stdout_path: str | None = None
    stderr_path: str | None = None

    TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                "DEADLINE", "PREEMPTED", "GONE", "REMOVED")

    @property
    def terminal(self) -> bool:
        return self.state.split()[0].rstrip("+") in self.TERMINAL

    def stderr_tail(self, n: int = 15) -> list[str]:
        return _tail(self.stderr_path, n)

    def stdout_tail(self, n: int = 5) -> list[str]:
        return _tail(self.stdout_path, n)

    def summary(self, head: int = 3, tail: int = 15) -> str:
        """``job ID: STATE (exit, reason)`` then the head and tail of its stderr (and stdout's tail)."""
        bits = [x for x in (f"exit {self.exit_code}" if self.exit_code else None, self.reason) if x and x != "None"]
        lines = [f"job {self.job_id}: {self.state}" + (f" ({', '.join(bits)})" if bits else "")]
        for label, path, n_tail in (("stderr", self.stderr_path, tail), ("stdout", self.stdout_path, 5)):
            if not path:
                continue
            try:
                with open(path, errors="replace") as fh:
                    text = fh.read().splitlines()
            except OSError:
                lines.append(f"  {label} {path}: not written (yet)")
                continue
            if not text:
                lines.append(f"  {label} {path}: empty")
                continue
            shown = text if len(text) <= head + n_tail else text[:head] + ["..."] + text[-n_tail:]
            lines.append(f"  {label} {path}:")
            lines += [f"    | {line}" for line in shown]
        return "\n".join(lines)


def _run(cmd: list[str], timeout: float = 30, cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)


class BatchScheduler:
    """Three verbs over one scheduler's commands. ``commands``: the executables it needs."""

    name = "base"
    commands: tuple[str, ...] = ()

    def missing(self) -> list[str]:
        """The scheduler commands not on PATH."""
        return [c for c in self.commands if shutil.which(c) is None]

    def submit(self, script: str | Path, cwd: str | Path | None = None) -> str:
        raise NotImplementedError

    def status(self, job_ids: list[str]) -> dict[str, JobStatus]:
        raise NotImplementedError

    def cancel(self, job_ids: list[str]) -> None:
        raise NotImplementedError

    def queued(self, job_ids: list[str]) -> list[str]:
        """The jobs of ``job_ids`` the scheduler still lists (pending, running or completing)."""
        return [j for j, s in self.status(job_ids).items() if not s.terminal]

    def _submit(self, cmd: list[str], cwd) -> str:
        out = _run(cmd, cwd=str(cwd) if cwd else None)
        if out.returncode != 0:
            raise LaunchError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
        m = re.search(r"(\d+(?:\.[\w.-]+)?)", out.stdout)
        if not m:
            raise LaunchError(f"{' '.join(cmd)}: no job id in its output {out.stdout!r}")
        return m.group(1)


class SlurmScheduler(BatchScheduler):
    name = "slurm"
    commands = ("sbatch", "squeue", "scontrol", "scancel")

    def submit(self, script, cwd=None) -> str:
        return self._submit(["sbatch", "--parsable", str(script)], cwd)

    def status(self, job_ids) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        for j in job_ids:
            r = _run(["scontrol", "show", "job", "-o", str(j)], timeout=15)
            if r.returncode != 0 or "JobState=" not in r.stdout:
                out[j] = JobStatus(j, "GONE", reason="the scheduler no longer lists it")
                continue
            f = dict(re.findall(r"(\w+)=(\S*)", r.stdout))
            out[j] = JobStatus(j, f.get("JobState", "UNKNOWN"), f.get("ExitCode"), f.get("Reason"),
                               f.get("StdOut"), f.get("StdErr"))
        return out

    def queued(self, job_ids) -> list[str]:
        if not job_ids:
            return []
        r = _run(["squeue", "-h", "-o", "%i", "-j", ",".join(job_ids)], timeout=15)
        listed = set(r.stdout.split()) if r.returncode == 0 else set()
        return [j for j in job_ids if j in listed]

    def cancel(self, job_ids) -> None:
        if job_ids:
            _run(["scancel", *job_ids], timeout=30)


_PBS_STATE = {"Q": "PENDING", "H": "PENDING", "W": "PENDING", "T": "PENDING", "S": "SUSPENDED", "R": "RUNNING",
              "B": "RUNNING", "E": "COMPLETING", "C": "COMPLETED", "F": "COMPLETED", "X": "COMPLETED",
              "U": "UNKNOWN"}


class PBSScheduler(BatchScheduler):
    """PBS Pro / Torque ``qsub``/``qstat``/``qdel``. Log paths come from ``qstat -f`` (Error_Path) when it
    says; otherwise PBS's default ``<name>.e<id>`` in ``log_dir`` (where jobs were submitted from)."""

    name = "pbs"
    commands = ("qsub", "qstat", "qdel")

    def __init__(self, log_dir: str | Path | None = None):
        self.log_dir = Path(log_dir) if log_dir else None

    def submit(self, script, cwd=None) -> str:
        return self._submit(["qsub", str(script)], cwd)

    def _default_log(self, job_id: str, kind: str) -> str | None:
        if self.log_dir is None:
            return None
        num = job_id.split(".")[0]
        hits = sorted(self.log_dir.glob(f"*.{kind}{num}"))
        return str(hits[0]) if hits else None

    def status(self, job_ids) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        for j in job_ids:
            r = _run(["qstat", "-f", str(j)], timeout=15)
            if r.returncode != 0 or "job_state" not in r.stdout:
                out[j] = JobStatus(j, "GONE", reason="the scheduler no longer lists it",
                                   stdout_path=self._default_log(j, "o"), stderr_path=self._default_log(j, "e"))
                continue
            f = {k.strip(): v.strip() for k, v in re.findall(r"^\s*([\w.]+)\s*=\s*(.*)$", r.stdout, re.M)}
            state = _PBS_STATE.get(f.get("job_state", "U"), f.get("job_state", "UNKNOWN"))
            exit_code = f.get("Exit_status") or f.get("exit_status")
            if state == "COMPLETED" and exit_code not in (None, "0"):
                state = "FAILED"
            err = f.get("Error_Path", "").split(":", 1)[-1] or self._default_log(j, "e")
            std = f.get("Output_Path", "").split(":", 1)[-1] or self._default_log(j, "o")
            out[j] = JobStatus(j, state, exit_code, f.get("comment"), std, err)
        return out

    def queued(self, job_ids) -> list[str]:
        left = super().queued(job_ids)
        if shutil.which("squeue") and all(j.isdigit() for j in job_ids):
            # PBS front end over Slurm (Debian's slurm-wlm-torque): qstat says C while Slurm still lists
            # the job as COMPLETING; the ids are Slurm's, so ask squeue too
            left = sorted(set(left) | set(SlurmScheduler().queued(job_ids)), key=job_ids.index)
        return left

    def cancel(self, job_ids) -> None:
        if job_ids:
            _run(["qdel", *job_ids], timeout=30)


class HTCondorScheduler(BatchScheduler):
    """``condor_submit``/``condor_q``/``condor_rm``. Not exercised here (no HTCondor daemons on this machine)."""

    name = "htcondor"
    commands = ("condor_submit", "condor_q", "condor_rm")
    _STATE = {1: "PENDING", 2: "RUNNING", 3: "REMOVED", 4: "COMPLETED", 5: "PENDING", 6: "FAILED", 7: "SUSPENDED"}

    def submit(self, script, cwd=None) -> str:
        out = _run(["condor_submit", "-terse", str(script)], cwd=str(cwd) if cwd else None)
        if out.returncode != 0:
            raise LaunchError(f"condor_submit failed: {out.stderr.strip()}")
        return out.stdout.split()[0].split("-")[0].strip()

    def status(self, job_ids) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        for j in job_ids:
            ads: list = []
            for cmd in (["condor_q", "-json", j], ["condor_history", "-json", "-limit", "1", j]):
                r = _run(cmd, timeout=30)
                with contextlib.suppress(ValueError):
                    ads = json.loads(r.stdout or "[]") or []
                if ads:
                    break
            if not ads:
                out[j] = JobStatus(j, "GONE", reason="condor_q/condor_history do not list it")
                continue
            ad = ads[0]
            state = self._STATE.get(int(ad.get("JobStatus", 0)), "UNKNOWN")
            code = ad.get("ExitCode")
            if state == "COMPLETED" and code not in (None, 0):
                state = "FAILED"
            out[j] = JobStatus(j, state, None if code is None else str(code), ad.get("HoldReason"),
                               ad.get("Out"), ad.get("Err"))
        return out

    def cancel(self, job_ids) -> None:
        if job_ids:
            _run(["condor_rm", *job_ids], timeout=30)


def scheduler_for(site: Site, log_dir: str | Path | None = None) -> BatchScheduler | None:
    """The scheduler class of ``site`` (None for a local site)."""
    if site.scheduler == "slurm":
        return SlurmScheduler()
    if site.scheduler == "pbs":
        return PBSScheduler(log_dir)
    if site.scheduler == "htcondor":
        return HTCondorScheduler()
    return None


# ------------------------------------------------------------------------------------------------
# backends: start workers, report job ids and connected workers, make the executor, close


class Backend:
    """Starts workers for one launch. ``job_ids()`` lists every batch job it submitted so far."""

    name = "base"

    def __init__(self, site: Site, run_dir: Path, jobs: int):
        self.site = site
        self.run_dir = run_dir
        self.jobs = jobs
        self._seen: list[str] = []

    def start(self) -> None: ...

    def _job_ids(self) -> list[str]:
        return []

    def job_ids(self) -> list[str]:
        for j in self._job_ids():
            if j and j not in self._seen:
                self._seen.append(j)
                with open(self.run_dir / "jobs.txt", "a") as fh:
                    fh.write(f"{j}\n")
        return list(self._seen)

    def connected(self) -> int | None:
        """Workers connected now; None when this backend cannot tell before the run starts."""
        return None

    def executor(self, status: bool) -> Any:
        raise NotImplementedError

    def close(self) -> None: ...


class DaskBackend(Backend):
    """A dask-jobqueue cluster built from the rendered kwargs (``dask_cluster.json``), ``scale(jobs x per_job)``."""

    name = "dask"

    def __init__(self, site, run_dir, jobs):
        super().__init__(site, run_dir, jobs)
        self.cluster = None
        self.client = None

    def overrides(self) -> dict[str, Any]:
        from hpckit.deploy.backends.dask import render_dask

        kwargs = render_dask(self.site).kwargs
        over: dict[str, Any] = {}
        sched = dict(kwargs.get("scheduler_options", {}))
        sched.setdefault("dashboard_address", ("127.0.0.1" if self.site.loopback else "") + ":0")
        over["scheduler_options"] = sched
        logs = self.run_dir / "logs"
        if self.site.scheduler == "slurm":
            over["job_extra_directives"] = list(kwargs["job_extra_directives"]) + [
                f"--output={logs}/dask-worker-%j.out", f"--error={logs}/dask-worker-%j.err"]
        if self.site.scheduler == "local":
            over["n_workers"] = self.jobs
        return over

    def start(self) -> None:
        from distributed import Client

        from hpckit.deploy.backends.dask import render_dask

        self.cluster = render_dask(self.site).make_cluster(**self.overrides())
        if self.site.scheduler != "local":
            self.cluster.scale(self.jobs * self.site.worker.per_job)
        self.client = Client(self.cluster)

    def _job_ids(self) -> list[str]:
        if self.cluster is None:
            return []
        return [str(w.job_id) for w in list(getattr(self.cluster, "workers", {}).values())
                if getattr(w, "job_id", None)]

    def connected(self) -> int | None:
        if self.client is None:
            return 0
        try:
            return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))
        except TypeError:  # older distributed without n_workers
            return len(self.client.scheduler_info().get("workers", {}))
        except Exception:  # noqa: BLE001 - scheduler going away
            return 0

    def executor(self, status: bool) -> Any:
        from hpckit.processor import DaskExecutor

        return DaskExecutor(client=self.client, status=status)

    def close(self) -> None:
        self.job_ids()  # record the last ones before the cluster forgets them
        with contextlib.suppress(Exception):
            if self.client is not None:
                self.client.close(timeout=10)
        with contextlib.suppress(Exception):
            if self.cluster is not None:
                self.cluster.close(timeout=20)
        self.client = self.cluster = None


class ParslBackend(Backend):
    """The rendered ``parsl_config.py`` imported from the run dir, ``get_config(run_dir/runinfo)``, with
    ``init_blocks = max_blocks = jobs`` so the blocks are submitted at ``parsl.load``."""

    name = "parsl"

    def __init__(self, site, run_dir, jobs):
        super().__init__(site, run_dir, jobs)
        self.config = None
        self.dfk = None

    def load_config(self) -> Any:
        path = self.run_dir / "parsl_config.py"
        spec = importlib.util.spec_from_file_location(f"hpckit_parsl_config_{uuid.uuid4().hex[:8]}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = module.get_config(run_dir=str(self.run_dir / "runinfo"))
        for ex in config.executors:
            provider = getattr(ex, "provider", None)
            if provider is not None and self.site.scheduler != "local":
                provider.init_blocks = self.jobs
                provider.min_blocks = 0
                provider.max_blocks = self.jobs
        return config

    def start(self) -> None:
        import parsl

        self.config = self.load_config()
        self.dfk = parsl.load(self.config)

    def _htex(self) -> list[Any]:
        if self.dfk is None:
            return []
        return [ex for ex in self.dfk.executors.values() if hasattr(ex, "connected_managers")]

    def _job_ids(self) -> list[str]:
        ids = []
        for ex in self._htex():
            ids += [str(j) for j in dict(getattr(ex, "blocks_to_job_id", {}) or {}).values() if j is not None]
        return ids

    def connected(self) -> int | None:
        n = 0
        for ex in self._htex():
            with contextlib.suppress(Exception):
                n += sum(int(m.get("worker_count", 0)) for m in ex.connected_managers() if m.get("active", True))
        return n

    def executor(self, status: bool) -> Any:
        from hpckit.processor import ParslExecutor

        return ParslExecutor(config=self.config, status=status)

    def close(self) -> None:
        self.job_ids()
        if self.dfk is not None:
            import parsl

            with contextlib.suppress(Exception):
                self.dfk.cleanup()
            with contextlib.suppress(Exception):
                parsl.clear()
        self.dfk = None


class TaskVineBackend(Backend):
    """A ``vine_factory`` subprocess (rendered command) that keeps worker jobs for the executor's manager.

    The factory submits and, on SIGTERM, removes its own jobs. On Slurm its jobs get a job name of this run
    (``--job-name`` appended to its batch options) so launch lists them with ``squeue -n`` and cancels any the
    factory left. ``CATALOG_HOST`` defaults to 127.0.0.1 (cctools' compiled-in catalog
    is a public host)."""

    name = "taskvine"

    def __init__(self, site, run_dir, jobs, port: int = 9123):
        super().__init__(site, run_dir, jobs)
        self.port = port
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        from hpckit.deploy.backends.taskvine import WRAPPER_NAME, render_taskvine

        host = "127.0.0.1" if self.site.loopback or self.site.scheduler == "local" else _host_address(self.site)
        r = render_taskvine(self.site, host, self.port, config_path=str(self.run_dir / "vine_factory.json"),
                            wrapper_path=str(self.run_dir / WRAPPER_NAME))
        cfg = dict(r.config)
        cfg["max-workers"] = self.jobs
        cfg["min-workers"] = self.jobs
        (self.run_dir / "vine_factory.json").write_text(json.dumps(cfg, indent=2) + "\n")
        scratch = self.run_dir / "vine-factory"
        scratch.mkdir(exist_ok=True)
        cmd = [r.command[0], "--scratch-dir", str(scratch), *r.command[1:]]
        if self.site.scheduler == "slurm":
            # a job name of this run, so its jobs can be listed (and cancelled) by name
            self.job_name = f"hpckit-vine-{self.run_dir.name}"[:60]
            if "--batch-options" in cmd:
                i = cmd.index("--batch-options") + 1
                cmd[i] = f"{cmd[i]} --job-name={shlex.quote(self.job_name)}"
            else:
                cmd[1:1] = ["--batch-options", f"--job-name={shlex.quote(self.job_name)}"]
        env = dict(os.environ)
        env.setdefault("CATALOG_HOST", "127.0.0.1")
        log = open(self.run_dir / "logs" / "vine_factory.log", "ab")
        self.proc = subprocess.Popen(cmd, cwd=self.run_dir / "logs", env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()

    job_name: str | None = None

    def _job_ids(self) -> list[str]:
        if not self.job_name or shutil.which("squeue") is None:
            return []
        r = _run(["squeue", "-h", "-n", self.job_name, "-o", "%i"], timeout=15)
        return r.stdout.split() if r.returncode == 0 else []

    def executor(self, status: bool) -> Any:
        from hpckit.processor import TaskVineExecutor

        return TaskVineExecutor(port=self.port, status=status, filepath=str(self.run_dir))

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # the factory removes its worker jobs on SIGTERM
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _host_address(site: Site) -> str:
    import socket

    iface = site.network.interface
    if iface:
        import psutil

        for a in psutil.net_if_addrs().get(iface, []):
            if a.family == socket.AF_INET:
                return a.address
    return socket.gethostname()


# ------------------------------------------------------------------------------------------------
# options, result, run dir


@dataclass
class LaunchOptions:
    site: str
    analysis: Path
    fileset: Path
    processor_name: str | None = None
    backend: str | None = None  # None: the site's default_backend (futures for the local site)
    workers: int | None = None  # worker processes; None: the site's max_workers (all cores locally)
    overrides: list[str] = field(default_factory=list)
    chunksize: int = 100_000
    maxchunks: int | None = None
    treename: str | None = None
    schema: str = "nanoaod"
    checkpoint: Path | None = None
    output: Path | None = None  # None: <run dir>/out.pkl
    dry_run: bool = False
    fallback: bool = True
    worker_timeout: float = 300.0
    run_dir: Path | None = None  # None: default_run_dir(site)
    status: bool = True
    plots: bool = True
    port: int = 9123  # TaskVine manager port
    say: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr), repr=False)


@dataclass
class LaunchResult:
    run_dir: Path
    site: str
    backend: str
    mode: str  # "batch", "local", "fallback" or "dry-run"
    job_ids: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    metrics: dict | None = None
    seconds_to_first_worker: float | None = None
    seconds_to_result: float | None = None
    planned: list[str] = field(default_factory=list)  # dry run: what would be submitted
    notes: list[str] = field(default_factory=list)


def _expand(path: str) -> str | None:
    expanded = os.path.expanduser(os.path.expandvars(path))
    return None if "$" in expanded else expanded


def default_run_dir(site: Site, now: _dt.datetime | None = None) -> Path:
    """``<site scratch>/hpckit-runs/<id>`` for a batch site whose scratch resolves to an existing
    directory here, else ``./hpckit-runs/<id>``; ``<id>`` is ``YYYYmmdd-HHMMSS-<6 hex>``."""
    now = now or _dt.datetime.now()
    run_id = f"{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    if site.scheduler != "local" and site.scratch:
        base = _expand(site.scratch)
        if base and os.path.isdir(base) and os.access(base, os.W_OK):
            return Path(base) / "hpckit-runs" / run_id
    return Path("hpckit-runs").resolve() / run_id


def _pick_backend(site: Site, backend: str | None) -> str:
    if backend is None:
        return "futures" if site.scheduler == "local" else site.default_backend
    if backend not in BACKENDS:
        raise LaunchError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    return backend


def _local_workers(site: Site, requested: int | None) -> int:
    if requested:
        return requested
    return site.max_workers or os.cpu_count() or 1


def _batch_jobs(site: Site, workers: int | None) -> int:
    n = workers or site.max_workers or 1
    if site.max_workers and n > site.max_workers:
        n = site.max_workers  # never more than the site allows
    return max(1, math.ceil(n / site.worker.per_job))


def _record(run_dir: Path, result: LaunchResult, extra: dict | None = None) -> None:
    data = asdict(result)
    data["run_dir"] = str(result.run_dir)
    data["written"] = [str(p) for p in result.written]
    data.pop("metrics", None)
    data.update(extra or {})
    (run_dir / "launch.json").write_text(json.dumps(data, indent=2, default=str) + "\n")


# ------------------------------------------------------------------------------------------------
# signals and teardown


def _on_term(signum, frame):
    raise Terminated(f"received signal {signum}")


def _raise_on_signals() -> None:
    """SIGINT raises KeyboardInterrupt and SIGTERM :class:`Terminated` (main thread only).

    Called again after a backend starts: importing dask_jobqueue installs a SIGINT handler that calls
    ``sys.exit()`` (dask_jobqueue/runner.py), which would end the launch with status 0 and no teardown message.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _on_term)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Inside: SIGTERM raises :class:`Terminated` in the main thread (like Ctrl-C raises KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    olds = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    _raise_on_signals()
    try:
        yield
    finally:
        for s, h in olds.items():
            signal.signal(s, h)


@contextlib.contextmanager
def _shielded() -> Iterator[list[int]]:
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


def teardown(backend: Backend | None, sched: BatchScheduler | None, say: Callable[[str], None],
             wait: float = 30.0) -> list[str]:
    """Close the backend, then cancel every job it submitted that is still queued, and wait until the
    scheduler no longer lists them. Returns the job ids still listed at the end (normally none)."""
    if backend is None:
        return []
    with _shielded():
        ids = backend.job_ids()
        backend.close()
        ids = backend.job_ids() or ids
        if sched is None or not ids:
            return []
        left = sched.queued(ids)
        if left:
            say(f"hpckit: {len(left)} batch job(s) still listed after closing {backend.name}; cancelling: {' '.join(left)}")
            sched.cancel(left)
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            time.sleep(0.5)
            left = sched.queued(left)
        if left:
            say(f"hpckit: WARNING: jobs still listed after cancel: {' '.join(left)}")
        return left


# ------------------------------------------------------------------------------------------------
# waiting for workers, live worker count


def wait_for_first_worker(backend: Backend, sched: BatchScheduler | None, timeout: float,
                          expected_jobs: int, poll: float = 0.5) -> None:
    """Return once a worker is connected. Raise :class:`WorkerTimeout` after ``timeout`` seconds, or as
    soon as every submitted job has ended without a worker connecting, with each job's state and the
    tail of its stderr."""
    deadline = time.monotonic() + timeout
    last_status = 0.0
    while True:
        if (backend.connected() or 0) >= 1:
            return
        now = time.monotonic()
        ids = backend.job_ids()
        ended_early = False
        if sched is not None and ids and now - last_status > 2.0:
            last_status = now
            states = sched.status(ids)
            ended_early = len(ids) >= expected_jobs and all(s.terminal for s in states.values())
        if ended_early or now > deadline:
            if (backend.connected() or 0) >= 1:
                return
            why = ("every worker job ended before a worker connected" if ended_early
                   else f"no worker connected within {timeout:g} s")
            raise WorkerTimeout(_timeout_message(why, backend, sched, ids))
        time.sleep(poll)


def _timeout_message(why: str, backend: Backend, sched: BatchScheduler | None, ids: list[str]) -> str:
    lines = [f"{why} (site {backend.site.name}, backend {backend.name})."]
    if not ids:
        lines.append("No batch job was submitted (see the logs in the run directory).")
    elif sched is not None:
        lines.append(f"{len(ids)} batch job(s), as the scheduler sees them:")
        for st in sched.status(ids).values():
            lines.append(st.summary())
    lines.append(f"The jobs are being cancelled. Check the site with: hpckit doctor --site {backend.site.name}")
    return "\n".join(lines)


def _feed_workers(executor: Any, backend: Backend) -> None:
    """Wrap ``executor.run`` so the progress bar's worker count follows ``backend.connected()`` each second."""
    original = executor.run

    def run(items, job, progress):
        stop = threading.Event()

        def loop():
            while not stop.wait(1.0):
                n = backend.connected()
                if n is not None:
                    progress.set_workers(n)

        t = threading.Thread(target=loop, name="hpckit-workers", daemon=True)
        t.start()
        try:
            return original(items, job, progress)
        finally:
            stop.set()
            t.join(timeout=5)

    executor.run = run


# ------------------------------------------------------------------------------------------------
# the flow


def _run_opts(opts: LaunchOptions, output: Path, executor_name: str, workers: int):
    from hpckit.localrun import LocalRunOptions

    return LocalRunOptions(
        analysis=Path(opts.analysis).resolve(), fileset=Path(opts.fileset).resolve(),
        processor_name=opts.processor_name, executor=executor_name, workers=workers, chunksize=opts.chunksize,
        maxchunks=opts.maxchunks, treename=opts.treename, schema=opts.schema,
        checkpoint=Path(opts.checkpoint).resolve() if opts.checkpoint else None, output=output,
        status=opts.status, plots=opts.plots,
    )


def environment_check(say: Callable[[str], None] = print) -> Any:
    """The client's environment fingerprint, checked by every worker before it takes work: a worker
    whose installed versions differ refuses with the list of differing packages instead of failing
    later while unpickling. ``HPCKIT_NO_ENV_CHECK=1`` turns it off."""
    if os.environ.get("HPCKIT_NO_ENV_CHECK") == "1":
        return None
    from hpckit.deploy.envlock import check_environment, current_fingerprint

    fp = current_fingerprint()
    say(f"hpckit: environment fingerprint {fp.hash} (hpckit and its dependencies) checked on every worker")
    return functools.partial(check_environment, fp.to_json())


def launch(opts: LaunchOptions) -> LaunchResult:
    """Render ``opts.site`` into a run directory, start workers, run the processor, write the results,
    tear everything down. See the module docstring."""
    t0 = time.perf_counter()
    say = opts.say
    site = load_site(opts.site, opts.overrides).site
    backend_name = _pick_backend(site, opts.backend)
    run_dir = Path(opts.run_dir).resolve() if opts.run_dir else default_run_dir(site)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "logs").mkdir(exist_ok=True)
    output = Path(opts.output).resolve() if opts.output else run_dir / "out.pkl"
    for p, what in ((opts.analysis, "analysis file"), (opts.fileset, "fileset")):
        if not Path(p).is_file():
            raise LaunchError(f"{what} not found: {p}")
    result = LaunchResult(run_dir=run_dir, site=site.name, backend=backend_name, mode="batch")
    command = {"argv": sys.argv, "cwd": os.getcwd(), "overrides": list(opts.overrides)}

    # local: the local site, a local executor, or a batch site without its scheduler here
    local_reason = None
    if backend_name in ("futures", "iterative"):
        local_reason = f"backend {backend_name} runs on this machine"
    elif site.scheduler == "local" and opts.backend is None:
        local_reason = "site local"
    sched = scheduler_for(site, run_dir / "logs")
    if local_reason is None and sched is not None and sched.missing() and not opts.dry_run:
        msg = (f"site {site.name} uses {site.scheduler}, but {', '.join(sched.missing())} "
               f"{'is' if len(sched.missing()) == 1 else 'are'} not on this machine's PATH")
        if not opts.fallback:
            raise LaunchError(msg + " (--no-fallback given; run on the site's login node, or drop --no-fallback "
                                    "to run locally)")
        say(f"hpckit: {msg}; running locally with FuturesExecutor on all cores instead")
        result.notes.append(msg + "; fell back to a local run")
        result.mode = "fallback"
        backend_name = "futures"
        local_reason = "fallback"

    if local_reason is not None:
        executor_name = backend_name if backend_name in ("futures", "iterative") else "futures"
        workers = opts.workers or os.cpu_count() or 1
        result.backend = executor_name
        if result.mode != "fallback":
            result.mode = "local"
        if opts.dry_run:
            result.mode = "dry-run"
            result.planned.append(f"run locally: {executor_name} executor with {workers} worker(s); nothing submitted")
            _record(run_dir, result, {"command": command})
            return result
        from hpckit.localrun import make_executor, run_with_executor

        executor = make_executor(executor_name, workers, opts.status)
        _, metrics, written = run_with_executor(_run_opts(opts, output, executor_name, workers), executor)
        result.metrics, result.written = metrics, written
        result.seconds_to_result = time.perf_counter() - t0
        _record(run_dir, result, {"command": command})
        return result

    # batch (or the local site with an explicit dask/parsl/taskvine backend)
    if site.scheduler == "local":
        jobs = _local_workers(site, opts.workers)
    else:
        jobs = _batch_jobs(site, opts.workers)
    paths = render_all(site, backend_name, run_dir, port=opts.port)
    if opts.dry_run:
        result.mode = "dry-run"
        result.planned = _plan(site, backend_name, jobs, run_dir, paths, opts.port)
        _record(run_dir, result, {"command": command, "rendered": [str(p) for p in paths]})
        return result

    backend = {"dask": DaskBackend, "parsl": ParslBackend, "taskvine": TaskVineBackend}[backend_name]
    backend = backend(site, run_dir, jobs) if backend_name != "taskvine" else backend(site, run_dir, jobs, opts.port)
    cwd = os.getcwd()
    run_opts = _run_opts(opts, output, backend_name, jobs)  # paths resolved before the chdir below
    error: BaseException | None = None
    try:
        with _sigterm_raises():
            # submit from the logs dir: schedulers that ignore -o/-e (PBS here) write the job logs there
            os.chdir(run_dir / "logs")
            say(f"hpckit: run dir {run_dir}")
            say(f"hpckit: starting {backend_name} workers on {site.name}: {jobs} batch job(s)"
                if site.scheduler != "local" else f"hpckit: starting {backend_name} with {jobs} local worker(s)")
            backend.start()
            _raise_on_signals()
            if backend_name != "taskvine":  # TaskVine's manager only exists inside the executor's run
                wait_for_first_worker(backend, sched, opts.worker_timeout, jobs if site.scheduler != "local" else 0)
                result.seconds_to_first_worker = time.perf_counter() - t0
                say(f"hpckit: first worker connected after {result.seconds_to_first_worker:.1f} s")
            from hpckit.localrun import run_with_executor

            executor = backend.executor(opts.status)
            _feed_workers(executor, backend)
            _, metrics, written = run_with_executor(run_opts, executor, environment_check(say))
            result.metrics, result.written = metrics, written
            result.seconds_to_result = time.perf_counter() - t0
    except BaseException as exc:
        error = exc
        raise
    finally:
        try:
            left = teardown(backend, sched, say)
        finally:
            os.chdir(cwd)
        result.job_ids = backend.job_ids()
        extra = {"command": command, "jobs_left_after_teardown": left,
                 "error": None if error is None else f"{type(error).__name__}: {error}"}
        if sched is not None and result.job_ids:
            with contextlib.suppress(Exception):
                extra["job_states"] = {j: s.state for j, s in sched.status(result.job_ids).items()}
        _record(run_dir, result, extra)
    return result


def _plan(site: Site, backend: str, jobs: int, run_dir: Path, paths: list[Path], port: int) -> list[str]:
    from hpckit.deploy.backends.common import SUBMIT

    submit = SUBMIT.get(site.scheduler, "")
    lines = [f"rendered into {run_dir}: " + ", ".join(p.name for p in paths)]
    if site.scheduler == "local":
        lines.append(f"would start {backend} with {jobs} local worker process(es); nothing is submitted")
    elif backend == "dask":
        script = "job_script.sub" if site.scheduler == "htcondor" else "job_script.sh"
        lines.append(f"would submit {jobs} job(s) of {run_dir / script} with {submit} "
                     f"(dask-jobqueue {site.scheduler}), {site.worker.per_job} worker(s) each")
    elif backend == "parsl":
        lines.append(f"would load {run_dir / 'parsl_config.py'} with {jobs} block(s) ({submit} via Parsl)")
    else:
        cmd = (run_dir / "vine_factory.sh").read_text().splitlines()[-1].removeprefix("exec ")
        lines.append(f"would run: {cmd}  (up to {jobs} worker job(s) via {submit})")
    return lines
