"""What a launch needs the compute nodes to see of the client's file system, for sites that have none.

A site with ``shared_filesystem: false`` (CHTC, the OSG; ``cluster-noshare`` here) runs jobs on nodes that
see only the system and their own scratch. Where the scheduler can copy files into a running job (Slurm's
sbcast) and the engine's pool knows its jobs (Dask, Parsl), the env tarball and the keys are copied
(:mod:`hpckit.deploy.staging`), per-chunk records come back with the results and checkpoints are read and
written by the client (:class:`hpckit.processor.work.DriverCheckpoints`). What would still reach the
workers through a client path is named here, so that `hpckit doctor` fails before any queue time is spent
and `hpckit launch` refuses in one line, instead of jobs that die unable to open a file.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hpckit.deploy import staging
from hpckit.deploy.schedulers import scheduler_class
from hpckit.deploy.site import Site

__all__ = ["delivered", "kept_on_nodes", "needs_shared_filesystem"]

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # root://, https://, file:// ...


def _local_inputs(fileset: str | Path | None) -> list[str]:
    """Plain paths (not root://, https://, ...) of a fileset JSON, first few."""
    if fileset is None:
        return []
    try:
        doc = json.loads(Path(fileset).read_text())
    except (OSError, ValueError):
        return []
    paths: list[str] = []
    for ds in doc.values() if isinstance(doc, dict) else []:
        files = ds.get("files", ds) if isinstance(ds, dict) else ds
        for f in files if isinstance(files, (dict, list)) else []:
            if isinstance(f, str) and (not _URL.match(f) or f.lower().startswith("file:")):
                paths.append(f)
    return paths


def delivered(site: Site, engine: Any) -> bool:
    """A launch of ``engine`` gets its own files onto ``site``'s nodes without a shared file system: copied into
    each running job (:func:`hpckit.deploy.staging.staged`: Slurm's sbcast, Dask and Parsl), or handed to the
    batch system with each job by the engine's factory where the scheduler transfers job files (TaskVine's
    vine_factory on HTCondor). Per-chunk records and checkpoints then come back through the engine."""
    return staging.staged(site, getattr(engine, "name", "")) or (
        getattr(engine, "factory_ships_files", False) and scheduler_class(site.scheduler).transfers_job_files)


def needs_shared_filesystem(site: Site, engine: Any = None, fileset: str | Path | None = None,
                            analysis: str | Path | None = None, checkpoint: str | Path | None = None) -> list[str]:
    """The pieces a launch of ``engine`` on ``site`` would read or write on the nodes through a client path
    (the engine's ``node_files``: what it keeps in the run directory for them); empty when the site shares
    its file system (or is local). On a site whose scheduler copies files into running jobs
    (``site.staged``: Slurm's sbcast), or whose engine's factory hands its files to a batch system that
    transfers them (:func:`delivered`), the env tarball, batch logs, the engine's keys and the checkpoint
    directory are not pieces: :mod:`hpckit.deploy.staging`."""
    if site.shared_filesystem or not scheduler_class(site.scheduler).batch:
        return []
    shipped = delivered(site, engine)
    pieces = [] if shipped else ["run directory (batch logs, per-chunk records, worker logs)",
                                *getattr(engine, "node_files", ())]
    d = site.env_delivery
    if d.mode == "venv":
        pieces.append(f"env path {d.path or 'the client interpreter'}")
    elif d.mode == "tarball" and d.path and not shipped:
        pieces.append(f"env tarball {d.path} (not staged by the batch system yet)")
    if analysis is not None and not shipped:
        pieces.append(f"analysis file {analysis} (workers import its module by path)")
    if checkpoint is not None and not shipped:  # shipped: the client reads and writes it (DriverCheckpoints)
        pieces.append(f"checkpoint directory {checkpoint} (each worker writes its chunks' checkpoints there)")
    local = _local_inputs(fileset)
    if local:
        pieces.append(f"input path {local[0]}" + (f" (+{len(local) - 1} more)" if len(local) > 1 else ""))
    return pieces


def kept_on_nodes(site: Site) -> list[str]:
    """What a launch on a site without a shared file system leaves on the nodes instead of the run directory
    (said when it starts, so that a missing report line is not a surprise)."""
    if not site.staged:
        return []
    return ["batch logs (in node-local scratch; per-chunk records, the workers' warnings and the checkpoints "
            "come back with the results; a failed job's last lines through the scheduler)"]
