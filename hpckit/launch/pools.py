"""Worker pools: start exactly what the plan rendered into the run directory (a dask-jobqueue cluster or a
LocalCluster from ``dask_cluster.json``, the rendered ``parsl_config.py``, the rendered ``vine_factory.sh``),
record every batch job id in ``jobs.txt`` as it is submitted, report connected workers, make the executor."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import logging
import os
import shlex
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from hpckit.deploy.retire import RetireBeforeWalltime
from hpckit.deploy.schedulers import SubmitError
from hpckit.extras import require_command, require_module
from hpckit.launch.keeper import failures_allowed
from hpckit.launch.plan import Plan


class JobRecord:
    """``jobs.txt`` of a run: each job id appended (and flushed to disk) the moment it is known, and the
    scheduler's refusals kept for the error message."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "jobs.txt"
        self.ids: list[str] = []
        self.refusals: list[str] = []
        self.refused_count = 0
        self._lock = threading.Lock()

    def add(self, job_id: Any) -> None:
        job_id = str(job_id).strip()
        with self._lock:
            if not job_id or job_id in self.ids:
                return
            self.ids.append(job_id)
            with open(self.path, "a") as fh:
                fh.write(job_id + "\n")
                fh.flush()
                os.fsync(fh.fileno())

    def refused(self, message: str) -> None:
        with self._lock:
            if message.strip() not in self.refusals:
                self.refusals.append(message.strip())
            self.refused_count += 1


class _QuietRefusals(logging.Filter):
    """Drops the tracebacks tornado and asyncio log for a refused submission: launch reports it once, with
    the scheduler's words first."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, SubmitError)


_QUIET = _QuietRefusals()


def quiet_refusal_tracebacks() -> None:
    for name in ("tornado.application", "asyncio", "distributed.deploy.spec"):
        logging.getLogger(name).addFilter(_QUIET)  # idempotent: a filter is added once


def _stderr_of(exc: BaseException) -> str:
    """The command's own stderr from dask-jobqueue's RuntimeError ("...stderr:\\n<text>"), else the message."""
    text = str(exc)
    _, sep, tail = text.partition("stderr:\n")
    return (tail.strip() or text) if sep else text


def recording_job_class(base: type, record: JobRecord, cwd: str) -> type:
    """A subclass of dask-jobqueue's Job class for one launch: submits from ``cwd`` (the logs directory, where
    schedulers that ignore -o/-e write), records each job id the moment the submit command prints it, and
    keeps the scheduler's refusal."""

    class RecordingJob(base):  # type: ignore[misc, valid-type]
        async def _submit_job(self, script_filename):
            try:
                return await self._call(shlex.split(self.submit_command) + [script_filename], cwd=cwd)
            except Exception as exc:
                message = f"{_stderr_of(exc)} ({self.submit_command} refused the job)"
                record.refused(message)
                raise SubmitError(message) from None

        def _job_id_from_submit_output(self, out):
            job_id = super()._job_id_from_submit_output(out)
            record.add(job_id)
            return job_id

    RecordingJob.__name__ = RecordingJob.__qualname__ = f"Recording{base.__name__}"
    return RecordingJob


class Pool:
    """Starts the workers of one plan. ``job_ids()``: every batch job it submitted so far (also in jobs.txt)."""

    name = "base"

    def __init__(self, plan: Plan):
        self.adaptive = False  # scaled by the engine with the load (--adapt): keep_alive leaves it alone
        self.plan = plan
        self.site = plan.site
        self.run_dir = plan.run_dir
        self.record = JobRecord(plan.run_dir)

    def start(self) -> None: ...

    def poll_ids(self) -> None:
        """Record job ids this pool only learns by asking (Parsl blocks, vine_factory's jobs)."""

    def job_ids(self) -> list[str]:
        self.poll_ids()
        return list(self.record.ids)

    def refusals(self) -> list[str]:
        """The scheduler's own words for each refused submission."""
        return list(self.record.refusals)

    def connected(self) -> int | None:
        """Workers connected now; None when this pool cannot tell before the run starts."""
        return None

    def keep_alive(self) -> None:
        """Submit replacements for jobs that ended or are retiring (walltime, preemption, node failure) so
        the plan's jobs stay up while the run lasts; stop once jobs keep ending without a worker connecting
        (:meth:`stop_reason` says so). Parsl and vine_factory replace blocks themselves (``min_blocks`` /
        ``min-workers`` are the plan's jobs)."""

    def stop_reason(self) -> str | None:
        """Why no more workers will come (replacing stopped, the engine gave up), else None."""
        return None

    def quiet_allowed(self) -> float:
        """Seconds with no worker and no job listed before the launch is stalled, when nothing says why (the
        engine may still be about to replace its jobs)."""
        return 30.0

    def helper_pids(self) -> list[int]:
        """Processes on this machine the pool started that outlive a SIGKILLed launch (Parsl's interchange,
        vine_factory); `hpckit cancel` ends them."""
        return []

    def executor(self, status: bool) -> Any:
        raise NotImplementedError

    def close(self) -> None: ...


