"""Results crossing a process boundary: pickle, framed with LZ4 at a chosen level (or raw)."""

from __future__ import annotations

import functools
import os
import pickle
import sys
import types
from typing import Any

import cloudpickle
import lz4.frame

_MAGIC = b"\x04\x22\x4d\x18"  # LZ4 frame magic number


def compress(obj: Any, level: int | None = 1) -> Any:
    """Pickle and LZ4-frame ``obj``; with ``level=None`` return it unchanged (pickled by the engine)."""
    if level is None:
        return obj
    return lz4.frame.compress(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), compression_level=level)


def decompress(payload: Any) -> Any:
    """Inverse of :func:`compress`; anything that is not an LZ4-framed pickle is returned as is."""
    if isinstance(payload, (bytes, bytearray)) and payload[:4] == _MAGIC:
        return pickle.loads(lz4.frame.decompress(payload))
    return payload


@functools.lru_cache(maxsize=1)
def _install_dirs() -> tuple[str, ...]:
    """Where installed distributions and the standard library live (a path test costs nothing, unlike
    asking importlib.metadata about every distribution, which takes a fifth of a second)."""
    import site
    import sysconfig

    dirs = set(site.getsitepackages()) | {site.getusersitepackages()}
    dirs |= {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib", "platstdlib")}
    return tuple(os.path.join(os.path.realpath(d), "") for d in dirs if d)


def _is_installed(module: Any) -> bool:
    path = os.path.realpath(getattr(module, "__file__", "") or "")
    return path.startswith(_install_dirs())


def _user_module(name: Any) -> Any:
    """The module ``name`` when it is the user's own (loaded, with a file, in no install directory), else None."""
    if not isinstance(name, str):
        return None
    top = name.partition(".")[0]
    if not name or name == "__main__" or top in sys.stdlib_module_names or top in ("builtins", "hpckit"):
        return None
    module = sys.modules.get(name)
    if module is None or not getattr(module, "__file__", None) or _is_installed(module):
        return None
    return module


def _imported_user_modules(module: Any, found: list[Any], depth: int) -> None:
    """Add the user's modules that ``module`` uses (``import cuts``, ``from cuts import select``)."""
    for value in list(vars(module).values()):
        try:
            name = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
        except Exception:  # noqa: BLE001 - an odd object's attribute access
            continue
        used = _user_module(name)
        if used is not None and used not in found:
            found.append(used)
            if depth > 1:
                _imported_user_modules(used, found, depth - 1)


def user_modules(obj: Any) -> list[Any]:
    """Modules defining ``obj``'s class hierarchy (or ``obj`` itself, for a function) that belong to no
    installed distribution: the user's own analysis files, and the user's modules those use (a helper
    next to the analysis). Remote workers cannot import those - or would import them once and keep
    serving that version after the file is edited, where a pool stays up between runs."""
    found: list[Any] = []
    owners = type(obj).__mro__ if not callable(obj) or not hasattr(obj, "__code__") else (obj,)
    for owner in owners:
        module = _user_module(getattr(owner, "__module__", None) or "")
        if module is not None and module not in found:
            found.append(module)
    for module in list(found):
        _imported_user_modules(module, found, depth=3)
    return found


def dump_processor(processor: Any, level: int | None = 1) -> bytes:
    """cloudpickle the processor. Classes defined in the user's own script or in a module of theirs that
    no installed distribution provides (``sys.path`` tricks, ``importlib`` from a path) travel by value,
    so remote workers need neither the file nor ``client.upload_file``."""
    modules = [m for m in user_modules(processor) if m.__name__ not in cloudpickle.list_registry_pickle_by_value()]
    for module in modules:
        cloudpickle.register_pickle_by_value(module)
    try:
        raw = cloudpickle.dumps(processor, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        for module in modules:
            cloudpickle.unregister_pickle_by_value(module)
    return raw if level is None else lz4.frame.compress(raw, compression_level=level)


def load_processor(blob: bytes) -> Any:
    if blob[:4] == _MAGIC:
        blob = lz4.frame.decompress(blob)
    return cloudpickle.loads(blob)
