"""`hpckit launch`: a site file -> worker jobs on its batch system -> the Runner -> the result -> teardown.

This module joins the two halves (``hpckit.deploy`` renders sites, ``hpckit.processor`` runs processors) and
owns every side effect: submitting, polling and cancelling batch jobs, helper processes, signals.

Layout (small pieces with one job each, Parsl-provider style; the first two live in
``hpckit.deploy.schedulers``, the backends in ``hpckit.launch_backends``, and are re-exported here):

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
import json
import math
import functools
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from hpckit.deploy import load_site, render_all
from hpckit.deploy.site import Site
from hpckit.errors import LaunchError
from hpckit.deploy.schedulers import (  # noqa: F401 - re-exported
    BatchScheduler,
    HTCondorScheduler,
    JobStatus,
    PBSScheduler,
    SlurmScheduler,
    _run,
    scheduler_for,
)
from hpckit.launch_backends import Backend, DaskBackend, ParslBackend, TaskVineBackend, _host_address  # noqa: F401

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


class WorkerTimeout(LaunchError):
    """No worker connected in time (or every worker job ended first); the message holds the jobs' states
    and the tail of their stderr."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived; raised in the main thread so the same teardown as Ctrl-C runs."""


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
    env: Path | None = None  # envdeliver: an `hpckit pack` tarball for the workers (env_delivery tarball)
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


def environment_check(say: Callable[[str], None] = print, lock: Any = None) -> Any:
    """The client's environment fingerprint, checked by every worker before it takes work: a worker
    whose installed versions differ refuses with the list of differing packages instead of failing
    later while unpickling. ``HPCKIT_NO_ENV_CHECK=1`` turns it off."""
    if os.environ.get("HPCKIT_NO_ENV_CHECK") == "1":
        return None
    from hpckit.deploy.envlock import check_environment, current_fingerprint

    fp = current_fingerprint(lock)
    say(f"hpckit: environment fingerprint {fp.hash} (the client's lock) checked on every worker")
    return functools.partial(check_environment, fp.to_json())


def launch(opts: LaunchOptions) -> LaunchResult:
    """Render ``opts.site`` into a run directory, start workers, run the processor, write the results,
    tear everything down. See the module docstring."""
    t0 = time.perf_counter()
    say = opts.say
    from hpckit.deploy import delivery  # envdeliver: how the locked environment reaches the workers

    site = load_site(opts.site, list(opts.overrides) + delivery.env_overrides(opts.env)).site
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
    # envdeliver: resolve the site's image / tarball / interpreter for the client's lock and check it here,
    # before anything is submitted (DeliveryError names what is missing and the command that makes it)
    prepared = delivery.prepare(site, check=not opts.dry_run)
    site = prepared.site
    result.notes += [f"{f.name}: {f.result}: {f.detail}" for f in prepared.findings]
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
            _, metrics, written = run_with_executor(run_opts, executor, environment_check(say, prepared.lock))
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
