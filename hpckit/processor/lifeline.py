"""Pool workers that die with their parent, so a killed driver (SIGKILL, OOM) leaves no orphans.

Two mechanisms, used together in the worker's initializer:

* Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker when the thread that forked
  it exits (for the pool: the driver thread that submitted work);
* a daemon thread that checks every ``interval`` seconds whether the parent pid changed (the worker
  was re-parented to init or a subreaper) and exits at once: the fallback where prctl is missing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1


def _pdeathsig(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int, interval: float) -> None:
    ev = threading.Event()
    while not ev.wait(interval):
        if os.getppid() != parent:
            os._exit(1)


def die_with_parent(parent: int, interval: float = 1.0) -> None:
    """Called in a freshly started worker: end it when process ``parent`` goes away."""
    _pdeathsig(signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch, args=(parent, interval), name="hpckit-parent-watch", daemon=True).start()
