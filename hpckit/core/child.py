"""The environment of a Python process hpckit starts with ``python -m`` (the launch's lifeline, a pool's daemon,
``pip`` building wheels): it imports the hpckit this process runs, and never a module from its working
directory.

``python -m`` puts the current directory first on ``sys.path``; started from a shared directory such as /tmp,
a planted ``hpckit/`` or ``uproot/`` there would run as the user. ``PYTHONSAFEPATH`` (Python 3.11+) leaves it
out, so the hpckit package's own location goes on ``PYTHONPATH`` instead (a checkout run without installing).
"""

from __future__ import annotations

import os
from pathlib import Path


def safe_path_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) for a ``python -m`` child that must not import from its working
    directory (``pip``, run from wherever the user stands)."""
    return {**(os.environ if env is None else env), "PYTHONSAFEPATH": "1"}


def python_child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """:func:`safe_path_env` for a ``python -m hpckit...`` child: the hpckit this process runs goes first on
    ``PYTHONPATH``."""
    import hpckit

    out = safe_path_env(env)
    top = str(Path(hpckit.__file__).resolve().parent.parent)
    out["PYTHONPATH"] = os.pathsep.join([top] + [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p and p != top])
    return out
