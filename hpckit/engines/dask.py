"""The Dask engine: `hpckit run` on a LocalCluster of ``--workers`` (or a running scheduler, ``--scheduler``);
`launch` / `up` start the site's rendered ``dask_cluster.json`` (a dask-jobqueue cluster with TLS, or a
LocalCluster for the local site), record each job id as it is submitted and replace jobs that end."""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from hpckit.deploy.schedulers import SubmitError, scheduler_for
from hpckit.engines.base import Engine, JobRecord, Pool, failures_allowed
from hpckit.core.extras import require_module
from hpckit.core.units import plural

if TYPE_CHECKING:
    from hpckit.engines.base import Plan


class DaskEngine(Engine):
    name = "dask"
    batch = True
    modules = ("dask_jobqueue", "distributed")
    node_files = ("Dask TLS files in the run directory",)

    def sizes_workers(self, opts: Any) -> bool:
        return not opts.scheduler

    @contextlib.contextmanager
    def run_executor(self, opts: Any, workers: int, status: bool, records_dir: Path, say: Any) -> Iterator[Any]:
        require_module("distributed", "the dask executor")
        from hpckit.processor import DaskExecutor

        if opts.scheduler:
            from distributed import Client

            with Client(opts.scheduler) as client:
                yield DaskExecutor(client=client, status=status)
        else:
            yield DaskExecutor(workers=workers, status=status)

    def pool(self, plan: Plan) -> Pool:
        return DaskPool(plan)

    def dry_run(self, plan: Plan) -> list[str]:
        site, sched, run_dir = plan.site, plan.scheduler, plan.run_dir
        note = self.render_note(site, plan.rendered)
        return ([f"({note})"] if note else []) + [
                f"would submit {plural(plan.sizing.jobs, 'job')} of {run_dir / sched.job_script_name()} with "
                f"{sched.submit_command} (dask-jobqueue {site.scheduler}), "
                f"{plural(site.worker.per_job, 'worker')} each"]

    def render_note(self, site: Any, rendered: list[Path]) -> str | None:
        if not scheduler_for(site).batch or any(p.name.startswith("job_script") for p in rendered):
            return None
        from hpckit.core.extras import INSTALL

        return f"no job script rendered: dask-jobqueue is not installed; {INSTALL['dask_jobqueue']}"


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


def recording_job_class(base: type, record: JobRecord, cwd: str, staged_tls: str | None = None) -> type:
    """A subclass of dask-jobqueue's Job class for one launch: submits from ``cwd`` (the logs directory, where
    schedulers that ignore -o/-e write), records each job id the moment the submit command prints it, and
    keeps the scheduler's refusal. ``staged_tls``: the run's TLS directory, which the worker command then
    reads from the job's staging directory instead (a site without a shared file system)."""

    class RecordingJob(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            if staged_tls:
                from hpckit.deploy.staging import KEYS

                # in the background, and waited for: bash runs the job's TERM trap (which removes the staged
                # files) at once on scancel, not after the worker's shutdown, which KillWait's SIGKILL may cut short
                cmd = self._command_template.replace(staged_tls + "/", f'"$hpckit_stage"/{KEYS}/')
                self._command_template = f"{cmd} & wait $!"

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


class DaskPool(Pool):
    """The cluster class and keyword arguments of the rendered ``dask_cluster.json``, scaled to its
    ``scale_jobs`` (a LocalCluster of ``n_workers`` for the local site)."""

    name = "dask"

    def __init__(self, plan: Plan):
        super().__init__(plan)
        self.cluster = None
        self.client = None
        self.tls = None
        self.generations = JobGenerations(failures_allowed(plan.sizing.jobs))

    def start(self) -> None:
        require_module("distributed", "the dask backend")
        doc = json.loads((self.run_dir / "dask_cluster.json").read_text())
        module, _, cls_name = doc["cluster_class"].rpartition(".")
        cluster_cls = getattr(require_module(module, "the dask backend"), cls_name)
        kwargs = dict(doc["kwargs"])
        batch = "scale_jobs" in doc and self.plan.scheduler.batch
        import dask
        from distributed import Client

        from hpckit.io.tls import write_tls_files

        # TLS with a certificate made for this run (0600 files in the 0700 run directory): only the
        # scheduler, the workers (dask-jobqueue passes them the files) and this client can connect
        self.tls = write_tls_files(self.run_dir / "tls", hosts=(self.plan.host,))
        security = self.tls.security()
        if batch:
            quiet_refusal_tracebacks()
            from hpckit.deploy.staging import staged as staged_site

            staged = str(self.tls.directory) if staged_site(self.site, self.name) else None
            kwargs["job_cls"] = recording_job_class(cluster_cls.job_cls, self.record, str(self.run_dir / "logs"), staged)
        kwargs.update(security=security, protocol="tls://")
        # a worker that retired (its --lifetime) is forgotten after this long, and then replaced by keep_alive
        dask.config.set({"distributed.deploy.lost-worker-timeout": "2s"})
        from hpckit.processor.executors.dask import QUIET_LOGS

        with dask.config.set(QUIET_LOGS):  # the scheduler runs in this process: its debug logs stay short
            self.cluster = cluster_cls(**kwargs)
            if batch:
                self._write_job_script()
                self.cluster.scale(jobs=int(doc["scale_jobs"]))
            self.client = Client(self.cluster, security=security)
        lifetime = self.site.lifetime()
        if batch and lifetime:  # workers leave between chunks before the walltime (hpckit.deploy.retire)
            from hpckit.deploy.retire import RetireBeforeWalltime  # imports distributed: only when a pool starts

            self.client.register_plugin(RetireBeforeWalltime(int(self.site.walltime), *lifetime))

    def _write_job_script(self) -> None:
        """The rendered job script had a placeholder scheduler address (nothing was running yet): replace it
        with the one the jobs are submitted with (the scheduler's real ``tls://`` address and TLS files), so
        the run directory holds what ran."""
        with contextlib.suppress(Exception):
            path = self.run_dir / self.plan.scheduler.job_script_name()
            path.write_text(self.cluster.job_script())

    def staged_files(self) -> dict[str, Path]:
        """The run's TLS certificate and key, for jobs that cannot read the run directory."""
        from hpckit.deploy.staging import KEYS

        return {} if self.tls is None else {f"{KEYS}/{f.name}": f for f in (self.tls.cert, self.tls.key)}

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

    def adapt(self, workers: tuple[int, int], jobs: tuple[int, int]) -> None:
        if self.plan.scheduler.batch:
            self.cluster.adapt(minimum_jobs=jobs[0], maximum_jobs=jobs[1])
        else:
            self.cluster.adapt(minimum=workers[0], maximum=workers[1])

    def new_executor(self, status: bool) -> Any:
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



ENGINE = DaskEngine()
