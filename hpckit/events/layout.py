"""A chunk's virtual layout for the forms hpckit's schemas make, built without ``ak.from_buffers``' generic walk.

``ak.from_buffers`` validates every node and wraps every buffer in several closures: ~50 us a field, so
touching a NanoAOD collection of 80 fields (``events.Muon``) cost ~4 ms per chunk before a byte was read,
half of a small analysis' per-chunk cost. hpckit's schemas make only three kinds of nodes (numbers, lists
of offsets, records); this builds exactly the layout ``ak.from_buffers`` gives for them (same nodes, same
virtual buffers under the same keys, read on first touch), setting the nodes' fields directly: the forms
are hpckit's own, already valid. Any other form, or an awkward whose nodes are laid out differently, gets
``None`` and the caller uses ``ak.from_buffers`` (tests/test_events_layout.py compares the two).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import awkward as ak
import numpy as np

try:
    from awkward._backends.numpy import NumpyBackend
    from awkward._nplikes.numpy import Numpy
    from awkward._nplikes.shape import unknown_length
    from awkward._nplikes.virtual import VirtualNDArray

    _NPLIKE, _BACKEND = Numpy.instance(), NumpyBackend.instance()
except ImportError:  # an awkward without virtual buffers: ak.from_buffers does it all
    _NPLIKE = None

_NUMPY, _LIST, _RECORD = ak.contents.NumpyArray, ak.contents.ListOffsetArray, ak.contents.RecordArray


class _Unsupported(Exception):
    pass


def build(form: ak.forms.Form, length: int, container: Mapping[str, Callable[[], Any]]) -> ak.contents.Content | None:
    """The layout of ``form`` for ``length`` entries whose buffers ``container[key]()`` loads, or None."""
    if _NPLIKE is None:
        return None
    try:
        return _node(form, length, None, container)
    except _Unsupported:
        return None


def _node(form: ak.forms.Form, length: Any, length_of: Callable[[], int] | None, container: Mapping) -> ak.contents.Content:
    """``length`` is an int, or unknown (the content of a list) with ``length_of()`` giving it once read."""
    if type(form) is ak.forms.NumpyForm and not form.inner_shape:
        out = _NUMPY.__new__(_NUMPY)
        out._data = _virtual(container, f"{form.form_key}-data", ak.types.numpytype.primitive_to_dtype(form.primitive),
                              length, length_of)
    elif type(form) is ak.forms.ListOffsetForm and form.offsets == "i64":
        if length is unknown_length:
            offsets_length, outer = unknown_length, (lambda: length_of() + 1)
        else:
            offsets_length, outer = length + 1, None
        data = _virtual(container, f"{form.form_key}-offsets", np.dtype(np.int64), offsets_length, outer)
        index = ak.index.Index64.__new__(ak.index.Index64)
        index._nplike, index._metadata, index._data = _NPLIKE, None, data
        inner = _Last(data)
        out = _LIST.__new__(_LIST)
        out._offsets, out._content = index, _node(form.content, unknown_length, inner, container)
    elif type(form) is ak.forms.RecordForm and not form.is_tuple:
        out = _RECORD.__new__(_RECORD)
        out._contents = [_node(c, length, length_of, container) for c in form.contents]
        out._fields = list(form.fields)
        out._length, out._length_generator = length, length_of
    else:
        raise _Unsupported
    out._parameters, out._backend = form._parameters, _BACKEND
    return out


class _Last:
    """The length of a list's content: the last offset, read once."""

    def __init__(self, offsets: Any):
        self.offsets, self.value = offsets, None

    def __call__(self) -> int:
        if self.value is None:
            self.value = int(self.offsets.materialize()[-1])
        return self.value


class _Load:
    """A buffer's loader, as ak.from_buffers makes it: ``container[key]()`` as ``dtype``, cut to its length."""

    __slots__ = ("dtype", "length", "length_of", "load")

    def __init__(self, load: Callable[[], Any], dtype: np.dtype, length: Any, length_of: Callable[[], int] | None):
        self.load, self.dtype, self.length, self.length_of = load, dtype, length, length_of

    def __call__(self) -> np.ndarray:
        array = np.asarray(self.load(), dtype=self.dtype).reshape(-1)
        n = self.length_of() if self.length is unknown_length else self.length
        if array.size < n:
            raise TypeError(f"size of array ({array.size}) is less than size of form ({n})")
        return array[:n]


def _virtual(container: Mapping, key: str, dtype: np.dtype, length: Any, length_of: Callable[[], int] | None) -> Any:
    shape = None if length_of is None else (lambda: (length_of(),))
    return VirtualNDArray(_NPLIKE, (length,), dtype, _Load(container[key], dtype, length, length_of),
                          shape, key)
