"""Tiny chunks sent a level-0 merge group a task, shared by the executors that send chunks one by one.

A chunk of a counting processor on a 20-event file runs in ~1 ms; sending it, pickling and unpickling its
result and folding it cost about as much again. A group of ``treereduction`` consecutive chunks - one
level-0 group of the fixed merge tree - run in order where they run and folded there with the driver's own
fold (:func:`hpckit.processor.work.run_group`) is the tree's level-1 node, the same bytes, for one
round trip. Which chunks go that way is judged here from the first chunks' pace.
"""

from __future__ import annotations

import time
from typing import Any

from hpckit.processor.executors._window import SubmitWindow

GROUP_BELOW_S = 0.05  # chunks shorter than this (wall, per worker, overheads included) go a merge group a task
GROUP_AFTER = 4  # chunks per worker finished before that is judged


class ChunkGroups:
    """Whether chunks go out one at a time or a whole level-0 merge group (``treereduction``
    consecutive chunks) at a time. Tiny chunks (~1 ms: a counting processor, 20-event files) spend as
    long being sent, pickled, unpickled and folded one by one as running; a group pays that once. Long
    chunks stay single, so the last group cannot hold the run's tail. ``setting``: None judges from the
    first chunks' pace, True groups from the start, False never."""

    def __init__(self, n: int, width: int, workers: int, setting: bool | None):
        self.n, self.width, self.workers = n, width, max(1, workers)
        self.start: int | None = 0 if setting is True and n else None  # the first group run whole
        self.judged = setting is not None or n < 4 * width * self.workers
        self.done, self.first_done = 0, None
        self.runs: dict[tuple[int, int], tuple[int, int]] = {}  # node (1, group) -> its chunks [lo, hi)

    @property
    def grouped(self) -> int:
        """Chunks sent in groups (or to be)."""
        return 0 if self.start is None else max(0, self.n - self.start * self.width)

    def widen(self, window: SubmitWindow) -> None:
        """A group goes out when its last chunk fits in the window: room for a few groups per worker."""
        if self.start is not None:
            window.resize(max(window.size, self.width * 4 * self.workers))

    def finished(self, chunks: int, window: SubmitWindow) -> None:
        """``chunks`` more chunks finished; after enough of them, decide."""
        now = time.perf_counter()
        if self.first_done is None:
            self.first_done = now
        self.done += chunks
        if self.judged or self.done <= GROUP_AFTER * self.workers:
            return
        self.judged = True
        pace = (now - self.first_done) * self.workers / (self.done - 1)
        if pace < GROUP_BELOW_S:
            self.start = -(-window.submitted // self.width)
            self.widen(window)

    def take(self, index: int) -> tuple[int, int] | None:
        """Chunk ``index`` leaves the window: ``(0, index)`` to run it alone; in a group, the group's node
        once its last chunk is taken, None before (the group's chunks wait for it)."""
        g = index // self.width
        if self.start is None or g < self.start:
            return (0, index)
        hi = min((g + 1) * self.width, self.n)
        if index < hi - 1:
            return None
        self.runs[(1, g)] = (g * self.width, hi)
        return (1, g)


def describe_run(item: Any, chunks: int = 1) -> str:
    """What failed, for an error message: a chunk, or the first chunk of a merge group sent whole."""
    return item.describe() + (f" (and the {chunks - 1} chunks after it, a merge group)" if chunks > 1 else "")
