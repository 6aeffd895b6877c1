"""A pool of workers for a site that stays up across runs: ``launch = up + run + down``.

:class:`Session` does what `hpckit launch` does before and after its run, and nothing else:

* :meth:`Session.up` - the site (checks, environment delivery), the plan rendered with its final numbers,
  the pool started (TLS, every job id recorded in ``jobs.txt`` as it is submitted), the first worker
  awaited, the keeper that replaces jobs ended by walltime, and a *lifeline*
  (:mod:`hpckit.launch.lifeline`): a small process that cancels every job if this one dies (SIGKILL,
  a dead kernel) before :meth:`Session.down`;
* :meth:`Session.executor` - an executor on those workers for any number of ``Runner`` calls; it refuses a
  run when the environment changed since the workers started (:class:`EnvironmentChanged`);
* :meth:`Session.run` - one :class:`hpckit.run.RunSpec`, its records in ``<run dir>/runs/NNN``;
* :meth:`Session.down` - close the pool, cancel and wait for every job, end the lifeline.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from hpckit.core.defaults import VINE_PORT
from hpckit.deploy import delivery, load_site
from hpckit.deploy.network import require_interface
from hpckit.deploy.staging import staged
from hpckit.deploy.schedulers import scheduler_for
from hpckit.core.errors import LaunchError
from hpckit.engines import ENGINES, batch_names
from hpckit.launch.plan import Plan, default_run_dir, manager_host, pick_backend, size
from hpckit.launch.changes import fingerprint_now, forget_edited_modules, guarded
from hpckit.launch.teardown import process_identity, teardown, wait_for_workers
from hpckit.io.paths import private_dir, shell_safe_path, write_json
from hpckit.core.units import plural


class EnvironmentChanged(LaunchError):
    """The client's packages changed since the workers started: they would unpickle a different world."""


@dataclass
class PoolOptions:
    """What `hpckit up`, ``hpckit.cluster(...)`` and `hpckit launch` ask of a site (one default each)."""

    site: str
    backend: str | None = None  # None: the site's default_backend
    workers: int | None = None  # None: min(site maximum, chunks) or, without chunks, the site's maximum
    adapt: tuple[int, int] | None = None  # (minimum, maximum) workers, scaled with the load (dask, parsl)
    overrides: list[str] = field(default_factory=list)
    run_dir: Path | None = None  # None: default_run_dir(site)
    worker_timeout: float = 300.0
    wait_workers: int = 1  # workers connected before the run starts (at most the pool's; fewer after the timeout)
    port: int = VINE_PORT  # TaskVine manager port
    env: Path | None = None  # an `hpckit pack` tarball the workers run (env_delivery tarball)
    lifeline: bool = True  # a process that cancels every job when this one dies without down()
    say: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr), repr=False)


def parse_adapt(text: str | tuple | None) -> tuple[int, int] | None:
    """``"MIN:MAX"`` (or a pair) -> ``(min, max)`` with ``1 <= min <= max``; a bad value names the fix."""
    if text is None:
        return None
    try:
        lo, hi = (int(x) for x in (text.split(":") if isinstance(text, str) else text))
    except (ValueError, TypeError):
        raise LaunchError(f"--adapt {text!r}: expected MIN:MAX workers, e.g. --adapt 1:8") from None
    if not 1 <= lo <= hi:
        raise LaunchError(f"--adapt {text!r}: need 1 <= MIN <= MAX, e.g. --adapt 1:8")
    return lo, hi


