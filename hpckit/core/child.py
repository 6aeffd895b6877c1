"""The environment of a Python process hpckit starts with ``python -m hpckit...`` (the launch's lifeline, a
pool's daemon): it imports the hpckit this process runs, and never a module from its working directory.

``python -m`` puts the current directory first on ``sys.path``; started from a shared directory such as /tmp,
a planted ``hpckit/`` or ``uproot/`` there would run as the user. ``PYTHONSAFEPATH`` (Python 3.11+) leaves it
out, so the hpckit package's own location goes on ``PYTHONPATH`` instead (a checkout run without installing).
"""

from __future__ import annotations

import os
from pathlib import Path


def python_child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    import hpckit

    out = dict(os.environ if env is None else env)
    top = str(Path(hpckit.__file__).resolve().parent.parent)
    out["PYTHONPATH"] = os.pathsep.join([top] + [p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p and p != top])
    out["PYTHONSAFEPATH"] = "1"
    return out
