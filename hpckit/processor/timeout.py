"""``chunk_timeout``: end a chunk that runs too long as a failure naming it.

Enforced with a real-time interval timer (SIGALRM) in the thread that runs the chunk, which works where
that is a process's main thread: IterativeExecutor (when the Runner is called from the main thread),
FuturesExecutor's process pool, Parsl and TaskVine workers. In a worker *thread* (Dask workers,
FuturesExecutor with a thread pool) a signal cannot interrupt it; there the timeout is not enforced
and :func:`enforceable` says so. Code stuck inside one C call (not returning to Python) is ended when
the call returns.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from hpckit.core.errors import ChunkError


class _Expired(BaseException):
    """Raised inside the chunk; a BaseException so a processor's ``except Exception`` cannot swallow it."""


def enforceable() -> bool:
    """True where :func:`chunk_deadline` can interrupt the current thread."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def chunk_deadline(seconds: float | None, what: str) -> Iterator[None]:
    """Run the body with at most ``seconds`` of wall time; past it, raise :class:`ChunkError` naming
    ``what``. A no-op for ``None`` or where it cannot be enforced."""
    if not seconds or not enforceable():
        yield
        return

    def expire(signum, frame):  # noqa: ARG001
        raise _Expired()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    except _Expired:
        raise ChunkError(
            f"{what} did not finish within chunk_timeout={seconds:g} s and was ended as a failure", what
        ) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
