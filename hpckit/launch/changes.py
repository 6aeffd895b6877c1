"""What may change between two runs on the same workers, and what may not.

* code: :func:`forget_edited_modules` drops the user's modules whose file changed, so the next import (and
  the processor pickled by value with them) carries the new code;
* the environment: :func:`fingerprint_now` (cached until a directory on ``sys.path`` changes) is compared
  with the one the workers started with; :func:`guarded` makes a pool's executor refuse a run when they
  differ and gives each run the workers' environment check.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from typing import Any

_FINGERPRINTS: dict[tuple, str] = {}


def fingerprint_now() -> str:
    """The client's environment fingerprint, recomputed (0.3-0.5 s) only when a directory on sys.path
    changed (an install or removal adds or deletes a ``*.dist-info`` directory there)."""
    from hpckit.deploy.envlock import current_fingerprint

    key = []
    for p in sys.path:
        with contextlib.suppress(OSError):
            key.append((p, os.stat(p or ".").st_mtime_ns))
    key_t = tuple(key)
    if key_t not in _FINGERPRINTS:
        _FINGERPRINTS.clear()
        _FINGERPRINTS[key_t] = current_fingerprint().to_json()
    return _FINGERPRINTS[key_t]


_GUARDED: dict[type, type] = {}


def guarded(executor: Any, session: Any) -> Any:
    """The pool's executor, refusing a run when the environment changed and giving every run the
    workers' environment check (a user's own ``Runner`` passes none)."""
    base = type(executor)
    cls = _GUARDED.get(base)
    if cls is None:
        def run(self, items, job, progress):
            owner = self.__dict__.get("_hpckit_session")
            if owner is not None:
                owner.check_environment()
                if job.worker_check is None:
                    job.worker_check = owner.check
            return base.run(self, items, job, progress)

        cls = _GUARDED[base] = type(base.__name__, (base,), {"run": run, "__module__": base.__module__,
                                                              "__qualname__": base.__qualname__})
    executor.__class__ = cls
    executor.__dict__["_hpckit_session"] = session
    return executor


# ------------------------------------------------------------------------------------------------
# code edited between two runs


_SEEN: dict[str, tuple[float, int]] = {}


def forget_edited_modules() -> list[str]:
    """Drop from ``sys.modules`` the user's own modules (outside the install directories, not hpckit) whose
    file changed on disk since they were first seen here (called before and after every run), so the next import reads the new code (and the
    processor, pickled by value with them, carries it to the workers). Returns their names."""
    import linecache

    from hpckit.processor.serialize import _is_installed

    dropped = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if not path or name.partition(".")[0] in ("hpckit", "__main__") or name in sys.stdlib_module_names \
                or _is_installed(module):
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        stamp = (st.st_mtime, st.st_size)
        if _SEEN.setdefault(path, stamp) != stamp:
            del sys.modules[name]
            _SEEN[path] = stamp
            dropped.append(name)
            _drop_bytecode(path)
    if dropped:
        linecache.checkcache()
    return dropped


def _drop_bytecode(path: str) -> None:
    """Remove ``path``'s cached .pyc: it is checked by whole-second mtime and size, so an edit within the
    second that keeps the size would be imported as the old code."""
    with contextlib.suppress(ValueError, NotImplementedError, OSError):
        os.unlink(importlib.util.cache_from_source(path))