class DaskPool(Pool):
    """The cluster class and keyword arguments of the rendered ``dask_cluster.json``, scaled to its
    ``scale_jobs`` (a LocalCluster of ``n_workers`` for the local site)."""

    name = "dask"

    def __init__(self, plan: Plan):
        super().__init__(plan)
        self.cluster = None
        self.client = None
        self.generations = JobGenerations(failures_allowed(plan.sizing.jobs))

    def start(self) -> None:
        require_module("distributed", "the dask backend")
        doc = json.loads((self.run_dir / "dask_cluster.json").read_text())
        module, _, cls_name = doc["cluster_class"].rpartition(".")
        cluster_cls = getattr(require_module(module, "the dask backend"), cls_name)
        kwargs = dict(doc["kwargs"])
        batch = "scale_jobs" in doc and self.plan.scheduler.batch
        if batch:
            quiet_refusal_tracebacks()
            kwargs["job_cls"] = recording_job_class(cluster_cls.job_cls, self.record, str(self.run_dir / "logs"))
        import dask
        from distributed import Client

        from hpckit.security import write_tls_files

        # TLS with a certificate made for this run (0600 files in the 0700 run directory): only the
        # scheduler, the workers (dask-jobqueue passes them the files) and this client can connect
        security = write_tls_files(self.run_dir / "tls", hosts=(self.plan.host,)).security()
        kwargs.update(security=security, protocol="tls://")
        # a worker that retired (its --lifetime) is forgotten after this long, and then replaced by keep_alive
        dask.config.set({"distributed.deploy.lost-worker-timeout": "2s"})
        self.cluster = cluster_cls(**kwargs)
        if batch:
            self._write_job_script()
            self.cluster.scale(jobs=int(doc["scale_jobs"]))
        self.client = Client(self.cluster, security=security)
        lifetime = self.site.lifetime()
        if batch and lifetime:  # workers leave between chunks before the walltime (hpckit.deploy.retire)
            self.client.register_plugin(RetireBeforeWalltime(int(self.site.walltime), *lifetime))

    def _write_job_script(self) -> None:
        """The rendered job script had a placeholder scheduler address (nothing was running yet): replace it
        with the one the jobs are submitted with (the scheduler's real ``tls://`` address and TLS files), so
        the run directory holds what ran."""
        with contextlib.suppress(Exception):
            path = self.run_dir / self.plan.scheduler.job_script_name()
            path.write_text(self.cluster.job_script())

    def keep_alive(self) -> None:
        """One job per planned job that is up and not retiring: a retiring worker's replacement is
        submitted when it starts retiring, so its data has somewhere to go."""
        cluster = self.cluster
        if cluster is None or self.adaptive or not self.plan.scheduler.batch or self.generations.stopped:
            return
        workers = self._workers_info()
        spec = list(cluster.worker_spec)
        statuses: dict[str, set[str]] = {}
        for w in workers.values():
            job = _job_of(str(w.get("name")), spec)
            if job is not None:
                statuses.setdefault(job, set()).add(str(w.get("status", "running")))
        jobs = dict(cluster.workers)  # name -> dask-jobqueue Job (submitted)
        ended = self._ended_without_worker(jobs, statuses)
        gone = self.generations.update(jobs, statuses, ended)
        for name in gone:  # left for good (retired, ended, lost): forget it; _correct_state closes what remains
            cluster.worker_spec.pop(name, None)
        if self.generations.stopped:
            return
        up = sum(1 for n in cluster.worker_spec if n not in statuses or statuses[n] & {"running", "paused", "init"})
        want = self.plan.sizing.jobs - up
        if want > 0 or gone:
            cluster.scale(jobs=len(cluster.worker_spec) + max(0, want))

    def _ended_without_worker(self, jobs: dict, statuses: dict) -> set[str]:
        """Submitted jobs with no worker that the scheduler lists as ended (every 10 s)."""
        waiting = {n: str(j.job_id) for n, j in jobs.items() if n not in statuses and getattr(j, "job_id", None)}
        now = time.monotonic()
        if not waiting or now - self.generations.last_status < 10:
            return set()
        self.generations.last_status = now
        states = self.plan.scheduler.status(list(waiting.values()))
        return {n for n, j in waiting.items() if j in states and states[j].terminal}

    def stop_reason(self) -> str | None:
        return self.generations.reason

    def _workers_info(self) -> dict:
        if self.client is None:
            return {}
        try:
            return dict(self.client.scheduler_info(n_workers=-1).get("workers", {}))
        except TypeError:  # older distributed without n_workers
            return dict(self.client.scheduler_info().get("workers", {}))

    def connected(self) -> int | None:
        try:
            return len(self._workers_info())
        except Exception:  # noqa: BLE001 - scheduler going away
            return 0

    def executor(self, status: bool) -> Any:
        from hpckit.processor import DaskExecutor

        return DaskExecutor(client=self.client, status=status)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.client is not None:
                self.client.close(timeout=10)
        with contextlib.suppress(Exception):
            if self.cluster is not None:
                self.cluster.close(timeout=20)
        self.client = self.cluster = None


