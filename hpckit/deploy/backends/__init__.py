"""Per-backend rendering of a site (pure: text and dicts, no submission).

One module here per engine that runs on batch sites, each with ``files(site, manager_host, port, out_dir,
sizing) -> {file name: text}``; :data:`BACKENDS` is the modules found (``common`` is shared).
:func:`hpckit.deploy.artifacts.render_all` writes every artifact of one on disk; the per-backend functions:

* :func:`hpckit.deploy.backends.dask.render_dask` (site) -> DaskRendering(cluster_class, kwargs, job_script)
* :func:`hpckit.deploy.backends.parsl.render_parsl` (site) -> str (parsl_config.py)
* :func:`hpckit.deploy.backends.taskvine.render_taskvine` (site, manager_host, port) -> TaskVineRendering
"""

from __future__ import annotations

import pkgutil
from dataclasses import dataclass
from pathlib import Path

# one renderer module per engine that runs on batch sites (hpckit.engines names the same ones)
BACKENDS = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "common"))


def stages_files(backend: str) -> bool:
    """True when ``backend``'s jobs wait for their files to be copied onto their node on a site without a shared
    file system (its module's ``STAGES_FILES``; hpckit.deploy.staging): the launch's pool knows every job it
    submits and what they need (Dask, Parsl). TaskVine's factory submits jobs of its own."""
    import importlib

    return backend in BACKENDS and bool(getattr(importlib.import_module(f"{__name__}.{backend}"), "STAGES_FILES", False))


@dataclass(frozen=True)
class Sizing:
    """The final numbers of one launch, rendered into its files (so the run directory holds what ran).

    ``jobs``: batch jobs (blocks, factory workers) started at once; ``workers``: worker processes in all
    (the local site: processes on this machine); ``run_dir``: the launch's directory (batch logs go to its
    ``logs/``); ``job_name``: the name the jobs carry (so they can be listed and cancelled by name).
    """

    jobs: int
    workers: int
    run_dir: str | None = None
    job_name: str | None = None

    @property
    def log_dir(self) -> str | None:
        return None if self.run_dir is None else str(Path(self.run_dir) / "logs")
