"""Every file a backend renders for a site, as text or on disk (pure but for :func:`render_all`'s writes).

Kept apart from :mod:`hpckit.deploy.backends` (the registry of backend names the site model validates
against) because it imports the shared rendering pieces, which import the site model.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from hpckit.core.defaults import VINE_PORT
from hpckit.deploy.backends import BACKENDS, Sizing
from hpckit.deploy.backends.common import worker_job
from hpckit.deploy.site import Site


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
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    files = importlib.import_module(f"hpckit.deploy.backends.{backend}").files(site, manager_host, port, out_dir, sizing)
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
