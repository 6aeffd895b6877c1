"""Build a chunk's events as an awkward array of virtual buffers: a column is read when first touched."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np
import vector.backends.awkward as vba

from hpckit.events.reader import OpenTree
from hpckit.events.schema import BaseSchema, BufferSource, has_vector_fields


class _LazySource:
    """Form + buffer loaders of one chunk; builds one top-level field at a time."""

    def __init__(self, form, length, container, behavior, attrs):
        self.form, self.length, self.container = form, length, container
        self.behavior, self.attrs = behavior, attrs
        self.fields = form.fields

    def field(self, name: str) -> ak.Array:
        return ak.from_buffers(
            self.form.content(name), self.length, self.container, behavior=self.behavior, attrs=self.attrs
        )

    def full(self) -> ak.contents.Content:
        return ak.from_buffers(
            self.form, self.length, self.container, behavior=self.behavior, attrs=self.attrs, highlevel=False
        )


def _row_selection(where: Any, length: int) -> Any:
    """A selection of whole events (slice, 1-D bool mask, 1-D indices) as numpy, or None if not one."""
    if isinstance(where, slice):
        return where
    if isinstance(where, ak.Array):
        if where.ndim != 1 or "?" in str(where.type.content):
            return None
        try:
            where = ak.to_numpy(where)
        except Exception:  # noqa: BLE001
            return None
    if isinstance(where, np.ndarray) and where.ndim == 1:
        if where.dtype == np.bool_ and len(where) == length:
            return where
        if np.issubdtype(where.dtype, np.integer):
            return where
    return None


def _selected_length(sel: Any, length: int) -> int:
    if isinstance(sel, slice):
        return len(range(*sel.indices(length)))
    if sel.dtype == np.bool_:
        return int(np.count_nonzero(sel))
    return len(sel)


class NanoEventsArray(ak.Array):
    """The events of one chunk; ``events.metadata`` holds dataset, file, entry range and user metadata.

    Made by :func:`make_events` it is lazy at the top level too: ``events.Muon`` builds only the Muon
    collection, and ``events[mask]`` keeps that laziness, so the cost of a chunk does not grow with the
    thousands of branches of real NanoAOD. Anything else (``ak.zip(events...)``, ``events["x"] = ...``,
    printing) builds the whole array once, lazily in its columns, and behaves as a plain ``ak.Array``.
    """

    @property
    def metadata(self) -> dict:
        return self.attrs.get("metadata", {})

    # -- laziness at the top level ------------------------------------------------------------------
    @classmethod
    def _lazy(cls, source: _LazySource, parent: "NanoEventsArray | None" = None, sel: Any = None):
        self = object.__new__(cls)
        d = self.__dict__
        d.update(_source=source, _parent=parent, _sel=sel, _fields_cache={}, _numbaview=None)
        d["_behavior"] = source.behavior
        d["_attrs"] = ak._attrs.Attrs(source.attrs) if hasattr(ak, "_attrs") else source.attrs
        d["_length"] = source.length if parent is None else _selected_length(sel, len(parent))
        return self

    def _is_lazy(self) -> bool:
        d = self.__dict__
        return "_source" in d and "_concrete" not in d

    @property
    def _layout(self):
        d = self.__dict__
        layout = d.get("_concrete")
        if layout is None and "_source" not in d:  # made by ak.Array(): class switched after __init__
            return d["_layout"]
        if layout is None:
            parent = d["_parent"]
            if parent is None:
                layout = d["_source"].full()
            else:
                whole = ak.Array(parent._layout, behavior=d["_behavior"], attrs=d["_source"].attrs)
                layout = whole[d["_sel"]].layout
            d["_concrete"] = layout
        return layout

    @_layout.setter
    def _layout(self, layout) -> None:
        self.__dict__["_concrete"] = layout

    def _field(self, name: str) -> ak.Array:
        d = self.__dict__
        cache = d["_fields_cache"]
        arr = cache.get(name)
        if arr is None:
            parent = d["_parent"]
            arr = d["_source"].field(name) if parent is None else parent._field(name)[d["_sel"]]
            cache[name] = arr
        return arr

    def __len__(self) -> int:
        return self.__dict__["_length"] if self._is_lazy() else super().__len__()

    @property
    def fields(self) -> list[str]:
        return list(self.__dict__["_source"].fields) if self._is_lazy() else super().fields

    def __getattr__(self, where: str):
        if where.startswith("_"):
            raise AttributeError(where)
        if self._is_lazy() and where in self.__dict__["_source"].fields:
            return self._field(where)
        return super().__getattr__(where)

    def __getitem__(self, where):
        if self._is_lazy():
            if isinstance(where, str) and where in self.__dict__["_source"].fields:
                return self._field(where)
            sel = _row_selection(where, len(self))
            if sel is not None:
                return NanoEventsArray._lazy(self.__dict__["_source"], self, sel)
        return super().__getitem__(where)


class _Buffers(Mapping):
    """Buffer loaders made on demand: a chunk of a 2,600-branch file touches only a few."""

    def __init__(self, reader: "ChunkReader", sources: dict[str, BufferSource]):
        self.reader, self.sources = reader, sources

    def __getitem__(self, key: str):
        return functools.partial(self.reader.buffer, self.sources[key])

    def __iter__(self):
        return iter(self.sources)

    def __len__(self) -> int:
        return len(self.sources)


class ChunkReader:
    """Reads the branches of one chunk on demand and remembers which ones it read."""

    def __init__(self, tree: OpenTree, start: int, stop: int):
        self.tree, self.start, self.stop = tree, start, stop
        self.columns: set[str] = set()
        self._arrays: dict[str, Any] = {}

    def _array(self, branch: str) -> Any:
        arr = self._arrays.get(branch)
        if arr is None:
            arr = self.tree.read(branch, self.start, self.stop)
            self._arrays[branch] = arr
            self.columns.add(branch)
        return arr

    def buffer(self, source: BufferSource) -> np.ndarray:
        arr = self._array(source.branch)
        if source.part == "counts":
            counts = np.asarray(arr, dtype=np.int64)
            offsets = np.empty(len(counts) + 1, dtype=np.int64)
            offsets[0] = 0
            np.cumsum(counts, out=offsets[1:])
            return offsets
        if isinstance(arr, np.ndarray):  # flat branch
            return arr
        layout = ak.to_layout(arr)
        offsets = np.asarray(layout.offsets)
        if source.part == "offsets":
            return offsets - offsets[0]
        return np.asarray(layout.content.data)[offsets[0] : offsets[-1]]


class _CoffeaNames:
    """coffea's spellings of what ``vector`` already computes."""

    def delta_r(self, other):
        return self.deltaR(other)

    def delta_phi(self, other):
        return self.deltaphi(other)

    def delta_eta(self, other):
        return self.deltaeta(other)


