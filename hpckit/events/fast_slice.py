"""The slices every analysis makes of hpckit's events, computed without awkward's generic slicing.

``two.Muon[:, :2]``, ``leading[:, 0]``, ``muons[mask]`` and ``pairs.charge`` cost 0.3-1 ms each in
awkward on a 10-event chunk (normalising the slice, named-axis bookkeeping that walks every field of an
80-field collection, broadcasting of advanced indices), for microseconds of numpy work: together about
half of a small analysis' per-chunk cost on NanoAOD. For the few shapes that machinery has nothing to
do with - a field name; one 1-D boolean or integer selection of whole entries; ``[:, i]`` or
``[:, start:stop]`` of a list, with in-range non-negative bounds - awkward itself ends in its layouts'
own ``_getitem_field`` / ``_carry``: this calls those and builds the same layout awkward builds (same
nodes, same parameters, lazy record carries). Only arrays whose behaviour is hpckit's take it; any other
slice, array, backend, named axis, or an index out of range (awkward's error message) goes awkward's way.
``tests/test_events_fast_slice.py`` compares both on every shape.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

try:  # awkward's private pieces: an awkward that moved them keeps its own slicing (install does nothing)
    from awkward._backends.numpy import NumpyBackend
    from awkward._namedaxis import NAMED_AXIS_KEY
    from awkward._nplikes.virtual import VirtualNDArray
    from awkward.highlevel import wrap_layout

    _CPU = NumpyBackend.instance()
except ImportError:  # pragma: no cover - depends on the awkward version
    _CPU = None

_NUMPY, LISTOFFSET, LIST = ak.contents.NumpyArray, ak.contents.ListOffsetArray, ak.contents.ListArray
_INTS = (int, np.integer)
_installed: type | None = None


def install(lazy_type: type) -> None:
    """Put the fast path in front of ``ak.Array.__getitem__`` once, for arrays whose behaviour is a
    ``lazy_type`` (hpckit.events.behavior.Behavior)."""
    global _installed
    if _installed is not None or _CPU is None:
        return
    _installed = lazy_type
    slow = ak.Array.__getitem__

    def __getitem__(self, where):
        out = _fast(self, where) if isinstance(self._behavior, _installed) else None
        return slow(self, where) if out is None else out

    __getitem__.__wrapped__ = slow  # type: ignore[attr-defined]
    __getitem__.__doc__ = slow.__doc__
    ak.Array.__getitem__ = __getitem__


def _numpy(buffer: Any) -> np.ndarray:
    return buffer.materialize() if type(buffer) is VirtualNDArray else buffer


def plain(array: ak.Array) -> bool:
    """On the CPU and without named axes: nothing for awkward's machinery to carry along."""
    attrs = array._attrs
    return _CPU is not None and array._layout._backend is _CPU and (attrs is None or NAMED_AXIS_KEY not in attrs)


def wrap(layout: Any, like: ak.Array) -> ak.Array:
    """``layout`` as awkward wraps a result of ``like``: its behaviour and attrs, the class they name."""
    return wrap_layout(layout, behavior=like._behavior, attrs=like._attrs, allow_other=True)


def bounds(layout: Any) -> tuple[np.ndarray, np.ndarray]:
    if type(layout) is LISTOFFSET:
        offsets = _numpy(layout._offsets._data)
        return offsets[:-1], offsets[1:]
    return _numpy(layout._starts._data), _numpy(layout._stops._data)


def _index64(values: np.ndarray) -> ak.index.Index64:
    return ak.index.Index64(np.asarray(values, dtype=np.int64))


def _rows(layout: Any, where: Any) -> Any:
    """``layout[where]`` for a 1-D boolean mask or integer index of whole entries, else None."""
    if isinstance(where, ak.Array):
        inner = where._layout
        if type(inner) is not _NUMPY or inner._parameters or inner._backend is not _CPU:
            return None
        where = _numpy(inner._data)
    elif not isinstance(where, np.ndarray):
        return None
    if where.ndim != 1:
        return None
    n = layout.length
    if where.dtype == np.bool_:
        if len(where) != n:
            return None
        carry = np.flatnonzero(where)
    elif where.dtype.kind in "iu":
        carry = where.astype(np.int64)
        if len(carry) and carry.min() < 0:
            carry = np.where(carry < 0, carry + n, carry)
        if len(carry) and (carry.min() < 0 or carry.max() >= n):
            return None
    else:
        return None
    return layout._carry(_index64(carry), True)


def _inner(layout: Any, item: Any) -> Any:
    """``layout[:, item]`` for a list layout and an int or a non-negative ``start:stop``, else None."""
    if type(layout) is not LISTOFFSET and type(layout) is not LIST:
        return None
    starts, stops = bounds(layout)
    if isinstance(item, _INTS) and not isinstance(item, (bool, np.bool_)):
        i = int(item)
        carry = starts + i if i >= 0 else stops + i
        if len(carry) and ((carry < starts) | (carry >= stops)).any():
            return None  # awkward says which entry is out of range
        return layout._content._carry(_index64(carry), True)
    if type(item) is slice and item.step in (None, 1):
        a, b = item.start or 0, item.stop
        if not isinstance(a, _INTS) or a < 0 or not (b is None or isinstance(b, _INTS) and b >= 0):
            return None
        first = np.minimum(starts + a, stops)
        last = stops if b is None else np.maximum(np.minimum(starts + b, stops), first)
        counts = last - first
        offsets = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        carry = np.repeat(first - offsets[:-1], counts) + np.arange(offsets[-1], dtype=np.int64)
        content = layout._content._carry(_index64(carry), True)
        return LISTOFFSET(_index64(offsets), content, parameters=layout._parameters)
    return None


def _fast(array: ak.Array, where: Any) -> ak.Array | None:
    if not plain(array):
        return None
    layout = array._layout
    if type(where) is str:
        if where not in layout.fields:
            return None
        out = layout._getitem_field(where)
        if type(out) is _NUMPY and out.parameter("__array__") in ("byte", "char"):
            return None  # awkward turns those into bytes/str
    elif type(where) is tuple and len(where) == 2 and type(where[0]) is slice and where[0] == slice(None):
        out = _inner(layout, where[1])
    else:
        out = _rows(layout, where)
    if out is None:
        return None
    return wrap(out, array)
