"""The bounded submission window every executor with workers shares (Futures, Dask, Parsl, TaskVine).

Chunks go out in chunk order, at most ``size`` ahead of the oldest unfinished one. The engine's queue
(the pool's call queue, Dask's scheduler tasks, Parsl's DFK records, TaskVine's manager tasks) and the
results waiting for their turn in the merge tree then stay bounded whatever the number of chunks: the
driver's memory does not grow with it. The price: one chunk that runs far longer than the others stalls
the workers after ``size`` more chunks.
"""

from __future__ import annotations

MIN_WINDOW = 64
PER_WORKER = 16


def window_size(workers: int, given: int | None = None) -> int:
    """``given`` if set (an executor's ``window=``), else ``max(64, 16 x workers)``."""
    if given is not None:
        if int(given) < 1:
            raise ValueError(f"window must be at least 1, got {given}")
        return int(given)
    return max(MIN_WINDOW, PER_WORKER * max(1, int(workers)))


class SubmitWindow:
    """Which chunks may be submitted now. ``take()`` hands out the next indices (in order) that fit;
    ``finish(i)`` marks chunk ``i`` done (a resubmitted chunk stays in flight until then);
    ``in_flight_max`` records the most submitted-and-unfinished chunks at once."""

    def __init__(self, n: int, size: int):
        self.n = int(n)
        self.size = max(1, int(size))
        self.submitted = 0
        self._oldest = 0
        self._finished = bytearray(self.n)
        self._done = 0
        self.in_flight_max = 0

    @property
    def in_flight(self) -> int:
        return self.submitted - self._done

    def resize(self, size: int) -> None:
        """A new size (workers joined or left); chunks already out stay out."""
        self.size = max(1, int(size))

    def take(self) -> range:
        """Indices to submit now (marked submitted)."""
        while self._oldest < self.n and self._finished[self._oldest]:
            self._oldest += 1
        stop = min(self.n, self._oldest + self.size)
        out = range(self.submitted, max(self.submitted, stop))
        self.submitted = max(self.submitted, stop)
        self.in_flight_max = max(self.in_flight_max, self.in_flight)
        return out

    def finish(self, index: int) -> None:
        if not self._finished[index]:
            self._finished[index] = 1
            self._done += 1
