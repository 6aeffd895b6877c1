"""The run's chunks as the driver holds them for the whole run: a few numbers a chunk.

The Runner keeps every planned chunk until the end (to name a failed chunk, to check that every chunk came
back). As a list of WorkItems that cost ~180 bytes a chunk (10^6 chunks: ~180 MB in the driver). Here a
chunk is its file's index and its entry range, 24 bytes, and its WorkItem is made again when an executor
asks for it (~2 us): the same values, so executors, checkpoints and records see no difference.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

from hpckit.processor.fileset import WorkItem


class ChunkPlan(Sequence):
    """``items[i]`` / ``items[lo:hi]`` / ``len(items)`` / iteration, as of the list of WorkItems it was made
    from; consecutive chunks of one file share that file's description (the first of its chunks)."""

    def __init__(self, items: Iterable[WorkItem]):
        self._files: list[WorkItem] = []
        self._file = array("q")
        self._start = array("q")
        self._stop = array("q")
        last: WorkItem | None = None
        for item in items:
            if last is None or not _same_file(last, item):
                self._files.append(item)
                last = item
            self._file.append(len(self._files) - 1)
            self._start.append(item.entrystart)
            self._stop.append(item.entrystop)

    def __len__(self) -> int:
        return len(self._file)

    @overload
    def __getitem__(self, index: int) -> WorkItem: ...

    @overload
    def __getitem__(self, index: slice) -> list[WorkItem]: ...

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        f = self._files[self._file[index]]
        start, stop = self._start[index], self._stop[index]
        if start == f.entrystart and stop == f.entrystop:
            return f
        return WorkItem(f.dataset, f.filename, f.treename, start, stop, f.fileuuid, f.usermeta, f.preload, f.replicas)

    def __iter__(self) -> Iterator[WorkItem]:
        for i in range(len(self)):
            yield self[i]

    def entries(self) -> int:
        """Events in all the chunks."""
        return sum(self._stop) - sum(self._start)


def _same_file(a: WorkItem, b: WorkItem) -> bool:
    return (a.filename == b.filename and a.fileuuid == b.fileuuid and a.treename == b.treename
            and a.dataset == b.dataset and a.usermeta is b.usermeta and a.preload is b.preload
            and a.replicas == b.replicas)
