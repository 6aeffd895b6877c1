"""What a launch needs the compute nodes to see of the client's file system, for sites that have none.

A site with ``shared_filesystem: false`` (CHTC, the OSG; ``cluster-noshare`` here) runs jobs on nodes that
see only the system and their own scratch. Today's launch still reaches the workers through paths in
several places; each is named here so that `hpckit doctor` fails before any queue time is spent, and
`hpckit launch` refuses in one line, instead of jobs that die unable to open a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from hpckit.deploy.schedulers import scheduler_class
from hpckit.deploy.site import Site

__all__ = ["needs_shared_filesystem"]


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
            if isinstance(f, str) and "://" not in f.split("/", 1)[0] + "/":
                paths.append(f)
    return paths


def needs_shared_filesystem(site: Site, node_files: Sequence[str] = (), fileset: str | Path | None = None,
                            analysis: str | Path | None = None) -> list[str]:
    """The pieces a launch on ``site`` would read or write on the nodes through a client path (``node_files``:
    what its engine keeps in the run directory for them); empty when the site shares its file system (or is
    local)."""
    if site.shared_filesystem or not scheduler_class(site.scheduler).batch:
        return []
    pieces = ["run directory (batch logs, per-chunk records, worker logs)", *node_files]
    d = site.env_delivery
    if d.mode == "venv":
        pieces.append(f"env path {d.path or 'the client interpreter'}")
    elif d.mode == "tarball" and d.path:
        pieces.append(f"env tarball {d.path} (not staged by the batch system yet)")
    if analysis is not None:
        pieces.append(f"analysis file {analysis} (workers import its module by path)")
    local = _local_inputs(fileset)
    if local:
        pieces.append(f"input path {local[0]}" + (f" (+{len(local) - 1} more)" if len(local) > 1 else ""))
    return pieces
