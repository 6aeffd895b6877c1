"""One unit per engine: everything about one executor that lives outside the Runner, and the one registry
every list of engine names reads.

Each module here (``iterative``, ``futures``, ``dask``, ``parsl``, ``taskvine``) defines one
:class:`~hpckit.engines.base.Engine` subclass as ``ENGINE``: the executor `hpckit run` makes, the worker pool
`hpckit launch` / `up` starts from a site's rendered files, the dry run's line, its doctor checks and the
modules (extra) it needs. :data:`ENGINES` is built from the modules found in this package, so adding an
engine is one file here (+ its site renderer in :mod:`hpckit.deploy.backends` and templates when it runs
on batch sites). The executors stay in :mod:`hpckit.processor.executors`; this package joins them to
:mod:`hpckit.deploy` and is imported by the joining layer (:mod:`hpckit.launch`, :mod:`hpckit.run`, the CLI).
"""

from __future__ import annotations

import importlib
import pkgutil

from hpckit.engines.base import Engine, Pool
from hpckit.core.errors import UsageError


def _discover() -> dict[str, Engine]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        engine = importlib.import_module(f"{__name__}.{info.name}").ENGINE
        found.append(engine)
    # local engines first, then the batch ones; by name within each
    return {e.name: e for e in sorted(found, key=lambda e: (e.batch, e.name))}


ENGINES: dict[str, Engine] = _discover()


def names() -> list[str]:
    """Every engine's name, the local ones first."""
    return list(ENGINES)


def batch_names() -> list[str]:
    """The engines with a worker pool for a site (they render a site and start batch jobs)."""
    return [n for n, e in ENGINES.items() if e.batch]


def get(name: str, what: str = "executor", error: type[Exception] = UsageError) -> Engine:
    """The engine called ``name`` (any case), or ``error`` with one line naming the choices."""
    engine = ENGINES.get(str(name).lower())
    if engine is None:
        raise error(f"unknown {what} {name!r}; expected one of {', '.join(ENGINES)}")
    return engine


__all__ = ["ENGINES", "Engine", "Pool", "batch_names", "get", "names"]
