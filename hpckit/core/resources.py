"""Locate the data directories (sites/, templates/, containers/) shipped with hpckit.

In a wheel they live in ``hpckit/_data/``; in a source checkout (editable install) they are the
top-level folders of the repository.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_KINDS = ("sites", "templates", "containers")


def data_dir(kind: str) -> Path:
    """Return the directory holding the shipped ``kind`` (one of sites, templates, containers)."""
    if kind not in _KINDS:
        raise ValueError(f"unknown data kind {kind!r}; expected one of {_KINDS}")
    packaged = Path(str(resources.files("hpckit"))) / "_data" / kind
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / kind  # hpckit/core/ -> the checkout
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"hpckit data directory {kind!r} not found (looked in {packaged} and {checkout})")
