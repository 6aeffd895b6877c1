"""Open input files once per worker thread (any format of :mod:`hpckit.events.formats`) and hand out the
open tree, whose columns are read over entry ranges (:mod:`hpckit.events.opentree`).

Opening a TTree with thousands of branches costs about a second (uproot parses every branch's
metadata), so the open tree is cached per thread and reused by every chunk of that file; a chunk then
costs only the baskets it touches. Handles are per thread so the bytes-read counter of a handle
belongs to one chunk at a time.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import uproot

from hpckit.core.errors import FileAccessError
from hpckit.events import formats
from hpckit.events.formats.rootfile import open_root_file
from hpckit.events.opentree import _HOT, BranchInfo, OpenTree  # noqa: F401 (re-exported: the reader's types)
from hpckit.io import storage

_open_file = open_root_file  # the name planning and older callers use

_MAX_OPEN = int(os.environ.get("HPCKIT_MAX_OPEN_FILES", "8"))
_local = threading.local()


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
    identity = storage.local_identity(filename)  # None for a remote file: the uuid checks cover those
    if hit is not None and getattr(hit, "identity", None) != identity:  # replaced or rewritten since it opened
        forget(filename)
        hit = None
    if hit is not None:
        if next(reversed(cache)) != key:  # moved on to another file: drop the others' basket windows
            for other in cache.values():
                other.windows.clear()
            cache.move_to_end(key)
        return hit
    own = formats.file_format(filename, format)
    if own is not None:  # a format that opens the file itself (Parquet)
        opened = own.open(filename, treename)
        opened.options = {"format": own.option}
        opened.identity = identity
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
    if not _fork_safe(opened) and opened.coalesces_remote_reads:  # remote: a round trip per request
        opened.coalesce = True
    opened.options = dict(uproot_options or {})
    opened.identity = identity
    _remember(cache, key, opened)
    return opened


def _remember(cache: "OrderedDict[tuple, OpenTree]", key: tuple, opened: OpenTree) -> None:
    for other in cache.values():
        other.windows.clear()
    cache[key] = opened
    while len(cache) > _MAX_OPEN:
        _, old = cache.popitem(last=False)
        _close(old)


def forget(filename: str) -> None:
    """Drop a file's cached handles in this thread (after an error, so a retry re-opens it)."""
    cache = _cache()
    for key in [k for k in cache if k[0] == filename]:
        t = cache.pop(key)
        if storage.is_remote(filename):
            storage.drop_remote_handle(t.file.file)
        _close(t)


def forget_remote() -> None:
    """Drop this thread's remote handles (a run starts afresh: a remote file rewritten since an earlier run in
    this process is read anew; local handles are checked against their file at each use)."""
    for filename in {k[0] for k in _cache() if storage.is_remote(k[0])}:
        forget(filename)


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
