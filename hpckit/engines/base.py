"""What an engine is to hpckit (:class:`Engine`), and the worker pool a batch engine starts (:class:`Pool`).

An engine is everything about one executor that lives outside the Runner: how `hpckit run` makes its
executor here, the pool that starts a site's rendered files for `launch` / `up`, the dry run's line, its
doctor checks and the extra that installs it. The executor classes stay in :mod:`hpckit.processor.executors`
(the Runner knows no sites); the site renderers stay in :mod:`hpckit.deploy.backends` (pure text).
Nothing here imports the engine's own packages at import time: the registry is cheap to read.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Iterator, Protocol

from hpckit.core.errors import LaunchError

if TYPE_CHECKING:
    from hpckit.deploy.backends import Sizing
    from hpckit.deploy.checks import Check
    from hpckit.deploy.schedulers import Scheduler
    from hpckit.deploy.site import Site


class Plan(Protocol):
    """What an engine reads of a launch's plan (:class:`hpckit.launch.plan.Plan`, which the joining layer
    makes and which names the engines: the engines see it through this, not by importing it)."""

    site: Site
    backend: str
    run_dir: Path
    sizing: Sizing
    host: str
    port: int
    rendered: list[Path]

    @property
    def scheduler(self) -> Scheduler: ...


class Engine:
    """One engine. Subclasses set the class attributes and override what differs.

    ``batch``: it has a :class:`Pool` for a site (rendered files, batch jobs); else it runs in this process
    (iterative, futures). ``modules``: what it imports (doctor checks them; :data:`hpckit.core.extras.INSTALL`
    says how to get each). ``node_files``: what a launch of it keeps in the run directory for the nodes
    (named when a site has no shared file system). ``factory_ships_files``: its pool's jobs get their files
    from the batch system, where the scheduler transfers job files (``Scheduler.transfers_job_files``).
    ``first_worker_before_run``: a started pool has workers
    to wait for before the run starts (TaskVine's manager only exists inside the executor's run).
    """

    name: ClassVar[str] = ""
    batch: ClassVar[bool] = False
    modules: ClassVar[tuple[str, ...]] = ()
    node_files: ClassVar[tuple[str, ...]] = ()
    factory_ships_files: ClassVar[bool] = False
    first_worker_before_run: ClassVar[bool] = True

    # ---- `hpckit run` --------------------------------------------------------------------------------
    def sizes_workers(self, opts: Any) -> bool:
        """`hpckit run` counts chunks to pick ``--workers`` (False: the engine brings its own workers)."""
        return False

    @contextlib.contextmanager
    def run_executor(self, opts: Any, workers: int, status: bool, records_dir: Path, say: Any) -> Iterator[Any]:
        """The executor `hpckit run` uses with ``opts`` (:class:`hpckit.run.EngineOptions`); closes what it
        opened when the block ends."""
        raise NotImplementedError
        yield  # pragma: no cover

    # ---- `hpckit launch` / `up` -----------------------------------------------------------------------
    def pool(self, plan: Plan) -> Pool:
        """The pool that starts exactly what ``plan`` rendered (a batch engine's)."""
        raise LaunchError(f"backend {self.name} runs in this process: it has no workers to keep up")

    def dry_run(self, plan: Plan) -> list[str]:
        """The dry run's lines: what would be submitted."""
        return []

    def render_note(self, site: Site, rendered: list[Path]) -> str | None:
        """A line to show after rendering, when a file could not be (a missing optional package)."""
        return None

    # ---- `hpckit doctor` -------------------------------------------------------------------------------
    def doctor_checks(self, site: Site, host: str) -> list[Check]:
        """This engine's checks for ``site`` (``host``: the address its ports would bind here)."""
        from hpckit.deploy.checks import Check

        missing = [m for m in self.modules if not _importable(m)]
        if not missing:
            return [Check(f"{self.name} backend", "pass", "importable" if self.modules else "local executor")]
        from hpckit.core.extras import INSTALL

        fix = INSTALL.get(missing[0].split(".")[0], f"pip install {missing[0]}")
        return [Check(f"{self.name} backend", "fail", f"cannot import {', '.join(missing)}", fix)]


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def failures_allowed(jobs: int) -> int:
    """Jobs in a row that may end without a worker connecting before replacing stops."""
    return max(3, 2 * jobs)


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


class Pool:
    """Starts the workers of one plan: exactly the files it rendered into the run directory, every batch job
    id recorded in ``jobs.txt`` as it is submitted. ``job_ids()``: every batch job it submitted so far."""

    name = "base"
    chdir_logs = False  # the engine submits from the current directory: the launch runs from logs/

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

    def adapt(self, workers: tuple[int, int], jobs: tuple[int, int]) -> None:
        """Scale between ``workers`` (``jobs`` on a batch site) with the load."""
        raise LaunchError(f"--adapt is not supported for the {self.name} backend; give --workers N")

    def staged_files(self) -> dict[str, Path]:
        """Files of the pool's own that each job needs on its node where nothing is shared (name in the job's
        staging directory -> path here; :mod:`hpckit.launch.staging`)."""
        return {}

    def executor(self, status: bool) -> Any:
        """The executor on this pool's workers; told when they cannot see this machine's files (a checkpointer
        is then read and written here: :class:`hpckit.processor.work.DriverCheckpoints`)."""
        ex = self.new_executor(status)
        ex.shared_filesystem = self.site.shared_filesystem or not self.plan.scheduler.batch
        return ex

    def new_executor(self, status: bool) -> Any:
        raise NotImplementedError

    def close(self) -> None: ...