@functools.lru_cache(maxsize=64)
def _behavior(vector_names: frozenset[str]) -> dict:
    behavior: dict = dict(vba.behavior)
    for name in vector_names:
        behavior.update(ak._util.copy_behaviors("Momentum4D", name, vba.behavior))
        behavior[name] = type(name, (_CoffeaNames, vba.MomentumRecord4D), {})
        behavior["*", name] = type(f"{name}Array", (_CoffeaNames, vba.MomentumArray4D), {})
    behavior["*", "NanoEvents"] = NanoEventsArray
    return behavior


def _plan(tree: OpenTree, schema: type[BaseSchema]):
    cached = tree.forms.get(schema)
    if cached is None:
        form, sources = schema.plan(tree.branches)
        vector_names = frozenset(
            f.parameters["__record__"]
            for f in _record_forms(form)
            if f.parameters.get("collection_name") and has_vector_fields(f)
        )
        cached = tree.forms[schema] = (form, sources, vector_names)
    return cached


def _record_forms(form: ak.forms.RecordForm):
    for content in form.contents:
        inner = content.content if isinstance(content, ak.forms.ListOffsetForm) else content
        if isinstance(inner, ak.forms.RecordForm):
            yield inner


def make_events(
    tree: OpenTree, start: int, stop: int, schema: type[BaseSchema], metadata: dict
) -> tuple[NanoEventsArray, ChunkReader]:
    """Events for entries [start, stop) of ``tree``; the reader records the branches actually read."""
    form, sources, vector_names = _plan(tree, schema)
    reader = ChunkReader(tree, start, stop)
    source = _LazySource(form, stop - start, _Buffers(reader, sources), _behavior(vector_names), {"metadata": metadata})
    return NanoEventsArray._lazy(source), reader
