"""Per-chunk checkpoints so a killed run resumes without redoing finished chunks.

Unlike coffea, the key includes a fingerprint of the processor (its module source and its pickled
state), so editing the analysis never silently reuses outputs of the old code. Files are written to a
temporary name in the same directory, flushed, fsynced and renamed, so a process killed mid-write
leaves no torn checkpoint.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import cloudpickle

from hpckit.processor.fileset import WorkItem
from hpckit.processor.serialize import compress, decompress


def processor_fingerprint(processor: Any, schema: Any = None) -> str:
    h = hashlib.sha256()
    cls = type(processor) if not inspect.isfunction(processor) else processor
    try:
        module = inspect.getmodule(cls)
        source = inspect.getsource(module) if module is not None else inspect.getsource(cls)
    except (OSError, TypeError):
        source = ""
    h.update(source.encode())
    h.update(f"{cls.__module__}.{getattr(cls, '__qualname__', cls)}".encode())
    try:
        state = cloudpickle.dumps(getattr(processor, "__dict__", {}))
    except Exception:  # noqa: BLE001 - unpicklable state: fall back to its repr
        state = repr(getattr(processor, "__dict__", {})).encode()
    h.update(state)
    h.update(getattr(schema, "name", repr(schema)).encode())
    return h.hexdigest()[:16]


class CheckpointerABC(ABC):
    @abstractmethod
    def load(self, item: WorkItem, fingerprint: str) -> Any | None:
        """The stored chunk result, or None."""

    @abstractmethod
    def save(self, result: Any, item: WorkItem, fingerprint: str) -> None: ...


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class SimpleCheckpointer(CheckpointerABC):
    """Checkpoints in a local (or shared-filesystem) directory, one file per chunk."""

    def __init__(self, checkpoint_dir: str | os.PathLike, verbose: bool = False, overwrite: bool = True):
        self.checkpoint_dir = Path(checkpoint_dir)
        self.verbose = verbose
        self.overwrite = overwrite

    def path(self, item: WorkItem, fingerprint: str) -> Path:
        stem = _SAFE.sub("_", os.path.basename(item.filename))
        return (
            self.checkpoint_dir
            / fingerprint
            / _SAFE.sub("_", item.dataset)
            / f"{stem}-{item.fileuuid}"
            / _SAFE.sub("_", item.treename)
            / f"{item.entrystart}-{item.entrystop}.pkl.lz4"
        )

    def load(self, item: WorkItem, fingerprint: str) -> Any | None:
        path = self.path(item, fingerprint)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return decompress(data)
        except Exception as err:  # noqa: BLE001 - an unreadable checkpoint is redone, not fatal
            if self.verbose:
                print(f"hpckit: ignoring unreadable checkpoint {path}: {err}")
            return None

    def save(self, result: Any, item: WorkItem, fingerprint: str) -> None:
        path = self.path(item, fingerprint)
        if path.exists() and not self.overwrite:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        data = compress(result, 1)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