def _job_of(worker_name: str, spec: list) -> str | None:
    """The dask-jobqueue job (worker_spec name) a worker belongs to: its name, or ``<job>-<i>`` for a job
    of several worker processes."""
    if worker_name in spec:
        return worker_name
    head = worker_name.rsplit("-", 1)[0]
    return head if head in spec else None


class JobGenerations:
    """Which submitted jobs did work (a worker connected) and which left; replacing stops after
    ``allowed`` jobs in a row ended without a worker."""

    def __init__(self, allowed: int):
        self.allowed = allowed
        self.worked: set[str] = set()
        self.submitted: set[str] = set()
        self.failed_in_a_row = 0
        self.reason: str | None = None
        self.last_status = 0.0

    @property
    def stopped(self) -> bool:
        return self.reason is not None

    def update(self, jobs: dict, statuses: dict, ended: set[str]) -> set[str]:
        """Record this look; returns the jobs that are gone for good."""
        for name in statuses:
            if name not in self.worked:
                self.worked.add(name)
                self.failed_in_a_row = 0
        self.submitted |= set(jobs)
        gone = {n for n in self.submitted if n not in jobs} | set(ended)
        for name in sorted(gone):
            self.submitted.discard(name)
            if name not in self.worked:
                self.failed_in_a_row += 1
        if self.failed_in_a_row >= self.allowed and self.reason is None:
            self.reason = (f"{self.failed_in_a_row} worker jobs in a row ended without a worker connecting, so no "
                           "more are submitted (see their stderr in the run directory's logs/)")
        return gone


