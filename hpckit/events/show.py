"""Printing lazy events shows their values, as coffea's eager NanoEvents do, not awkward's ``[??, ??]``.

awkward prints ``??`` for a buffer not read yet. For arrays made from hpckit's events (they carry the
``@events`` attr), ``str``/``repr``/``show`` instead read exactly the buffers of the values printed: the
offsets and columns of the elements and fields that fit on the screen, nothing more (``print(events)``
reads the few branches its first and last records show, not the file's thousands). Other arrays print
as awkward prints them.

This wraps four names of ``awkward.prettyprint`` (and its two imports in ``awkward.highlevel``); on an
awkward without them nothing is changed and printing shows ``??`` as before.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_showing = threading.local()


def _is_hpckit(data: Any) -> bool:
    attrs = getattr(data, "_attrs", None) or {}
    try:
        return "@events" in attrs
    except TypeError:
        return False


def _read_path(layout: Any) -> None:
    """Read the buffers awkward needs to take one element of ``layout``: its offsets, index or mask, down
    through list and option nodes to a column or a record (whose fields are read one by one, when shown)."""
    node = layout
    while node is not None and type(node).__name__ not in ("RecordArray", "UnionArray"):
        for name in ("_offsets", "_starts", "_stops", "_index", "_mask"):
            index = getattr(node, name, None)
            _materialize(getattr(index, "data", None))
        _materialize(getattr(node, "_data", None))
        node = getattr(node, "_content", None)


def _materialize(buffer: Any) -> None:
    if buffer is not None and hasattr(buffer, "is_materialized") and not buffer.is_materialized:
        buffer.materialize()


def _entry(fn: Any) -> Any:
    """A top-level printing function: values are read while it prints an array made from hpckit's events."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        data = args[0] if args else kwargs.get("array", kwargs.get("data"))
        if getattr(_showing, "on", False) or not _is_hpckit(data):
            return fn(*args, **kwargs)
        _showing.on = True
        try:
            return fn(*args, **kwargs)
        finally:
            _showing.on = False

    wrapped.__hpckit_show__ = True
    return wrapped


def install() -> bool:
    """Wrap awkward's printing once; False when this awkward lacks the pieces (nothing changed)."""
    try:
        import awkward.highlevel as highlevel
        import awkward.prettyprint as pp
    except ImportError:
        return False
    names = ("get_at", "get_field", "valuestr", "highlevel_array_show_rows")
    if not all(callable(getattr(pp, n, None)) for n in names):
        return False
    if getattr(pp.valuestr, "__hpckit_show__", False):
        return True
    get_at, get_field = pp.get_at, pp.get_field

    def get_at_reading(data: Any, index: int) -> Any:
        if getattr(_showing, "on", False):
            _read_path(data._layout)
        return get_at(data, index)

    def get_field_reading(data: Any, field: str) -> Any:
        if getattr(_showing, "on", False):
            record = data._layout
            array = getattr(record, "_array", None)
            if array is not None and hasattr(array, "content"):
                _read_path(array.content(field))
        return get_field(data, field)

    pp.get_at, pp.get_field = get_at_reading, get_field_reading
    pp.valuestr = _entry(pp.valuestr)
    pp.highlevel_array_show_rows = _entry(pp.highlevel_array_show_rows)
    if hasattr(highlevel, "prettyprint_valuestr"):
        highlevel.prettyprint_valuestr = pp.valuestr
    if hasattr(highlevel, "highlevel_array_show_rows"):
        highlevel.highlevel_array_show_rows = pp.highlevel_array_show_rows
    return True
