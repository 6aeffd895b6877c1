"""How one buffer of a chunk's events is made: from which branch, and which part of it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BufferSource:
    """``part``: ``data`` (the values), ``offsets`` (of a jagged branch), ``counts`` (offsets from an ``nX``
    counter), or a derived buffer computed by :mod:`hpckit.events.crossref` (``global``, ``zeros``, ...)."""

    branch: str
    part: str
    args: tuple = ()
