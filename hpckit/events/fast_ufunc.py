"""A ufunc of flat numeric columns of hpckit's events, computed without awkward's broadcasting machinery.

``ak.num(muons) >= 2`` or ``a.charge != b.charge`` on 10-event chunks costs ~0.6 ms in awkward (named-axis
contexts, custom-cast lookups, ``broadcast_and_apply``) for ~2 us of numpy work. Where that machinery has
nothing to do - every array input a one-dimensional NumpyArray without parameters (or an IndexedArray of
one), of one length, on the CPU; the others plain scalars; no keyword arguments, no named axes, no cast
of the behaviour for an input's type - awkward's own path ends in the same call (its nplike's
``apply_ufunc``, NEP 50 dtype rules included) and wraps the result with the inputs' behaviour and merged
attrs: this does just that. Only arrays whose behaviour is hpckit's (events and what is computed from
them) take it; anything else goes awkward's way. ``tests/test_events_fast_ufunc.py`` checks both give
the same arrays.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

try:  # awkward's private helpers: an awkward that moved them keeps its own ufunc path (install does nothing)
    from awkward._attrs import attrs_of
    from awkward._namedaxis import NAMED_AXIS_KEY
except ImportError:  # pragma: no cover - depends on the awkward version
    attrs_of = NAMED_AXIS_KEY = None

_NUMERIC = frozenset("biufc")  # bool, signed, unsigned, float, complex
_SCALARS = (bool, int, float, complex)
_installed: type | None = None


def install(lazy_type: type) -> None:
    """Put the fast path in front of awkward's ``array_ufunc`` once, for arrays whose behaviour is a
    ``lazy_type`` (hpckit.events.behavior.Behavior)."""
    global _installed
    if _installed is not None:
        return
    import awkward._connect.numpy as ak_numpy

    slow = getattr(ak_numpy, "array_ufunc", None)
    if slow is None or attrs_of is None:  # awkward renamed them: keep awkward's path
        return
    _installed = lazy_type

    def array_ufunc(ufunc: Any, method: str, inputs: Any, kwargs: dict) -> Any:
        out = _fast(ufunc, method, inputs, kwargs)
        return slow(ufunc, method, inputs, kwargs) if out is None else out

    array_ufunc.__wrapped__ = slow  # type: ignore[attr-defined]
    ak_numpy.array_ufunc = array_ufunc


def _cast_types(behavior: Any) -> frozenset:
    """The types the behaviour casts (``("__cast__", type)`` entries: vector's numpy vectors), which awkward
    would apply to inputs of those types."""
    known = getattr(behavior, "_hpckit_cast_types", None)
    if known is None:
        known = frozenset(k[1] for k in dict.keys(behavior) if isinstance(k, tuple) and len(k) == 2
                          and k[0] == "__cast__")
        behavior._hpckit_cast_types = known
    return known


def _fast(ufunc: Any, method: str, inputs: Any, kwargs: dict) -> Any:
    if method != "__call__" or kwargs or getattr(ufunc, "nout", 1) != 1 or ufunc is np.matmul:
        return None
    behavior = layout0 = None
    args: list[Any] = []
    for x in inputs:
        if isinstance(x, ak.Array):
            layout = x._layout
            if type(layout) is ak.contents.IndexedArray and not layout._parameters \
                    and type(layout.content) is ak.contents.NumpyArray:
                layout = layout.project()  # a lazily carried column (``pairs[:, 0].charge``), as awkward would
            if type(layout) is not ak.contents.NumpyArray or layout._parameters or layout.backend.name != "cpu":
                return None
            data = layout._data
            if len(data.shape) != 1 or data.dtype.kind not in _NUMERIC:
                return None
            if layout0 is None:
                layout0, behavior = layout, x._behavior
                if not isinstance(behavior, _installed):
                    return None
            elif x._behavior is not behavior or data.shape[0] != layout0._data.shape[0]:
                return None  # awkward merges different behaviours, and does not broadcast length 1
            args.append(data)
        elif type(x) in _SCALARS or isinstance(x, (np.bool_, np.number)):
            args.append(x)
        else:
            return None
    if layout0 is None:
        return None
    attrs = attrs_of(*inputs)  # awkward's own merge of the inputs' attrs
    if attrs is not None and NAMED_AXIS_KEY in attrs:
        return None
    casts = _cast_types(behavior)
    if casts and any(c in casts for x in inputs for c in type(x).__mro__):
        return None
    result = layout0.backend.nplike.apply_ufunc(ufunc, method, args, kwargs)
    if isinstance(result, tuple):
        return None
    return ak.Array(ak.contents.NumpyArray(result, backend=layout0.backend), behavior=behavior, attrs=attrs)