class ParslPool(Pool):
    """The rendered ``parsl_config.py``, ``get_config(<run dir>/runinfo)``: its blocks are submitted at
    ``parsl.load``. Parsl's providers submit from the current directory, so the launch runs from ``logs/``."""

    name = "parsl"
    chdir_logs = True

    def __init__(self, plan: Plan):
        super().__init__(plan)
        self.config = None
        self.dfk = None

    def start(self) -> None:
        parsl = require_module("parsl", "the parsl backend")
        path = self.run_dir / "parsl_config.py"
        spec = importlib.util.spec_from_file_location(f"hpckit_parsl_config_{uuid.uuid4().hex[:8]}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.config = module.get_config(run_dir=str(self.run_dir / "runinfo"))
        for ex in self.config.executors:
            _poll_jobs_every(ex.provider, self._poll_interval(ex.provider))
            _commands_run_in(ex.provider, self.run_dir / "logs")
        self.dfk = parsl.load(self.config)
        self.poll_ids()

    def _poll_interval(self, provider: Any) -> float:
        """Parsl replaces a block that drained only when it next polls the scheduler (every 60 s for Slurm,
        PBS, HTCondor): with short walltimes, poll every sixth of the walltime (at least 10 s)."""
        every = getattr(provider, "status_polling_interval", 60) or 60
        if self.site.walltime:
            every = min(every, max(10, int(self.site.walltime) // 6))
        return every

    def quiet_allowed(self) -> float:
        every = max((self._poll_interval(ex.provider) for ex in self._htex()), default=60)
        return 2 * every + 15

    def _htex(self) -> list[Any]:
        if self.dfk is None:
            return []
        return [ex for ex in self.dfk.executors.values() if hasattr(ex, "connected_managers")]

    def helper_pids(self) -> list[int]:
        return [ex.interchange_proc.pid for ex in self._htex() if getattr(ex, "interchange_proc", None) is not None]

    def poll_ids(self) -> None:
        if not self.plan.scheduler.batch:
            return
        for ex in self._htex():
            for j in list(dict(getattr(ex, "blocks_to_job_id", {}) or {}).values()):
                if j is not None:
                    self.record.add(j)

    def refusals(self) -> list[str]:
        out = list(self.record.refusals)
        for ex in self._htex():
            with contextlib.suppress(Exception):
                for st in ex.status().values():
                    if str(getattr(st.state, "name", st.state)) == "FAILED" and st.message and \
                            "Failed to start block" in st.message:
                        out.append(st.message)
        return out

    def stop_reason(self) -> str | None:
        for ex in self._htex():
            if getattr(ex, "bad_state_is_set", False):
                return f"Parsl gave up on its blocks: {getattr(ex, 'executor_exception', None)}"
        return None

    def connected(self) -> int | None:
        n = 0
        for ex in self._htex():
            with contextlib.suppress(Exception):
                n += sum(int(m.get("worker_count", 0)) for m in ex.connected_managers() if m.get("active", True))
        return n

    def executor(self, status: bool) -> Any:
        from hpckit.processor import ParslExecutor

        return ParslExecutor(config=self.config, status=status)

    def close(self, wait: float = 30.0) -> None:
        """``DFK.cleanup``, for ``wait`` seconds at most (it waits without end on an interchange that died);
        then the interchange is ended and the launch cancels the jobs itself."""
        self.poll_ids()
        if self.dfk is not None:
            import parsl

            helpers = self.helper_pids()
            t = threading.Thread(target=self._cleanup, name="hpckit-parsl-cleanup", daemon=True)
            t.start()
            t.join(wait)
            if t.is_alive():
                logging.getLogger("hpckit.launch").warning("hpckit: Parsl's cleanup did not finish in %.0f s", wait)
                for pid in helpers:
                    with contextlib.suppress(OSError):
                        os.kill(pid, 9)
            with contextlib.suppress(Exception):
                parsl.clear()
        self.dfk = None

    def _cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.dfk.cleanup()


def _commands_run_in(provider: Any, where: Path) -> None:
    """Run ``provider``'s scheduler commands (qsub, sbatch, ...) from ``where``: PBS writes a job's stdout and
    stderr to the directory it was submitted from, and Parsl submits its blocks - the first ones too - from its
    own threads, whatever this process's current directory is by then."""
    run = getattr(provider, "execute_wait", None)
    if run is None:  # LocalProvider: its logs go to the submit script's directory anyway
        return
    prefix = f"cd {shlex.quote(str(where))} && "
    provider.execute_wait = lambda cmd, timeout=None: run(prefix + cmd, timeout)


def _poll_jobs_every(provider: Any, seconds: float) -> None:
    """Make ``provider`` report ``status_polling_interval = seconds`` (a read-only class property in Parsl):
    its class is swapped for a subclass that says so."""
    if provider is None or getattr(provider, "status_polling_interval", None) == seconds:
        return
    cls = type(provider)
    provider.__class__ = type(cls.__name__, (cls,), {"status_polling_interval": property(lambda self: seconds),
                                                      "__module__": cls.__module__})


class TaskVinePool(Pool):
    """The rendered ``vine_factory.sh`` as a subprocess; it keeps worker jobs for the executor's manager and
    removes them on SIGTERM. Its jobs carry the run's job name, so they are listed (and cancelled) by name.
    ``CATALOG_HOST`` defaults to 127.0.0.1 (cctools' compiled-in catalog is a public host)."""

    name = "taskvine"

    def __init__(self, plan: Plan):
        super().__init__(plan)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        require_command("vine_factory", "the taskvine backend")
        require_module("ndcctools.taskvine", "the taskvine backend")
        (self.run_dir / "vine-factory").mkdir(exist_ok=True)
        env = dict(os.environ)
        env.setdefault("CATALOG_HOST", "127.0.0.1")
        with open(self.run_dir / "logs" / "vine_factory.log", "ab") as log:
            self.proc = subprocess.Popen(["bash", str(self.run_dir / "vine_factory.sh")], cwd=self.run_dir / "logs",
                                         env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def poll_ids(self) -> None:
        name = self.plan.sizing.job_name
        if name and self.plan.scheduler.batch and not self.plan.scheduler.missing():
            for j in self.plan.scheduler.ids_named(name):
                self.record.add(j)

    def helper_pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None else []

    def executor(self, status: bool) -> Any:
        from hpckit.processor import TaskVineExecutor

        # tarball delivery: every task runs inside the packed environment, staged by TaskVine. As tasks: a
        # serverless library imports ndcctools inside the environment, which `hpckit pack` cannot hold
        # (ndcctools is not on PyPI)
        d = self.plan.site.env_delivery
        if d.mode == "tarball" and d.path:
            return TaskVineExecutor(port=self.plan.port, status=status, filepath=str(self.run_dir),
                                    environment_file=os.path.expandvars(d.path), mode="tasks")
        return TaskVineExecutor(port=self.plan.port, status=status, filepath=str(self.run_dir))

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # the factory removes its worker jobs on SIGTERM
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.poll_ids()
        self.proc = None


POOLS: dict[str, type[Pool]] = {"dask": DaskPool, "parsl": ParslPool, "taskvine": TaskVinePool}


def make_pool(plan: Plan) -> Pool:
    return POOLS[plan.backend](plan)
