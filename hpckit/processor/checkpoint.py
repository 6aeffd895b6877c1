"""Per-chunk checkpoints so a killed run resumes without redoing finished chunks.

Unlike coffea, the key includes a fingerprint of the processor (its module source and its pickled
state), so editing the analysis never silently reuses outputs of the old code. Files are written to a
temporary name in the same directory, flushed, fsynced and renamed, so a process killed mid-write
leaves no torn checkpoint.

A checkpoint is a pickle, and unpickling runs code, so a file is only unpickled after its HMAC-SHA256
checks out: the MAC is keyed by a per-user secret (``~/.config/hpckit/checkpoint.key``, 0600, made on
first use) and covers the chunk's identity, so a file planted by someone else, a torn or empty file,
or another chunk's file is redone with a warning naming it, never loaded. Files not owned by the user
or in a group/world-writable directory are refused before they are read (:func:`hpckit.io.paths.untrusted_file`),
and a checkpoint directory another user owns, links to or may write is refused at once
(:func:`hpckit.io.paths.own_dir`). Dataset, file and tree names
are hashed into the path, so ``DY+jets`` and ``DY_jets`` never share a checkpoint.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import inspect
import json
import os
import re
import secrets
import stat
import sys
import types
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import cloudpickle

from hpckit.core.errors import HpckitError
from hpckit.io.paths import atomic_write, config_dir, own_dir, untrusted_file
from hpckit.processor.fileset import WorkItem
from hpckit.processor.serialize import compress, decompress


def processor_fingerprint(processor: Any, schema: Any = None) -> str:
    """What decides a chunk's result besides its events and dataset metadata: the processor's code (its
    module's source and the other modules of the analysis it comes from, and the compiled code of its class or
    function, which a notebook's or stdin's classes have although Python cannot show their source), its state
    (the object's attributes, a partial's arguments, a bound method's object) and the schema. Any change
    gives another fingerprint, so a checkpoint of other code is never reused."""
    h = hashlib.sha256()
    targets, state = _unwrap(processor)
    for target in targets:
        for part in _code_parts(target):
            h.update(part)
    try:
        h.update(cloudpickle.dumps(state))
    except Exception:  # noqa: BLE001 - unpicklable state: fall back to its repr
        h.update(repr(state).encode())
    h.update(getattr(schema, "name", repr(schema)).encode())
    return h.hexdigest()[:16]


def chunk_fingerprint(fingerprint: str, item: WorkItem) -> str:
    """The processor's fingerprint with the chunk's dataset metadata (``events.metadata``: a cross section,
    isMC), which a process() may use: a checkpoint made with other metadata is not this chunk's result."""
    if not item.usermeta:
        return fingerprint
    meta = json.dumps(item.usermeta, sort_keys=True, default=repr).encode()
    return f"{fingerprint}-{hashlib.sha256(meta).hexdigest()[:8]}"


def _unwrap(processor: Any) -> tuple[list[Any], Any]:
    """(the classes and functions whose code runs, the state they run with)."""
    if isinstance(processor, functools.partial):
        targets, state = _unwrap(processor.func)
        return targets, (state, processor.args, processor.keywords)
    if inspect.ismethod(processor):
        owner = processor.__self__
        return [processor.__func__, owner if inspect.isclass(owner) else type(owner)], getattr(owner, "__dict__", {})
    if inspect.isfunction(processor):
        return [processor], None
    return [type(processor)], getattr(processor, "__dict__", {})


def _code_parts(target: Any) -> list[bytes]:
    parts = [f"{target.__module__}.{getattr(target, '__qualname__', target)}".encode()]
    module = inspect.getmodule(target)
    try:
        parts.append(inspect.getsource(module if module is not None else target).encode())
    except (OSError, TypeError):
        pass  # a notebook's or stdin's code: its compiled code below still differs when it changes
    parts += _analysis_sources(module)
    classes = [k for k in getattr(target, "__mro__", ()) if k is not object]
    for fn in [target] if not classes else [v for k in classes for _, v in sorted(vars(k).items())]:
        parts += [_code_bytes(code) for code in _codes(fn) if not _library_file(code.co_filename)]
    return parts


def _codes(obj: Any) -> list[Any]:
    if isinstance(obj, (staticmethod, classmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        return [c for f in (obj.fget, obj.fset, obj.fdel) if f is not None for c in _codes(f)]
    code = getattr(obj, "__code__", None)
    return [code] if isinstance(code, types.CodeType) else []


def _code_bytes(code: types.CodeType) -> bytes:
    """The compiled code, with every nested function's: the same for the same code in any process."""
    consts = [_code_bytes(c) if isinstance(c, types.CodeType)
              else repr(sorted(map(repr, c))).encode() if isinstance(c, frozenset)  # its order varies by process
              else repr(c).encode() for c in code.co_consts]
    return b"\0".join([code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode(), *consts])


_LIBRARY_DIRS = {"site-packages", "dist-packages"}


def _library_file(path: str) -> bool:
    """Code of an installed library or the standard library (it changes with the environment, which the
    launch checks), not of the analysis; a notebook cell's or stdin's "file" is the analysis."""
    if not os.path.isabs(path):
        return False
    return bool(_LIBRARY_DIRS & set(Path(path).parts)) or Path(path).is_relative_to(sys.base_prefix)


def _analysis_sources(module: Any, limit: int = 2000) -> list[bytes]:
    """The source of every loaded module of the analysis the processor's module belongs to (its top-level
    package's directory, or its own directory for a lone module), so editing a helper it imports changes the
    fingerprint too. Installed libraries are not the analysis."""
    path = getattr(module, "__file__", None)
    if not path or _LIBRARY_DIRS & set(Path(path).parts):
        return []
    top = sys.modules.get(module.__name__.split(".")[0])
    base = Path(getattr(top, "__file__", None) or path).resolve().parent
    found = []
    for m in list(sys.modules.values()):
        f = getattr(m, "__file__", None)
        if not f or not f.endswith(".py"):
            continue
        p = Path(f).resolve()
        if p.is_relative_to(base) and not _LIBRARY_DIRS & set(p.relative_to(base).parts) and not _library_file(str(p)):
            found.append(p)  # (an analysis in $HOME beside a Python installed there: not its standard library)
    out = []
    for p in sorted(set(found))[:limit]:
        try:
            out.append(str(p).encode() + b"\0" + p.read_bytes())
        except OSError:
            continue
    return out


class CheckpointerABC(ABC):
    @abstractmethod
    def load(self, item: WorkItem, fingerprint: str) -> Any | None:
        """The stored chunk result, or None."""

    @abstractmethod
    def save(self, result: Any, item: WorkItem, fingerprint: str) -> None: ...


class CheckpointKeyError(HpckitError):
    """The per-user checkpoint key cannot be trusted (someone else can read or replace it)."""


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAGIC = b"HPCKCKP1"
_MAC_LEN = 32
KEY_NAME = "checkpoint.key"


def checkpoint_key(path: str | os.PathLike | None = None) -> bytes:
    """The user's checkpoint secret: 32 random bytes in ``~/.config/hpckit/checkpoint.key`` (0600,
    created on first use; ``$HPCKIT_CHECKPOINT_KEY`` names another file). Refused when another user
    owns it or anyone else may read or write it."""
    p = Path(path or os.environ.get("HPCKIT_CHECKPOINT_KEY") or config_dir() / KEY_NAME)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
    fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if st.st_uid != os.getuid():
            raise CheckpointKeyError(f"checkpoint key {p} is owned by uid {st.st_uid}, not by you: remove it")
        if st.st_mode & 0o077:
            raise CheckpointKeyError(
                f"checkpoint key {p} is readable or writable by others (mode {stat.S_IMODE(st.st_mode):o}): "
                f"run `chmod 600 {p}` if nobody else has read it, otherwise remove it (old checkpoints are redone)"
            )
        key = fh.read(4096)
    if len(key) < 16:
        raise CheckpointKeyError(f"checkpoint key {p} is too short ({len(key)} bytes): remove it to make a new one")
    return key


def _name(text: str) -> str:
    """A readable, collision-free path component: the sanitized name and a hash of the exact name."""
    return f"{_SAFE.sub('_', text)[:60]}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def _binding(item: WorkItem, fingerprint: str) -> bytes:
    """What a checkpoint is a checkpoint *of*: the processor fingerprint and the chunk's identity."""
    return repr((_MAGIC, fingerprint, item.key)).encode()


class SimpleCheckpointer(CheckpointerABC):
    """Checkpoints in a local (or shared-filesystem) directory, one authenticated file per chunk.

    ``key``: the HMAC secret (default: :func:`checkpoint_key`, read once here, on the driver, and
    carried to the workers with the checkpointer, so workers without the user's home can write).
    """

    def __init__(self, checkpoint_dir: str | os.PathLike, verbose: bool = False, overwrite: bool = True,
                 key: bytes | None = None):
        # refused (UnsafePathError naming it) when another user owns it, links to it or may write in it
        self.checkpoint_dir = own_dir(Path(checkpoint_dir).absolute(), "checkpoint directory", create=True,
                                      private=True)
        self._checked: set[str] = set()
        self.verbose = verbose
        self.overwrite = overwrite
        self._key = key if key is not None else checkpoint_key()

    def __repr__(self) -> str:  # never show the key
        return f"SimpleCheckpointer({str(self.checkpoint_dir)!r})"

    def path(self, item: WorkItem, fingerprint: str) -> Path:
        stem = os.path.basename(item.filename)
        return (
            self.checkpoint_dir
            / _SAFE.sub("_", fingerprint)
            / _name(item.dataset)
            / _name(f"{stem}\0{item.filename}\0{item.fileuuid}")
            / _name(item.treename)
            / f"{int(item.entrystart)}-{int(item.entrystop)}.ckpt"
        )

    def _mac(self, item: WorkItem, fingerprint: str, payload: bytes) -> bytes:
        return hmac.new(self._key, _binding(item, fingerprint) + payload, hashlib.sha256).digest()

    def _refuse(self, path: Path, item: WorkItem, reason: str) -> None:
        warnings.warn(f"hpckit: checkpoint {path} is not a valid checkpoint of {item.describe()} ({reason}); "
                      f"redoing the chunk", stacklevel=3)

    def _untrusted_place(self, path: Path, st: os.stat_result) -> str | None:
        return untrusted_file(path, st, top=self.checkpoint_dir)

    def load(self, item: WorkItem, fingerprint: str) -> Any | None:
        path = self.path(item, fingerprint)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except FileNotFoundError:
            return None
        except OSError as err:  # a symlink (ELOOP), no permission, ...
            self._refuse(path, item, f"cannot be opened safely: {err.strerror or err}")
            return None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            problem = self._untrusted_place(path, st)
            if problem:
                self._refuse(path, item, problem)
                return None
            data = fh.read()
        head = len(_MAGIC) + _MAC_LEN
        if len(data) < head or data[: len(_MAGIC)] != _MAGIC:
            self._refuse(path, item, "empty file" if not data else "not an hpckit checkpoint")
            return None
        mac, payload = data[len(_MAGIC) : head], data[head:]
        if not hmac.compare_digest(mac, self._mac(item, fingerprint, payload)):
            self._refuse(path, item, "its HMAC does not match: written by someone else, with another key, "
                                     "for another chunk, or damaged")
            return None
        try:
            return decompress(payload)  # authenticated: written by this user's hpckit for this chunk
        except Exception as err:  # noqa: BLE001 - an unreadable checkpoint is redone, not fatal
            self._refuse(path, item, f"unreadable: {type(err).__name__}: {err}")
            return None

    def save(self, result: Any, item: WorkItem, fingerprint: str) -> None:
        path = self.path(item, fingerprint)
        if path.exists() and not self.overwrite:
            return
        if str(path.parent) not in self._checked:  # no one else's link below the checkpoint directory
            own_dir(path.parent, "checkpoint directory", create=True, private=True)
            self._checked.add(str(path.parent))
        payload = compress(result, 1)
        data = _MAGIC + self._mac(item, fingerprint, payload) + payload
        atomic_write(path, data)  # 0600
