"""A persistent, per-user cache of what planning reads from each file (entries, uuid, cluster starts), so
a rerun over the same files plans without opening them.

One SQLite file (stdlib ``sqlite3``, plain text JSON values, never pickles):
``$XDG_CACHE_HOME/hpckit/metadata.sqlite`` (``~/.cache/hpckit``). A row is keyed by the file's location
and what was read (tree, format, cluster starts or not) and holds the file's identity when it was read:

* a local file (a path or ``file://``): size, mtime (ns), inode and device, from one ``stat`` at lookup;
  a file touched, rewritten, replaced or resized no longer matches and is read again;
* a remote file (``root://``...): the URL and the file's uuid. Looking it up costs nothing remote: every
  chunk already checks the uuid of the file it opens against the planned one (``ChunkJob``), so a file
  replaced behind the same URL fails (or is skipped) by name instead of being read as the old one, and
  the Runner then drops its row so the next run reads it again. ``hpckit run --refresh-metadata``
  (``Runner(refresh_metadata=True)``) re-reads every file.

Safe like the checkpoints: each row carries an HMAC-SHA256 over its key, identity and value, keyed by
the user's checkpoint secret (``~/.config/hpckit/checkpoint.key``, through a label so the two uses never
share a MAC); a row that does not verify (edited, planted, another key) is not used, a warning says how
many, and the file is read again. The directory must be the user's own and not writable by others, and
the database file a regular file the user owns; otherwise the cache is not used (a warning names it) and
the run goes on reading files. The file is capped (``HPCKIT_METADATA_CACHE_MB``, default 256 MB): past
it, the least recently used quarter of the rows is dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import time
import warnings
from pathlib import Path
from collections.abc import Iterable
from typing import Any

from hpckit.io import storage
from hpckit.core.errors import HpckitError

DEFAULT_NAME = "metadata.sqlite"
DEFAULT_MAX_MB = 256
_LABEL = b"hpckit metadata cache v1"
_BATCH = 500  # keys per SELECT (SQLite allows 999 parameters by default on old builds)

_TABLE = "files_v1"
_SCHEMA = f"""CREATE TABLE IF NOT EXISTS {_TABLE} (key TEXT PRIMARY KEY, file TEXT NOT NULL, ident TEXT NOT NULL,
    entries INTEGER NOT NULL, uuid TEXT NOT NULL, clusters TEXT, mac BLOB NOT NULL, used INTEGER NOT NULL)"""


class MetadataCache:
    """The persistent cache; ``lookup``/``store`` take the Runner's file specs (``dataset``, ``filename``,
    ``treename``) plus what was read (``what``: format and cluster choice, part of the key)."""

    def __init__(self, path: str | os.PathLike | None = None, max_bytes: int | None = None, key: bytes | None = None):
        from hpckit.io.paths import cache_dir, private_dir

        if path is None:
            self.path = cache_dir() / DEFAULT_NAME
        else:
            self.path = Path(path)
            private_dir(self.path.parent)
        if max_bytes is None:
            max_bytes = int(float(os.environ.get("HPCKIT_METADATA_CACHE_MB", DEFAULT_MAX_MB)) * 2**20)
        self.max_bytes = int(max_bytes)
        if key is None:
            from hpckit.processor.checkpoint import checkpoint_key

            key = checkpoint_key()
        self._key = hmac.new(key, _LABEL, hashlib.sha256).digest()
        self._check_file()
        self._db = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
        self._db.execute(_SCHEMA)
        self.refused = 0  # rows that failed their HMAC in this process's lookups

    def __repr__(self) -> str:  # never show the key
        return f"MetadataCache({str(self.path)!r})"

    def close(self) -> None:
        self._db.close()

    # -- safety --------------------------------------------------------------------------------------
    def _check_file(self) -> None:
        from hpckit.io.paths import untrusted_file

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as err:
            raise PermissionError(f"metadata cache {self.path} cannot be opened safely: {err.strerror or err}") from None
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        problem = untrusted_file(self.path, st)
        if problem:
            raise PermissionError(f"metadata cache {self.path} is {problem}")

    def _mac(self, key: str, ident: str, entries: int, uuid: str, clusters: str | None) -> bytes:
        return hmac.digest(self._key, f"{key}\0{ident}\0{entries}\0{uuid}\0{clusters}".encode(), "sha256")

    # -- rows ----------------------------------------------------------------------------------------
    @staticmethod
    def row_key(filename: str, treename: str, what: str) -> str:
        return f"{what}\0{treename}\0{filename}"

    @staticmethod
    def identity(filename: str) -> str | None:
        """A local file's (size, mtime ns, inode, device), "remote" for a URL, None if it cannot be stat'ed."""
        return "remote" if storage.local_path(filename) is None else storage.local_identity(filename)

    def lookup(self, specs: list, what: str) -> dict[int, dict]:
        """The cached metadata of ``specs`` that is still valid, by index in ``specs`` (one ``stat`` a
        local file; nothing remote)."""
        keys = [self.row_key(s.filename, s.treename, what) for s in specs]
        rows: dict[str, tuple] = {}
        q = f"SELECT key, ident, entries, uuid, clusters, mac, used FROM {_TABLE} WHERE key IN "
        for i in range(0, len(keys), _BATCH):
            part = keys[i : i + _BATCH]
            for row in self._db.execute(q + f"({','.join('?' * len(part))})", part):
                rows[row[0]] = row[1:]
        today = int(time.time() // 86400)
        found: dict[int, dict] = {}
        stale_used: list[str] = []
        refused = 0
        identity, mac_of = self.identity, self._mac
        for i, (spec, key) in enumerate(zip(specs, keys)):
            row = rows.get(key)
            if row is None:
                continue
            ident, entries, uuid, clusters, mac, used = row
            if not isinstance(entries, int) or not isinstance(uuid, str) or not isinstance(mac, bytes) \
                    or not hmac.compare_digest(mac, mac_of(key, ident, entries, uuid, clusters)):
                refused += 1
                continue
            if ident != identity(spec.filename):
                continue
            meta = {"numentries": entries, "uuid": uuid}
            if clusters is not None:
                meta["clusters"] = _clusters(clusters)
                if meta["clusters"] is None:
                    continue
            found[i] = meta
            if used < today:
                stale_used.append(key)
        if refused:
            self.refused += refused
            warnings.warn(
                f"hpckit: {refused} metadata cache entr{'y' if refused == 1 else 'ies'} in {self.path} failed "
                "the HMAC check (edited, or written with another key): those files are read again", stacklevel=3)
        if stale_used:
            self._write(f"UPDATE {_TABLE} SET used = ? WHERE key = ?", [(today, k) for k in stale_used])
        return found

    def store(self, pairs: Iterable[tuple[Any, dict]], what: str) -> None:
        """Remember the metadata of files just read (errors are never cached)."""
        today = int(time.time() // 86400)
        rows = []
        for spec, meta in pairs:
            if "error" in meta:
                continue
            ident = self.identity(spec.filename)
            if ident is None:
                continue
            key = self.row_key(spec.filename, spec.treename, what)
            entries, uuid = int(meta["numentries"]), str(meta["uuid"])
            clusters = json.dumps([int(c) for c in meta["clusters"]]) if meta.get("clusters") is not None else None
            rows.append((key, spec.filename, ident, entries, uuid, clusters,
                         self._mac(key, ident, entries, uuid, clusters), today))
        if rows:
            self._write(f"INSERT OR REPLACE INTO {_TABLE} (key, file, ident, entries, uuid, clusters, mac, used) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._cap()

    def forget(self, filenames: Iterable[str]) -> None:
        """Drop every row of these files (e.g. a remote file whose uuid changed)."""
        names = sorted(set(filenames))
        if names:
            self._write(f"DELETE FROM {_TABLE} WHERE file = ?", [(n,) for n in names])

    def clear(self) -> None:
        self._write(f"DELETE FROM {_TABLE}", [()])

    def __len__(self) -> int:
        return int(self._db.execute(f"SELECT COUNT(*) FROM {_TABLE}").fetchone()[0])

    def _write(self, sql: str, rows: list) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(sql, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as err:  # a locked or full cache must not fail the run
            warnings.warn(f"hpckit: metadata cache {self.path} not updated: {err}", stacklevel=3)

    def _size(self) -> int:
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return (pages - free) * self._db.execute("PRAGMA page_size").fetchone()[0]

    def _cap(self) -> None:
        if self._size() <= self.max_bytes:
            return
        n = len(self)
        drop = max(1, n // 4)
        while n > 1 and self._size() > self.max_bytes:
            self._write(f"DELETE FROM {_TABLE} WHERE rowid IN (SELECT rowid FROM {_TABLE} ORDER BY used, rowid LIMIT ?)",
                        [(drop,)])
            n -= drop
        try:
            self._db.execute("VACUUM")
        except sqlite3.Error:
            pass


def _clusters(text: str) -> list[int] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(c, int) for c in value):
        return None
    return value


def open_cache(setting: Any) -> MetadataCache | None:
    """The Runner's ``persistent_metadata``: True (the per-user cache, unless ``HPCKIT_METADATA_CACHE=off``),
    False/None (none), a path (that file) or a :class:`MetadataCache`. A cache that cannot be trusted or
    opened is not used: one warning names it and why."""
    if isinstance(setting, MetadataCache):
        return setting
    if setting is None or setting is False:
        return None
    env = os.environ.get("HPCKIT_METADATA_CACHE", "").strip()
    if setting is True and env.lower() in ("0", "off", "no", "false"):
        return None
    path = None if setting is True else setting
    if path is None and env and env.lower() not in ("1", "on", "yes", "true"):
        path = env
    try:
        return MetadataCache(path)
    except (OSError, sqlite3.Error, ValueError, HpckitError) as err:
        warnings.warn(f"hpckit: not using the file metadata cache: {err}; every file is read for planning",
                      stacklevel=3)
        return None
