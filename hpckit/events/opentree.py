"""An open input file whose columns play branches, read over entry ranges by whole storage units.

The reading (basket windows, so consecutive chunks never read a basket twice; coalesced reads of remote
files) is the same for every format; what differs (describing the columns, their storage units, reading
one column) is each format's, in :mod:`hpckit.events.formats`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hpckit.core.errors import FileAccessError


@dataclass
class BranchInfo:
    name: str
    kind: str  # "flat" or "jagged"
    dtype: np.dtype


@dataclass
class OpenTree:
    """An open file + tree and what we learned about it once."""

    filename: str
    treename: str
    file: Any
    tree: Any
    uuid: str
    num_entries: int
    _branches: dict[str, BranchInfo] | None = None
    forms: dict[Any, Any] = field(default_factory=dict)  # schema -> (form, buffer plan), built once
    # branch -> (first entry, last entry, array) of whole baskets last read: the next chunk of the file
    # usually starts inside the last basket of this one, which is then not read and unzipped again
    windows: dict[str, tuple[int, int, Any]] = field(default_factory=dict)
    _basket_offsets: dict[str, np.ndarray] = field(default_factory=dict)
    # branches chunks of this tree (or earlier trees of that name) read: fetched together when they need
    # the same entries (remote files only, where each request is a round trip)
    hot: set[str] = field(default_factory=set)
    coalesce: bool = False
    coalesces_remote_reads = False  # a format whose remote reads are worth coalescing (TTree) sets it
    options: dict | None = None  # the uproot options it was opened with (to reopen it)

    @property
    def closed(self) -> bool:
        """True once someone closed the file (a user's ``factory.file_handle.close()``, a ``with`` block,
        the cache evicting it while events still point here)."""
        source = getattr(getattr(self.file, "file", None), "source", None)
        if source is None:  # Parquet: the counting file
            return bool(getattr(self.file, "closed", False))
        try:
            return bool(source.closed)
        except Exception:  # noqa: BLE001 - a source that cannot tell is taken as open
            return False

    def reopen(self) -> None:
        """Open the file again in place (same tree, same plan): what a closed handle reads through."""
        fresh = self.open_again()
        self.file, self.tree = fresh.file, fresh.tree
        self.windows.clear()

    @property
    def branches(self) -> dict[str, BranchInfo]:
        if self._branches is None:
            self._branches = self._describe()
        return self._branches

    def read(self, branch: str, start: int, stop: int) -> Any:
        """Read one branch over [start, stop): a numpy array (flat) or an awkward array (jagged).

        Whole baskets are read and the last ones kept, so consecutive chunks never read a basket twice.
        """
        win = self.windows.get(branch)
        if win is not None and win[0] <= start and stop <= win[1]:
            return _cut(win[2], start - win[0], stop - win[0])
        if self.closed:
            self.reopen()
        lo, hi = self._plan(branch, start, stop)
        fresh = self._fetch(branch, lo, hi, start, stop)
        if win is not None and win[0] <= start < win[1] and lo == win[1]:
            self.windows[branch] = (win[1], hi, fresh)
            return _concatenate(win[2][start - win[0] :], fresh[: stop - win[1]])
        self.windows[branch] = (lo, hi, fresh)
        return _cut(fresh, start - lo, stop - lo)

    def _plan(self, branch: str, start: int, stop: int) -> tuple[int, int]:
        """The entries to read for [start, stop): whole baskets, minus what the last window still holds."""
        offsets = self._basket_offsets.get(branch)
        if offsets is None:
            offsets = self._basket_offsets[branch] = self._entry_offsets(branch)
        end = int(offsets[min(np.searchsorted(offsets, stop, side="left"), len(offsets) - 1)])
        win = self.windows.get(branch)
        if win is not None and win[0] <= start < win[1] and end > win[1]:
            return win[1], end
        return int(offsets[max(np.searchsorted(offsets, start, side="right") - 1, 0)]), end

    def _fetch(self, branch: str, lo: int, hi: int, start: int, stop: int) -> Any:
        """``branch`` over [lo, hi). Remote files: the branches earlier chunks used that need the same
        entries now are read with it in one request (one per basket window, not one per branch), and
        their windows set as their own reads would have (trimmed to this chunk's start)."""
        if not self.coalesce:
            return self._read_range(branch, lo, hi)
        seen = _HOT.setdefault(self.treename, set())
        hot = self.hot or seen  # a file's first chunk: what chunks of earlier files used
        self.hot.add(branch)
        seen.add(branch)
        group = [branch]
        for other in sorted(hot - {branch}):
            win = self.windows.get(other)
            if other in self.branches and not (win is not None and win[0] <= start and stop <= win[1]):
                if self._plan(other, start, stop) == (lo, hi):
                    group.append(other)
        self.hot.update(group)
        if len(group) == 1:
            return self._read_range(branch, lo, hi)
        arrays = self._read_many(group, lo, hi)
        for other in group[1:]:
            win = self.windows.get(other)
            if win is not None and win[0] <= start < win[1] and lo == win[1]:
                self.windows[other] = (start, hi, _concatenate(win[2][start - win[0] :], arrays[other]))
            else:
                self.windows[other] = (lo, hi, arrays[other])
        return arrays[branch]

    # -- what each format gives (hpckit.events.formats: one module each) ---------------------------------
    format_name = "?"

    def _describe(self) -> dict[str, BranchInfo]:
        """Name -> BranchInfo of the columns a schema can use."""
        raise NotImplementedError

    def open_again(self) -> "OpenTree":
        """A fresh handle on the same file and tree (not cached: this one stays the one in use)."""
        raise NotImplementedError

    @property
    def bytes_requested(self) -> int:
        raise NotImplementedError

    @property
    def requests(self) -> int:
        raise NotImplementedError

    def _entry_offsets(self, branch: str) -> np.ndarray:
        """Entry boundaries of the storage units (baskets, clusters, row groups) of ``branch``."""
        raise NotImplementedError

    def cluster_starts(self) -> list[int]:
        """Entry boundaries shared by all columns (for ``align_clusters``)."""
        raise NotImplementedError

    def _read_column(self, branch: str, info: BranchInfo, start: int, stop: int) -> Any:
        raise NotImplementedError

    def _read_many(self, names: list[str], start: int, stop: int) -> dict[str, Any]:
        """Several columns over the same entries in one request (formats that coalesce remote reads)."""
        return {n: self._read_range(n, start, stop) for n in names}

    def _read_range(self, branch: str, start: int, stop: int) -> Any:
        try:
            return self._read_column(branch, self.branches[branch], start, stop)
        except Exception as err:  # noqa: BLE001 - any failure here is a problem with the file
            raise self.read_error(f"branch {branch!r}", start, stop, err) from err

    def read_error(self, what: str, start: int, stop: int, err: BaseException) -> FileAccessError:
        """The error of a failed read of ``what`` (branches) over [start, stop), naming the file and tree."""
        return FileAccessError(f"cannot read {what} entries {start}-{stop} of {self.filename} "
                               f"(tree {self.treename!r}): {type(err).__name__}: {err}", self.filename, err)


def _cut(array: Any, start: int, stop: int) -> Any:
    """``array[start:stop]``; of a jagged branch, its layout cut (a numpy array or an awkward layout,
    what the chunk reader takes): ``ak.Array``'s own slicing costs ~60 us a branch a chunk."""
    if not isinstance(array, np.ndarray) and hasattr(array, "layout"):
        array = array.layout
    return array[start:stop]


def _concatenate(a: Any, b: Any) -> Any:
    if isinstance(a, np.ndarray):
        return np.concatenate([a, b])
    import awkward as ak

    return ak.concatenate([a, b])


_HOT: dict[str, set[str]] = {}  # tree name -> branches chunks read (seeds the next file's coalesced reads)
