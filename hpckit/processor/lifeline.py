"""Pool workers that die with their parent, so a killed driver (SIGKILL, OOM) leaves no orphans.

Two mechanisms, used together in the worker's initializer:

* Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: the kernel kills the worker when the thread that forked
  it exits (for the pool: the driver thread that submitted work);
* a daemon thread that checks every ``interval`` seconds whether the parent pid changed (the worker
  was re-parented to init or a subreaper) and exits at once: the fallback where prctl is missing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import subprocess

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


# ------------------------------------------------------------------------------------------------
# engines (Dask nannies and workers, Parsl's interchange and worker pools, vine_factory) start processes of
# their own that prctl cannot reach and that double-fork away from their parent (Parsl's LocalProvider). A
# guardian process watches this one: it keeps a list of this process's descendants (this process becomes a
# child subreaper, so orphaned grandchildren stay descendants) and SIGKILLs them the moment this process is
# gone, whatever ended it (SIGKILL, OOM, a crash). It learns that through a pipe only this process holds.
# A process started with ``EXEMPT=1`` in its environment (a pool's lifeline, hpckit.launch.lifeline, which
# must outlive this process to cancel its batch jobs) is left alone, with its children.

PR_SET_CHILD_SUBREAPER = 36
EXEMPT = "HPCKIT_GUARDIAN_EXEMPT"
_GUARDIAN: "subprocess.Popen | None" = None


def _subreaper() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def guard_descendants() -> int | None:
    """Start (once per process) the guardian that kills this process's descendants when it dies; returns
    its pid (None where it cannot run: no psutil)."""
    global _GUARDIAN
    if _GUARDIAN is not None and _GUARDIAN.poll() is None:
        return _GUARDIAN.pid
    try:
        import psutil  # noqa: F401 - every engine (distributed, parsl) depends on it
    except ImportError:
        return None
    import subprocess

    _subreaper()
    read, write = os.pipe()  # not inheritable: only this process holds the write end
    # run by path, isolated: the guardian imports nothing of hpckit (a lean process, started in ~50 ms)
    _GUARDIAN = subprocess.Popen([sys.executable, "-I", os.path.abspath(__file__), str(os.getpid())], stdin=read,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(read)
    _KEEP.append(write)  # closed by the kernel when this process ends, however it ends
    return _GUARDIAN.pid


_KEEP: list[int] = []


def _guard(parent: int, interval: float = 0.5) -> None:
    """The guardian's loop: refresh the list of ``parent``'s descendants until stdin reaches EOF, then kill them."""
    import select

    import psutil

    me = os.getpid()
    known: dict[int, float] = {}
    try:
        root = psutil.Process(parent)
    except psutil.Error:
        return
    while True:
        ready, _, _ = select.select([sys.stdin.fileno()], [], [], interval)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break  # the parent is gone
        try:  # a forked (not exec'd) child may hold the pipe too: look at the parent itself as well
            if not root.is_running() or root.status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.Error:
            break
        try:
            kids = _descendants(parent)
        except psutil.Error:
            continue  # a descendant ended during the walk: look again (ending here left the rest unguarded)
        for pid in kids:
            if pid != me and pid not in known:
                try:
                    known[pid] = psutil.Process(pid).create_time()
                except psutil.Error:
                    pass  # a short-lived child (an engine's `ps`, a submit script's shell) already gone
    _end(known)


def _descendants(pid: int) -> list[int]:
    """``pid``'s descendants, read from the kernel's per-thread children lists: a walk of this tree only
    (~0.1 ms), where psutil's ``children(recursive=True)`` reads every process on the machine (~8 ms with
    400 processes; twice a second for the life of every engine run, a few % of a core). Like psutil's, a
    snapshot: a child started during the walk is found by the next one. psutil where the kernel lacks
    the lists (CONFIG_PROC_CHILDREN)."""
    if not os.path.exists(f"/proc/{pid}/task/{pid}/children"):
        import psutil

        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    found: list[int] = []
    todo = [pid]
    while todo:
        here = todo.pop()
        try:
            threads = os.listdir(f"/proc/{here}/task")
        except OSError:
            continue  # ended meanwhile
        for tid in threads:
            try:
                with open(f"/proc/{here}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


def _end(known: dict[int, float], grace: float = 3.0) -> None:
    """SIGTERM every listed process that is still the one listed (pids are reused), and the children they
    have now; SIGKILL whatever is left after ``grace`` seconds (a vine_factory removes its jobs on SIGTERM)."""

    import psutil

    procs: dict[int, "psutil.Process"] = {}
    for pid, created in known.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.environ().get(EXEMPT) != "1":  # read now: long since exec'd
                procs[pid] = p
                for kid in p.children(recursive=True):
                    procs.setdefault(kid.pid, kid)
        except psutil.Error:
            continue
    for p in procs.values():
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(list(procs.values()), timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass


if __name__ == "__main__":  # the guardian: python lifeline.py PARENT_PID
    _guard(int(sys.argv[1]))


@contextlib.contextmanager
def children_ignore_terminal_interrupt() -> Iterator[None]:
    """Inside (main thread): SIGINT is blocked, so the processes an engine starts now inherit a blocked SIGINT
    and a Ctrl-C in the terminal (SIGINT to the whole process group) reaches only this process, which then
    shuts the engine down in order. (Parsl's interchange killed by that SIGINT leaves ``DFK.cleanup`` waiting
    for it forever.) A Ctrl-C that arrives meanwhile is held and delivered on the way out."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
