"""The input formats, one module each (``ttree``, ``rntuple``, ``parquet``), and the one registry every
reader, the Runner and the messages read.

Each module defines an :class:`~hpckit.events.formats.base.InputFormat` as ``FORMAT`` with the
:class:`~hpckit.events.opentree.OpenTree` subclass that reads it; schemas, lazy events, chunking, metrics
and checkpoints are the same for all. Adding a format is one file here.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from hpckit.core.errors import NotATreeError
from hpckit.events.formats.base import InputFormat
from hpckit.events.opentree import OpenTree

_NOT_FORMATS = {"base", "rootfile"}


def _discover() -> dict[str, InputFormat]:
    found = [importlib.import_module(f"{__name__}.{m.name}").FORMAT
             for m in pkgutil.iter_modules(__path__) if m.name not in _NOT_FORMATS and not m.name.startswith("_")]
    # ROOT's own first (TTree before RNTuple), then the others, by name
    return {f.name: f for f in sorted(found, key=lambda f: (f.option != "root", f.name != "TTree", f.name))}


FORMATS: dict[str, InputFormat] = _discover()
OPTIONS: tuple[str, ...] = tuple(dict.fromkeys(f.option for f in FORMATS.values()))  # the Runner's format=


def file_format(filename: str, option: str = "root") -> InputFormat | None:
    """The format that opens ``filename`` itself (Parquet), or None: a ROOT file, opened by uproot."""
    for fmt in FORMATS.values():
        if fmt.claims_file(filename, option):
            return fmt
    return None


def is_parquet(filename: str, format: str = "root") -> bool:
    """Parquet when the Runner says so (coffea's ``format="parquet"``) or the name ends in .parquet."""
    fmt = file_format(filename, format)
    return fmt is not None and fmt.name == "Parquet"


def wrap_object(filename: str, treename: str, file: Any, obj: Any) -> OpenTree:
    """The ``OpenTree`` for the object ``file[treename]`` of a ROOT file (a TTree or an RNTuple); anything
    else is a file error naming what the object is (``skipbadfiles`` skips it)."""
    classname = getattr(obj, "classname", type(obj).__name__)
    for fmt in FORMATS.values():
        if fmt.root_classes and fmt.claims_object(classname):
            return fmt.tree_class(filename, treename, file, obj, str(file.file.uuid), int(obj.num_entries))
    kinds = " nor ".join(f.called for f in FORMATS.values() if f.root_classes)
    raise NotATreeError(f"{treename!r} in {filename} is a {classname}, neither {kinds}", filename)


def open_parquet(*args: Any, **kwargs: Any) -> OpenTree:
    """:func:`hpckit.events.formats.parquet.open_parquet` (pyarrow is imported only when called)."""
    return FORMATS["Parquet"].open(*args, **kwargs)


__all__ = ["FORMATS", "OPTIONS", "InputFormat", "file_format", "is_parquet", "open_parquet", "wrap_object"]
