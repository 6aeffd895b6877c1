"""Plan a launch before anything starts: the run directory, the backend, how many workers and jobs (the one
conversion from workers to jobs), the manager host, and the rendering with those final numbers."""

from __future__ import annotations

import datetime as _dt
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from hpckit.core.defaults import VINE_PORT
from hpckit.deploy import render_all
from hpckit.deploy.backends import Sizing
from hpckit.deploy.network import manager_address
from hpckit.deploy.schedulers import Scheduler, scheduler_for
from hpckit.deploy.site import Site, load_site
from hpckit.engines import ENGINES, Engine, get
from hpckit.core.errors import LaunchError
from hpckit.io.paths import user_run_root
from hpckit.run import default_workers
from hpckit.core.units import plural

BACKENDS = tuple(ENGINES)  # every engine, the local ones first (hpckit.engines reads their files)
BATCH_BACKENDS = tuple(n for n, e in ENGINES.items() if e.batch)


def _expand(path: str) -> str | None:
    expanded = os.path.expanduser(os.path.expandvars(path))
    return None if "$" in expanded else expanded


def default_run_dir(site: Site, now: _dt.datetime | None = None) -> Path:
    """``<site scratch>/hpckit-runs-<user>/<id>`` for a batch site whose scratch resolves to an existing
    directory here, else ``./hpckit-runs/<id>``; ``<id>`` is ``YYYYmmdd-HHMMSS-<6 hex>``."""
    now = now or _dt.datetime.now()
    run_id = f"{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    if scheduler_for(site).batch and site.scratch:
        base = _expand(site.scratch)
        if base and os.path.isdir(base) and os.access(base, os.W_OK):
            return user_run_root(base) / run_id  # <scratch>/hpckit-runs-<user>, 0700
    return Path("hpckit-runs").resolve() / run_id


def run_roots() -> list[Path]:
    """Every directory :func:`default_run_dir` may put run directories in: ``./hpckit-runs`` and
    ``<scratch>/hpckit-runs-<user>`` of each site whose scratch exists here (for `hpckit jobs` / `cancel`)."""
    import getpass

    from hpckit.deploy.site import list_sites

    roots = [Path("hpckit-runs").resolve()]
    for name in list_sites():
        try:
            site = load_site(name).site
        except Exception:  # noqa: BLE001 - a broken user site does not hide the others' runs
            continue
        base = _expand(site.scratch) if site.scratch and scheduler_for(site).batch else None
        if base and os.path.isdir(base):
            root = (Path(base) / f"hpckit-runs-{getpass.getuser()}").resolve()
            if root not in roots:
                roots.append(root)
    return roots


def pick_backend(site: Site, backend: str | None) -> str:
    """``backend``, or the site's ``default_backend``."""
    return get(site.default_backend if backend is None else backend, "backend", LaunchError).name


def worker_limit(site: Site) -> int:
    """The most workers the site allows at once (the local site: the cores here)."""
    return site.max_workers or os.cpu_count() or 1


def size(site: Site, workers: int | None, chunks: int | None) -> Sizing:
    """The one conversion from workers to jobs.

    ``workers`` defaults to ``min(site maximum, chunks)``: no more workers than there are chunks to give them;
    an explicit number is capped at the site's maximum. Batch sites round up to whole jobs of
    ``worker.per_job`` workers.
    """
    limit = worker_limit(site)
    workers = min(workers, limit) if workers else default_workers(limit, chunks or limit)
    return Sizing(jobs=site.jobs_for(workers) if site.batch else 1, workers=workers)


def manager_host(site: Site) -> str:
    """The address workers dial back to (:func:`hpckit.deploy.network.manager_address`)."""
    return manager_address(site)


@dataclass
class Plan:
    """Everything decided before the first job: rendered into ``run_dir`` by :meth:`render`."""

    site: Site
    backend: str
    run_dir: Path
    sizing: Sizing
    chunks: int | None
    host: str = "127.0.0.1"
    port: int = VINE_PORT
    rendered: list[Path] = field(default_factory=list)

    @property
    def engine(self) -> Engine:
        return ENGINES[self.backend]

    @property
    def scheduler(self) -> Scheduler:
        return scheduler_for(self.site, self.run_dir / "logs")

    def render(self) -> list[Path]:
        """Write the backend's files with the final numbers; the pools start exactly these."""
        self.rendered = render_all(self.site, self.backend, self.run_dir, manager_host=self.host, port=self.port,
                                   sizing=self.sizing)
        return self.rendered

    def headline(self) -> str:
        """``8 chunks -> 2 workers in 2 batch jobs (slurm-local, dask)``, printed before submission."""
        what = (f"{plural(self.sizing.workers, 'worker')} in {plural(self.sizing.jobs, 'batch job')}"
                if self.scheduler.batch else f"{plural(self.sizing.workers, 'local worker')}")
        chunks = f"{plural(self.chunks, 'chunk')} -> " if self.chunks is not None else ""
        return f"hpckit: {chunks}{what} ({self.site.name}, {self.backend})"

    def describe(self) -> list[str]:
        """The dry run's text: what was rendered and what would be started."""
        s, sched, run_dir = self.sizing, self.scheduler, self.run_dir
        lines = [self.headline(), f"rendered into {run_dir}: " + ", ".join(p.name for p in self.rendered)]
        if not sched.batch:
            lines.append(f"would start {self.backend} with {plural(s.workers, 'local worker process', 'local worker processes')}; "
                         "nothing is submitted")
        else:
            lines += self.engine.dry_run(self)
        return lines


def job_name_for(run_dir: Path) -> str:
    """``hpckit-<run id>-<hash of the run directory's path>``: the name every batch job of the run carries
    (safe in any directive). Jobs are found and cancelled by this name, so two run directories with the
    same last component (``run1`` in two places) must not share it."""
    import hashlib

    digest = hashlib.sha256(str(Path(run_dir).absolute()).encode()).hexdigest()[:8]
    return "hpckit-" + re.sub(r"[^A-Za-z0-9_.-]", "_", run_dir.name)[:50] + "-" + digest