class Session:
    """One site's workers, up from :meth:`up` to :meth:`down` (see the module docstring)."""

    def __init__(self, opts: PoolOptions, chunks: int | None = None,
                 record: Callable[[dict], None] | None = None, site: Any = None):
        self.opts = opts
        self.say = opts.say
        self.chunks = chunks
        self._record = record
        self.state = "new"
        self.started_at = time.time()
        self.seconds_to_first_worker: float | None = None  # from the pool's start
        self.first_worker_at: float | None = None  # time.perf_counter() then
        self.pool: Any = None
        self.plan: Plan | None = None
        self.check: Any = None  # the environment check every worker runs before its first chunk
        self.fingerprint: str | None = None  # the client's environment the workers serve (at the first executor)
        self.notes: list[str] = []
        self.dashboard_token: str | None = None  # kept in memory and in <run dir>/dashboard (0600), never logged
        self.base: dict = {}
        self.runs = 0
        self._stack = contextlib.ExitStack()
        self._lifeline: Any = None
        self._job_states: Any = None  # the JobStateRecorder (jobs.jsonl) from up to the end of down
        self._executors: dict[bool, Any] = {}
        self._lock = threading.Lock()
        self._warn_account = site is None  # a caller that loaded the site has warned already
        if site is None:
            site = load_site(opts.site, list(opts.overrides) + delivery.env_overrides(opts.env)).site
        self.backend = pick_backend(site, opts.backend)
        self.engine = ENGINES[self.backend]
        if not self.engine.batch:
            raise LaunchError(f"backend {self.backend} has no workers to keep up; "
                              f"use one of {', '.join(batch_names())}")
        self.site = site
        if opts.workers and opts.adapt:
            raise LaunchError("give --workers N or --adapt MIN:MAX, not both")
        # MIN:MAX workers with the load: asked for, else the site's adapt block unless a number was given
        self.adapt: tuple[int, int] | None = opts.adapt or (
            (site.adapt.minimum, site.adapt.maximum) if site.adapt and not opts.workers else None)
        if self.adapt and site.max_workers and self.adapt[1] > site.max_workers:
            self.say(f"hpckit: --adapt {self.adapt[0]}:{self.adapt[1]} capped at the site's max_workers "
                     f"({site.max_workers})")
            self.adapt = (min(self.adapt[0], site.max_workers), site.max_workers)
        run_dir = Path(opts.run_dir).absolute() if opts.run_dir else default_run_dir(site)
        for p in (run_dir, run_dir.resolve()):  # engines format it (and logs/, runinfo/) into shell commands
            shell_safe_path(p, "run directory")
        self.run_dir = run_dir.resolve()
        self.sched = scheduler_for(site, self.run_dir / "logs")

    # ---- records -----------------------------------------------------------------------------------
    def record(self, **extra: Any) -> None:
        """Merge ``extra`` into the pool's ``launch.json`` (`hpckit jobs` / `hpckit cancel` read it)."""
        self.base.update(extra)
        if self._record is not None:
            self._record(dict(self.base))
            return
        write_json(self.run_dir / "launch.json", self.base)

    # ---- up ----------------------------------------------------------------------------------------
    def up(self, dry_run: bool = False) -> "Session":
        """Render, submit and wait for the first worker (see the module docstring); ``dry_run``: render only."""
        opts, site = self.opts, self.site
        private_dir(self.run_dir, what="run directory")  # 0700: outputs, logs, credentials (TLS, Parsl keys) are the user's alone
        (self.run_dir / "logs").mkdir(exist_ok=True)
        if self._warn_account and site.account_required and not site.account:
            self.say(f"hpckit: WARNING: site {site.name} needs an account and none is set; the scheduler will "
                     "likely refuse the jobs (--set account=<your project>)")
        # how the locked environment reaches the workers: resolved and checked before anything is submitted
        prepared = delivery.prepare(site, check=not dry_run)
        self.site = site = prepared.site
        self.notes += [f"{f.name}: {f.result}: {f.detail}" for f in prepared.findings]
        workers = self.adapt[0] if self.adapt else opts.workers
        from hpckit.launch.plan import job_name_for  # one place for the name every job carries

        sizing = replace(size(site, workers, self.chunks), run_dir=str(self.run_dir),
                         job_name=job_name_for(self.run_dir) if self.sched.batch else None)
        self.plan = plan = Plan(site, self.backend, self.run_dir, sizing, self.chunks, host=manager_host(site),
                                port=opts.port)
        plan.render()
        if self.adapt:
            self.say(f"hpckit: adaptive pool: {self.adapt[0]} to {self.adapt[1]} workers, grown while chunks wait")
        self.record(job_name=sizing.job_name, rendered=[str(p) for p in plan.rendered],
                    scheduler=site.scheduler, process=process_identity(), site=site.name, backend=self.backend)
        if dry_run:
            return self
        require_interface(site)  # one line naming the interfaces here, not a traceback from dask or parsl
        self.say(plan.headline())
        t0 = time.perf_counter()
        self.pool = pool = self.engine.pool(plan)
        from hpckit.report.hooks import JobStateRecorder

        try:
            if opts.lifeline and self.sched.batch:
                from hpckit.launch.lifeline import Lifeline

                self._lifeline = Lifeline.start(self.run_dir)
            # outside the stack: it stops after teardown, so its last poll records the jobs' final states
            stager = None
            if staged(site, self.backend):  # no shared file system: files copied onto each job's node
                from hpckit.launch.staging import Stager, launch_files

                stager = Stager(site, self.sched, lambda: launch_files(site, pool), self.run_dir, self.say)
            self._job_states = JobStateRecorder(pool.job_ids, self.sched if self.sched.batch else None,
                                                self.run_dir / "jobs.jsonl", on_poll=stager).start()
            self.say(f"hpckit: run dir {self.run_dir}")
            self._start(pool)
            self._protect_dashboard()
            helpers = [process_identity(pid) for pid in pool.helper_pids()]
            if helpers:
                self.record(helpers=helpers)
            if self.adapt:
                self._adapt(*self.adapt)
            if self.engine.first_worker_before_run:
                want = max(1, min(opts.wait_workers, self.adapt[0] if self.adapt else sizing.workers))
                connected = wait_for_workers(pool, self.sched, opts.worker_timeout,
                                                  sizing.jobs if self.sched.batch else 0, at_least=want)
                self.first_worker_at = time.perf_counter()
                self.seconds_to_first_worker = self.first_worker_at - t0
                if want == 1:
                    self.say(f"hpckit: first worker connected after {self.seconds_to_first_worker:.1f} s")
                else:
                    short = f" (of {want} asked for; the run starts with these)" if connected < want else ""
                    self.say(f"hpckit: {plural(connected, 'worker')} connected after "
                             f"{self.seconds_to_first_worker:.1f} s{short}")
            from hpckit.deploy.envlock import environment_check
            from hpckit.launch.keeper import keep_up

            self.check = environment_check(self.say, prepared.lock)
            if not self.adapt:  # adaptive scaling replaces ended jobs itself
                self._stack.enter_context(keep_up(pool))
        except BaseException:
            self.down(failed=True)
            raise
        self.state = "up"
        self.record(state="up", seconds_to_first_worker=self.seconds_to_first_worker, workers=sizing.workers,
                    adapt=list(self.adapt) if self.adapt else None)
        return self

    def _start(self, pool: Any) -> None:
        """Start the pool; Parsl's providers submit from (and PBS writes logs to) the current directory."""
        cwd = os.getcwd()
        if getattr(pool, "chdir_logs", False):
            os.chdir(self.run_dir / "logs")
        from hpckit.processor.lifeline import children_ignore_terminal_interrupt, guard_descendants

        try:
            guard_descendants()  # a SIGKILLed owner leaves no interchange, LocalCluster or vine_factory behind
            with children_ignore_terminal_interrupt():  # Ctrl-C: this process ends the engine, in order
                pool.start()
        finally:
            os.chdir(cwd)

    def _protect_dashboard(self) -> None:
        from hpckit.launch.dashboard import protect

        self.dashboard_token = protect(self.pool)
        if self.dashboard_token:
            fd = os.open(self.run_dir / "dashboard", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(self.dashboard_link() + "\n")

    def _adapt(self, lo: int, hi: int) -> None:
        """Scale between ``lo`` and ``hi`` workers with the load (in whole jobs)."""
        self.pool.adapt((lo, hi), (self.site.jobs_for(lo), self.site.jobs_for(hi)))  # whole jobs of per_job
        self.pool.adaptive = True  # the engine decides how many jobs run: the keeper leaves them alone

    # ---- use ---------------------------------------------------------------------------------------
    def executor(self, status: bool = True) -> Any:
        """The executor on this pool's workers (the same object each time, per ``status``)."""
        if self.state != "up":
            raise LaunchError(f"the pool {self.run_dir.name} is {self.state}; start one with hpckit.cluster(...)")
        with self._lock:
            if self.fingerprint is None:  # the environment the workers serve, as of the first executor
                self.fingerprint = fingerprint_now()
            ex = self._executors.get(status)
            if ex is None:
                ex = self._executors[status] = guarded(self.pool.executor(status), self)
            return ex

    def check_environment(self, client: str | None = None) -> None:
        """Refuse (:class:`EnvironmentChanged`, with the package list) when the client's packages - this
        process's now, or the fingerprint JSON ``client`` sent - differ from those the workers started with."""
        if self.fingerprint is None:
            self.fingerprint = fingerprint_now()
        from hpckit.deploy.envlock import Fingerprint, differences

        before = Fingerprint.from_json(self.fingerprint)
        now = Fingerprint.from_json(client or fingerprint_now())
        if now.hash == before.hash:
            return
        diff = differences(before, now.pins)
        diff += [(n, "(absent)", v) for n, v in sorted(now.pins.items()) if n not in before.pins]
        lines = "\n".join(f"  {n}: workers started with {a}, now {b}" for n, a, b in diff)
        raise EnvironmentChanged(
            f"the environment changed since the workers of {self.run_dir.name} started; refusing the run "
            f"({plural(len(diff), 'package')}):\n{lines}\nend the pool (hpckit down / close()) and start a new one")

    def workers(self) -> list[dict]:
        """The connected workers: address, host, pid (Dask); one entry per manager (Parsl)."""
        client = getattr(self.pool, "client", None)
        if client is not None:
            with contextlib.suppress(Exception):
                info = client.scheduler_info(n_workers=-1)["workers"]
                pids = client.run(os.getpid)
                return [{"address": a, "host": w.get("host"), "pid": pids.get(a), "name": w.get("name")}
                        for a, w in sorted(info.items())]
            return []
        out = []
        for ex in getattr(self.pool, "_htex", lambda: [])():
            with contextlib.suppress(Exception):
                out += [{"address": m.get("manager"), "host": m.get("hostname"),
                         "workers": m.get("worker_count")} for m in ex.connected_managers() if m.get("active", True)]
        return out

    def job_ids(self) -> list[str]:
        return self.pool.job_ids() if self.pool is not None else []

    def run(self, spec: Any, status: bool | None = None) -> tuple[Any, dict, list[Path]]:
        """Run one :class:`hpckit.run.RunSpec` on the pool; its output and records go to
        ``<run dir>/runs/NNN`` unless ``spec.output`` names a place; report.html is written there."""
        from hpckit.report.hooks import write_report_quietly
        from hpckit.run import run_with_executor

        spec.check_inputs()
        with self._lock:
            self.runs += 1
            n = self.runs
        out_dir = self.run_dir / "runs" / f"{n:03d}"
        out_dir.mkdir(parents=True, exist_ok=True)
        spec = spec.resolved(Path(spec.output) if spec.output else out_dir / "out.pkl", out_dir)
        forget_edited_modules()
        self.record(last_run=time.time(), runs=n)
        from hpckit.launch.keeper import keeper, resume_hint

        try:
            with keeper(self.pool, self.sched if self.sched.batch else None, resume_hint(spec.checkpoint)):
                out, metrics, written = run_with_executor(
                    spec, self.executor(spec.status if status is None else status), self.check)
        finally:
            forget_edited_modules()  # notes the modules this run imported, as they are now
            report = write_report_quietly(out_dir, spec.plots)
        return out, metrics, written + ([report] if report is not None else [])

    # ---- down --------------------------------------------------------------------------------------
    def down(self, failed: bool = False, wait: float = 30.0) -> list[str]:
        """Close the pool, cancel every job and wait until the scheduler lists none; returns those left."""
        if self.state in ("down", "closing"):
            return []
        self.state = "closing"
        left: list[str] = []
        try:
            self._stack.close()  # the keeper first: no replacement during teardown
            left = teardown(self.pool, self.sched, self.say, failed=failed, wait=wait)
        finally:
            if self._job_states is not None:
                with contextlib.suppress(Exception):
                    self._job_states.stop()
                self._job_states = None
            self.state = "down"
            if self._lifeline is not None:
                self._lifeline.release()  # the jobs are gone: the lifeline ends without cancelling
                self._lifeline = None
            with contextlib.suppress(Exception):
                self.record(state="down", finished=time.time(), jobs_left_after_teardown=left,
                            job_ids=self.job_ids())
        return left

    # ---- for people --------------------------------------------------------------------------------
    def dashboard_link(self) -> str | None:
        from hpckit.launch.dashboard import link

        return link(self)

    def summary(self) -> dict:
        """Jobs, workers and state, for `hpckit jobs` and ``_repr_html_``."""
        return {"name": self.run_dir.name, "site": self.site.name, "backend": self.backend, "state": self.state,
                "run_dir": str(self.run_dir), "jobs": self.job_ids(), "workers": self.workers(),
                "age_s": time.time() - self.started_at, "dashboard": self.dashboard_link()}
