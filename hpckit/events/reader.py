"""Open ROOT trees once per worker thread and read single branches over entry ranges.

Opening a TTree with thousands of branches costs about a second (uproot parses every branch's
metadata), so the open tree is cached per thread and reused by every chunk of that file; a chunk then
costs only the baskets it touches. Handles are per thread so the bytes-read counter of a handle
belongs to one chunk at a time.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import uproot

from hpckit.io import storage
from hpckit.core.errors import FileAccessError, FileNotFound

_MAX_OPEN = int(os.environ.get("HPCKIT_MAX_OPEN_FILES", "8"))
_local = threading.local()


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
        fresh = _open_again(self)
        self.file, self.tree = fresh.file, fresh.tree
        self.windows.clear()

    @property
    def branches(self) -> dict[str, BranchInfo]:
        if self._branches is None:
            self._branches = describe_branches(self.tree)
        return self._branches

    @property
    def bytes_requested(self) -> int:
        return int(getattr(self.file.file.source, "num_requested_bytes", 0))

    @property
    def requests(self) -> int:
        return int(getattr(self.file.file.source, "num_requests", 0))

    def read(self, branch: str, start: int, stop: int) -> Any:
        """Read one branch over [start, stop): a numpy array (flat) or an awkward array (jagged).

        Whole baskets are read and the last ones kept, so consecutive chunks never read a basket twice.
        """
        win = self.windows.get(branch)
        if win is not None and win[0] <= start and stop <= win[1]:
            return win[2][start - win[0] : stop - win[0]]
        if self.closed:
            self.reopen()
        lo, hi = self._plan(branch, start, stop)
        fresh = self._fetch(branch, lo, hi, start, stop)
        if win is not None and win[0] <= start < win[1] and lo == win[1]:
            self.windows[branch] = (win[1], hi, fresh)
            return _concatenate(win[2][start - win[0] :], fresh[: stop - win[1]])
        self.windows[branch] = (lo, hi, fresh)
        return fresh[start - lo : stop - lo]

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

    def _read_many(self, names: list[str], start: int, stop: int) -> dict[str, Any]:
        try:
            got = self.tree.arrays(names, entry_start=start, entry_stop=stop, library="ak", how=dict, array_cache=None)
            import awkward as ak

            return {n: ak.to_numpy(got[n]) if self.branches[n].kind == "flat" else got[n] for n in names}
        except Exception as err:  # noqa: BLE001 - any failure here is a problem with the file
            raise FileAccessError(
                f"cannot read branches {names} entries {start}-{stop} of {self.filename} "
                f"(tree {self.treename!r}): {type(err).__name__}: {err}",
                self.filename,
                err,
            ) from err

    # -- what differs per format (TTree here; RNTuple and Parquet in hpckit.events.formats) -------------
    format_name = "TTree"

    def _entry_offsets(self, branch: str) -> np.ndarray:
        """Entry boundaries of the storage units (baskets, clusters, row groups) of ``branch``."""
        return np.asarray(self.tree[branch].entry_offsets, dtype=np.int64)

    def cluster_starts(self) -> list[int]:
        """Entry boundaries shared by all columns (for ``align_clusters``)."""
        return [int(c) for c in self.tree.common_entry_offsets()]

    def _read_column(self, branch: str, info: BranchInfo, start: int, stop: int) -> Any:
        lib = "np" if info.kind == "flat" else "ak"
        return self.tree[branch].array(entry_start=start, entry_stop=stop, library=lib, array_cache=None)

    def _read_range(self, branch: str, start: int, stop: int) -> Any:
        try:
            return self._read_column(branch, self.branches[branch], start, stop)
        except Exception as err:  # noqa: BLE001 - any failure here is a problem with the file
            raise FileAccessError(
                f"cannot read branch {branch!r} entries {start}-{stop} of {self.filename} "
                f"(tree {self.treename!r}): {type(err).__name__}: {err}",
                self.filename,
                err,
            ) from err


def _concatenate(a: Any, b: Any) -> Any:
    if isinstance(a, np.ndarray):
        return np.concatenate([a, b])
    import awkward as ak

    return ak.concatenate([a, b])


_DESCRIBED: "OrderedDict[tuple, dict[str, BranchInfo]]" = OrderedDict()
_HOT: dict[str, set[str]] = {}  # tree name -> branches chunks read (seeds the next file's coalesced reads)


def _layout_signature(tree: Any) -> tuple | None:
    """What decides the branches' interpretations (names, leaf types, counters, fixed lengths), read from
    the metadata already in memory: files of one dataset share it, so they are described once."""
    sig = []
    for name, branch in tree.iteritems(recursive=False):
        if not type(branch).__name__.startswith("Model_TBranch_v"):
            return None  # object branches (TBranchElement, ...): no shortcut
        leaves = branch.member("fLeaves")
        if len(leaves) != 1:
            return None
        leaf = leaves[0]
        count = leaf.member("fLeafCount")
        sig.append((name, leaf.classname, None if count is None else count.member("fName"), leaf.member("fLen")))
    return tuple(sig)


def describe_branches(tree: Any) -> dict[str, BranchInfo]:
    """Name -> BranchInfo of the branches a schema can use; cached per branch layout, because uproot's
    interpretation of every branch costs ~7 ms per 100 branches and NanoAOD files come in thousands."""
    sig = _layout_signature(tree)
    if sig is None:
        return _describe_branches(tree)
    hit = _DESCRIBED.get(sig)
    if hit is None:
        hit = _DESCRIBED[sig] = _describe_branches(tree)
        while len(_DESCRIBED) > 16:
            _DESCRIBED.popitem(last=False)
    return hit


def _describe_branches(tree: Any) -> dict[str, BranchInfo]:
    out: dict[str, BranchInfo] = {}
    for name, branch in tree.iteritems(recursive=False):
        interp = branch.interpretation
        if isinstance(interp, uproot.interpretation.numerical.AsDtype):
            if interp.to_dtype.shape != ():  # fixed-size arrays per entry: not NanoAOD, skip
                continue
            out[name] = BranchInfo(name, "flat", np.dtype(interp.to_dtype))
        elif isinstance(interp, uproot.interpretation.jagged.AsJagged) and isinstance(
            interp.content, uproot.interpretation.numerical.AsDtype
        ):
            if interp.content.to_dtype.shape != ():
                continue
            out[name] = BranchInfo(name, "jagged", np.dtype(interp.content.to_dtype))
    return out


def _cache() -> "OrderedDict[tuple, OpenTree]":
    cache = getattr(_local, "trees", None)
    if cache is None:
        cache = _local.trees = OrderedDict()
        _local.pid = os.getpid()
    elif _local.pid != os.getpid():
        # A forked child: memory-mapped local files are safe to share (read-only mappings) and save
        # re-reading the tree metadata; handles with sockets or threads (remote files) are not.
        for key in [k for k, t in cache.items() if not _fork_safe(t)]:
            del cache[key]
        _local.pid = os.getpid()
    return cache


def _fork_safe(t: OpenTree) -> bool:
    source = getattr(getattr(t.file, "file", None), "source", None)
    return isinstance(source, uproot.source.file.MemmapSource)


def open_tree(
    filename: str, treename: str, uproot_options: dict | None = None, format: str = "root"
) -> OpenTree:
    """Open (or reuse) ``filename``'s ``treename`` (a TTree or an RNTuple; with ``format="parquet"`` or a
    ``.parquet`` name, a Parquet file whose columns play the branches); every failure is a FileAccessError
    naming the file."""
    cache = _cache()
    key = (filename, treename)
    hit = cache.get(key)
    if hit is not None and hit.closed:  # closed by an earlier user: never hand a closed file on
        del cache[key]
        hit = None
    if hit is not None:
        if next(reversed(cache)) != key:  # moved on to another file: drop the others' basket windows
            for other in cache.values():
                other.windows.clear()
            cache.move_to_end(key)
        return hit
    from hpckit.events import formats  # the non-TTree formats build on OpenTree

    if formats.is_parquet(filename, format):
        opened = formats.open_parquet(filename, treename)
        opened.options = {"format": "parquet"}
        _remember(cache, key, opened)
        return opened
    f = _open_file(filename, uproot_options)
    try:
        tree = f[treename]
        opened = formats.wrap_object(filename, treename, f, tree)
    except FileAccessError:
        f.close()
        raise
    except Exception as err:  # noqa: BLE001
        if storage.is_remote(filename):
            storage.drop_remote_handle(f.file)
        f.close()
        if isinstance(err, KeyError):
            try:
                have = ", ".join(sorted({k.split(";")[0] for k in f.keys(recursive=False)})) or "nothing"
            except Exception:  # noqa: BLE001
                have = "unreadable keys"
            from hpckit.events.format_errors import UprootMissTreeError

            msg = f"tree {treename!r} not found in {filename} (it holds: {have})"
            raise UprootMissTreeError(msg, filename, err) from err
        else:
            msg = f"cannot read tree {treename!r} of {filename}: {type(err).__name__}: {err}"
        raise FileAccessError(msg, filename, err) from err
    if not _fork_safe(opened) and opened.format_name == "TTree":  # remote: a round trip per request, so reads are coalesced
        opened.coalesce = True
    opened.options = dict(uproot_options or {})
    _remember(cache, key, opened)
    return opened


def _open_again(t: OpenTree) -> OpenTree:
    """A fresh handle on the file and tree of ``t`` (not cached: ``t`` keeps being the one in use)."""
    from hpckit.events import formats

    options = dict(t.options or {})
    if options.pop("format", None) == "parquet":
        return formats.open_parquet(t.filename, t.treename)
    f = _open_file(t.filename, options)
    try:
        return formats.wrap_object(t.filename, t.treename, f, f[t.treename])
    except Exception as err:  # noqa: BLE001
        f.close()
        raise FileAccessError(f"cannot reopen tree {t.treename!r} of {t.filename}: {err}", t.filename, err) from err


def _remember(cache: "OrderedDict[tuple, OpenTree]", key: tuple, opened: OpenTree) -> None:
    for other in cache.values():
        other.windows.clear()
    cache[key] = opened
    while len(cache) > _MAX_OPEN:
        _, old = cache.popitem(last=False)
        _close(old)


def _open_file(filename: str, uproot_options: dict | None) -> Any:
    """``uproot.open`` of a local path, file:// or root:// URL; failures are FileAccessErrors naming it
    (``permanent`` when retrying cannot help: not found, a directory, refused)."""
    options = dict(uproot_options or {})
    path = storage.local_path(filename)
    if path is not None:
        options.pop("timeout", None)
        if "handler" not in options:
            # local files: memory-mapped, which is fast and can be shared with forked workers
            options["handler"] = uproot.source.file.MemmapSource
    else:
        path = filename
        storage.configure_xrootd_client(options.get("timeout"))
    try:
        return uproot.open(path, **options)
    except Exception as err:  # noqa: BLE001
        message, permanent = storage.describe_error(filename, err)
        kind = FileNotFound if message.startswith("file not found") else FileAccessError
        failure = kind(message, filename, err)
        failure.permanent = permanent
        raise failure from err


def forget(filename: str) -> None:
    """Drop a file's cached handles in this thread (after an error, so a retry re-opens it)."""
    cache = _cache()
    for key in [k for k in cache if k[0] == filename]:
        t = cache.pop(key)
        if storage.is_remote(filename):
            storage.drop_remote_handle(t.file.file)
        _close(t)


def close_all() -> None:
    cache = _cache()
    while cache:
        _close(cache.popitem()[1])


def _close(t: OpenTree) -> None:
    try:
        t.file.close()
    except Exception:  # noqa: BLE001
        pass


def file_uuid(filename: str, uproot_options: dict | None = None) -> str:
    """The uuid of ``filename`` (its header only: no tree is read); a FileAccessError if it cannot open."""
    f = _open_file(filename, uproot_options)
    try:
        return str(f.file.uuid)
    finally:
        f.close()
