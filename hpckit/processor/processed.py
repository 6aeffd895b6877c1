"""Which chunks a result covers, held as entry ranges per file rather than one key per chunk.

Every chunk's result says which chunk it is (``processed``), and the Runner checks at the end that every
planned chunk came back. As a set of per-chunk keys that cost ~190 bytes a chunk in the driver for the
whole run, and every merge on a worker pickled the keys of all the chunks below it (the root's merge of
10^5 chunks: 10^5 keys). Consecutive chunks of a file coalesce into one range here, so a merged result
holds a few ranges per file whatever the chunk count. ``len`` is the number of chunks merged in, as the
set's was; iterating gives one key per range (a whole file's chunks: one key from its first entry to
its last). A chunk merged twice (an executor's bug: its events would count twice) shows as a ``count``
above the chunks covered, and ``doubled`` names the first such chunk.
"""

from __future__ import annotations

import sys
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from typing import Any

Key = tuple  # (dataset, filename, treename, entrystart, entrystop, fileuuid): WorkItem.key


class ProcessedChunks:
    """Chunks covered, as sorted, coalesced ``[start, stop)`` ranges per (dataset, file, tree, uuid)."""

    __slots__ = ("ranges", "count", "doubled")

    def __init__(self, keys: Iterable[Key] = ()):
        self.ranges: dict[tuple, list[tuple[int, int]]] = {}
        self.count = 0
        self.doubled: Key | None = None  # the first chunk merged in twice, if any
        for key in keys:
            self._merge(_file(key), [(key[3], key[4])], 1)

    @classmethod
    def of(cls, key: Key) -> "ProcessedChunks":
        return cls((key,))

    def _merge(self, file: tuple, ranges: list[tuple[int, int]], count: int) -> None:
        mine = self.ranges.get(file)
        if mine is None:
            self.ranges[file] = ranges[:]
        else:
            self.ranges[file], overlap = _union(mine, ranges)
            if overlap is not None and self.doubled is None:
                self.doubled = (file[0], file[1], file[2], overlap[0], overlap[1], file[3])
        self.count += count

    def __iadd__(self, other: Any) -> "ProcessedChunks":
        if isinstance(other, (set, frozenset)):  # a result from before ranges (an old checkpoint)
            other = ProcessedChunks(other)
        if not isinstance(other, ProcessedChunks):
            return NotImplemented
        for file, ranges in other.ranges.items():
            self._merge(file, ranges, 0)
        self.count += other.count
        if self.doubled is None:
            self.doubled = other.doubled
        return self

    def __add__(self, other: Any) -> "ProcessedChunks":
        out = ProcessedChunks()
        out += self
        return out.__iadd__(other)

    __or__ = __add__
    __ior__ = __iadd__

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, tuple) or len(key) != 6:
            return False
        ranges = self.ranges.get(_file(key))
        if not ranges:
            return False
        i = bisect_right(ranges, (key[3], sys.maxsize)) - 1
        return i >= 0 and ranges[i][0] <= key[3] and key[4] <= ranges[i][1]

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Key]:
        for (dataset, filename, treename, uuid), ranges in self.ranges.items():
            for start, stop in ranges:
                yield (dataset, filename, treename, start, stop, uuid)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (set, frozenset)):
            other = ProcessedChunks(other)
        if not isinstance(other, ProcessedChunks):
            return NotImplemented
        return self.ranges == other.ranges and self.count == other.count

    def __repr__(self) -> str:
        spans = sum(len(r) for r in self.ranges.values())
        return f"ProcessedChunks({self.count} chunks in {spans} ranges of {len(self.ranges)} files)"

    def __getstate__(self) -> tuple:
        return self.ranges, self.count, self.doubled

    def __setstate__(self, state: tuple) -> None:
        ranges, self.count, self.doubled = state
        # a driver folding 10^5 results: every unpickled file key shares its strings with the others'
        self.ranges = {tuple(sys.intern(x) if type(x) is str else x for x in file): r for file, r in ranges.items()}


def _file(key: Key) -> tuple:
    return (key[0], key[1], key[2], key[5])


def _union(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], tuple | None]:
    """Two sorted lists of ranges as one, touching ranges joined; and the first range of the two that
    overlaps the other (entries covered twice), or None."""
    if a and b and a[-1][1] <= b[0][0]:  # the usual case in tree order: b comes after a
        if a[-1][1] == b[0][0]:
            return a[:-1] + [(a[-1][0], b[0][1])] + b[1:], None
        return a + b, None
    out: list[tuple[int, int]] = []
    overlap = None
    for start, stop in sorted(a + b):
        if out and start < out[-1][1] and overlap is None:
            overlap = (start, min(stop, out[-1][1]))
        if out and start <= out[-1][1]:
            if stop > out[-1][1]:
                out[-1] = (out[-1][0], stop)
        else:
            out.append((start, stop))
    return out, overlap
