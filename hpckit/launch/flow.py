"""`hpckit launch`: site -> plan (rendered once, with the final numbers) -> pool -> the Runner -> teardown."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from hpckit.core.defaults import VINE_PORT
from hpckit.deploy import delivery, load_site
from hpckit.deploy.sharing import kept_on_nodes, needs_shared_filesystem
from hpckit.deploy.schedulers import scheduler_for
from hpckit.core.errors import LaunchError
from hpckit.io.paths import private_dir, shell_safe_path, write_json
from hpckit.launch.keeper import keeper, resume_hint
from hpckit.engines import ENGINES
from hpckit.launch.plan import default_run_dir, job_name_for, pick_backend, size  # noqa: F401 (job_name_for: re-exported)
from hpckit.deploy.envlock import environment_check  # noqa: F401 (re-exported: hpckit.launch.environment_check)
from hpckit.launch.teardown import process_identity, signals_raise
from hpckit.report.hooks import RunRecord, lock_hash
from hpckit.run import RunSpec, run_on_engine, run_with_executor
from hpckit.core.units import plural


FALLBACK = "futures"  # the engine a launch runs here when the site's scheduler is not on this machine


@dataclass
class LaunchOptions:
    site: str
    spec: RunSpec
    backend: str | None = None  # None: the site's default_backend
    workers: int | None = None  # None: min(site maximum, chunks)
    adapt: str | tuple[int, int] | None = None  # "MIN:MAX": scaled with the load (None: the site's adapt block)
    overrides: list[str] = field(default_factory=list)
    dry_run: bool = False
    fallback: bool = True
    worker_timeout: float = 300.0
    wait_workers: int = 1  # workers connected before the run starts (--wait-workers)
    run_dir: Path | None = None  # None: default_run_dir(site)
    port: int = VINE_PORT  # TaskVine manager port
    env: Path | None = None  # an `hpckit pack` tarball the workers run (env_delivery tarball)
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


def _record(run_dir: Path, result: LaunchResult, extra: dict | None = None) -> None:
    data = asdict(result)
    data["run_dir"] = str(result.run_dir)
    data["written"] = [str(p) for p in result.written]
    data.pop("metrics", None)
    data.update(extra or {})
    write_json(run_dir / "launch.json", data)


def launch(opts: LaunchOptions) -> LaunchResult:
    """Render ``opts.site`` into a run directory with the final numbers, start exactly that, run the
    processor, write the results, tear everything down (also on Ctrl-C and SIGTERM), write report.html."""
    t0 = time.perf_counter()
    say = opts.say
    site = load_site(opts.site, list(opts.overrides) + delivery.env_overrides(opts.env)).site
    backend = pick_backend(site, opts.backend)
    opts.spec.check_inputs()
    run_dir = Path(opts.run_dir).absolute() if opts.run_dir else default_run_dir(site)
    if ENGINES[backend].batch:  # engines format it (and logs/, runinfo/ under it) into shell commands
        for p in (run_dir, run_dir.resolve()):
            shell_safe_path(p, "run directory")
    # 0700: outputs, logs, credentials (TLS, Parsl keys) are the user's alone; checked before any link is followed
    run_dir = private_dir(run_dir, what="run directory").resolve()
    (run_dir / "logs").mkdir(exist_ok=True)
    spec = opts.spec.resolved(Path(opts.spec.output) if opts.spec.output else run_dir / "out.pkl", run_dir)
    result = LaunchResult(run_dir=run_dir, site=site.name, backend=backend, mode="batch")
    sched = scheduler_for(site, run_dir / "logs")
    base = {"command": {"argv": sys.argv, "cwd": os.getcwd(), "overrides": list(opts.overrides)},
            "scheduler": site.scheduler, "process": process_identity()}
    run_record = RunRecord(run_dir, spec)  # for the report: launch.json's state, report.html at the end
    if site.account_required and not site.account:
        say(f"hpckit: WARNING: site {site.name} needs an account and none is set; the scheduler will likely "
            "refuse the jobs (--set account=<your project>)")

    local = not ENGINES[backend].batch
    if not local and sched.batch and sched.missing() and not opts.dry_run:
        missing = sched.missing()
        msg = (f"site {site.name} uses {site.scheduler}, but {', '.join(missing)} "
               f"{'is' if len(missing) == 1 else 'are'} not on this machine's PATH")
        if not opts.fallback:
            raise LaunchError(msg + " (--no-fallback given; run on the site's login node, or drop --no-fallback "
                                    "to run locally)")
        say(f"hpckit: {msg}; running locally with FuturesExecutor instead")
        result.notes.append(msg + "; fell back to a local run")
        result.mode, backend, local = "fallback", FALLBACK, True

    chunks = spec.count_chunks() if opts.workers is None else None
    if local:
        workers = size(scheduler_free(site), opts.workers, chunks).workers
        result.backend = backend
        if result.mode != "fallback":
            result.mode = "local"
        line = (f"hpckit: {plural(chunks, 'chunk') + ' -> ' if chunks is not None else ''}"
                f"{backend} executor with {plural(workers, 'worker')} on this machine")
        if opts.dry_run:
            result.mode = "dry-run"
            result.planned = [line, "nothing is submitted"]
            _record(run_dir, result, base)
            return result
        say(line)
        base.update(run_record.started(workers))
        _record(run_dir, result, base)
        error: BaseException | None = None
        try:
            _, result.metrics, result.written = run_on_engine(spec, backend, workers, None, run_dir, say)
        except BaseException as exc:
            error = exc
            raise
        finally:
            result.seconds_to_result = time.perf_counter() - t0
            _record(run_dir, result, {**base, **run_record.ended(error)})
            run_record.report()
        return result

    # batch: launch = up + run + down, the pool of hpckit.launch.session (which `hpckit up` keeps up)
    from hpckit.launch.session import PoolOptions, Session, parse_adapt

    def record(pool_facts: dict) -> None:  # the pool's facts join the launch's own record
        base.update({k: v for k, v in pool_facts.items() if k not in _RUN_KEYS})
        _record(run_dir, result, base)

    if not opts.dry_run:
        pieces = needs_shared_filesystem(site, ENGINES[backend], opts.spec.fileset, opts.spec.analysis,
                                         opts.spec.checkpoint)
        if pieces:
            raise LaunchError(f"site {site.name} has no shared file system, and this launch reaches the nodes "
                              f"through client paths: {'; '.join(pieces)} (hpckit doctor --site {site.name})")
        kept = kept_on_nodes(site)
        if kept:
            note = (f"site {site.name} has no shared file system: each job's files are copied onto its node "
                    f"({site.scheduler}); {' and '.join(kept)} stay there")
            say(f"hpckit: {note}")
            result.notes.append(note)
    session = Session(PoolOptions(site=opts.site, backend=backend, workers=opts.workers,
                                  adapt=parse_adapt(opts.adapt), overrides=opts.overrides,
                                  run_dir=run_dir, worker_timeout=opts.worker_timeout, wait_workers=opts.wait_workers,
                                  port=opts.port, env=opts.env,
                                  lifeline=False, say=say), chunks=chunks, record=record, site=site)
    if opts.dry_run:
        session.up(dry_run=True)
        result.notes += session.notes
        result.mode = "dry-run"
        result.planned = session.plan.describe()
        _record(run_dir, result, base)
        return result
    base.update(run_record.started(size(session.site, opts.workers, chunks).workers))
    _record(run_dir, result, base)  # the launch's pid is on disk before the first job is
    cwd = os.getcwd()
    error = None
    try:
        with signals_raise():
            session.up()
            result.notes += session.notes
            if session.first_worker_at is not None:  # from the launch() call, as before the pool was split out
                result.seconds_to_first_worker = session.first_worker_at - t0
            if getattr(session.pool, "chdir_logs", False):
                os.chdir(run_dir / "logs")  # Parsl's providers submit replacements from the cwd
            run_record.lock_hash = lock_hash(session.check)
            # one run: the pool's plain executor (no environment-change guard, which only matters between runs)
            with keeper(session.pool, sched if sched.batch else None, resume_hint(spec.checkpoint)):
                _, result.metrics, result.written = run_with_executor(spec, session.pool.executor(spec.status),
                                                                      session.check)
            result.seconds_to_result = time.perf_counter() - t0
    except BaseException as exc:
        error = exc
        raise
    finally:
        try:
            left = session.down(failed=error is not None)
        finally:
            os.chdir(cwd)
        result.job_ids = session.job_ids()
        extra = {**base, "jobs_left_after_teardown": left, **run_record.ended(error)}
        if sched.batch and result.job_ids:
            with contextlib.suppress(Exception):
                extra["job_states"] = {j: s.state.value for j, s in sched.status(result.job_ids).items()}
        _record(run_dir, result, extra)
        run_record.report()
    return result


_RUN_KEYS = ("state", "finished", "workers", "site", "backend")  # the launch's own, not the pool's


def scheduler_free(site):
    """The site as a local run sees it: workers are processes here (the local executors ignore jobs)."""
    return site.model_copy(update={"scheduler": "local", "max_workers": None})
