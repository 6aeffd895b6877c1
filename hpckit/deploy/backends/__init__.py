"""Per-backend rendering of a site (pure: text and dicts, no submission).

One module here per engine that runs on batch sites, each with ``files(site, manager_host, port, out_dir,
sizing) -> {file name: text}``; :data:`BACKENDS` is the modules found (``common`` is shared). Call
:func:`render_all` for every artifact on disk, or the per-backend functions:

* :func:`hpckit.deploy.backends.dask.render_dask` (site) -> DaskRendering(cluster_class, kwargs, job_script)
* :func:`hpckit.deploy.backends.parsl.render_parsl` (site) -> str (parsl_config.py)
* :func:`hpckit.deploy.backends.taskvine.render_taskvine` (site, manager_host, port) -> TaskVineRendering
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hpckit.core.defaults import VINE_PORT

if TYPE_CHECKING:
    from hpckit.deploy.site import Site

# one renderer module per engine that runs on batch sites (hpckit.engines names the same ones)
BACKENDS = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "common"))


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


def render_files(site: Site, backend: str, manager_host: str | None = None, port: int = VINE_PORT,
                 out_dir: Path | None = None, sizing: Sizing | None = None) -> dict[str, str]:
    """Every artifact for ``backend`` as ``{file name: text}`` (what :func:`render_all` writes).

    * dask: ``dask_cluster.json`` (cluster_class + kwargs), ``job_script.sh`` (``job_script.sub`` for
      HTCondor; none for local): the script dask-jobqueue submits;
    * parsl: ``parsl_config.py``;
    * taskvine: ``vine_factory.json``, ``vine_factory.sh`` (the exact command), ``vine_worker_wrapper.sh``
      when needed;
    * every backend: ``worker_job.sh`` (+ ``worker_job.sub`` for HTCondor), a worker job to submit by hand.

    ``sizing`` (a launch): the numbers that start exactly that many jobs, with logs in ``sizing.log_dir``;
    without it the rendering is for a person (nothing started at load, the site's maximum as the cap).
    ``manager_host`` (TaskVine): None is the address of the site's interface here, else the factory host's
    name (``$(hostname -f)``) - loopback only for a loopback-only or local site.
    """
    from hpckit.deploy.backends.common import worker_job

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    files = importlib.import_module(f"{__name__}.{backend}").files(site, manager_host, port, out_dir, sizing)
    files.update(worker_job(site, backend))
    return files


def render_all(site: Site, backend: str, out_dir: str | Path, manager_host: str | None = None,
               port: int = VINE_PORT, sizing: Sizing | None = None) -> list[Path]:
    """Write every artifact of ``backend`` for ``site`` into ``out_dir`` (created); return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render_files(site, backend, manager_host, port, out_dir=out.resolve(), sizing=sizing).items():
        p = out / name
        p.write_text(text)
        if name.endswith(".sh"):
            p.chmod(0o755)
        paths.append(p)
    return paths
