"""Results crossing a process boundary: pickle, framed with LZ4 at a chosen level (or raw)."""

from __future__ import annotations

import pickle
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


def dump_processor(processor: Any, level: int | None = 1) -> bytes:
    """cloudpickle the processor so classes defined in the user's own script travel by value."""
    raw = cloudpickle.dumps(processor, protocol=pickle.HIGHEST_PROTOCOL)
    return raw if level is None else lz4.frame.compress(raw, compression_level=level)


def load_processor(blob: bytes) -> Any:
    if blob[:4] == _MAGIC:
        blob = lz4.frame.decompress(blob)
    return cloudpickle.loads(blob)
