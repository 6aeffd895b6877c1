"""Build a chunk's events as an awkward array of virtual buffers: a column is read when first touched."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np

from hpckit.events import crossref, layout as fast_layout
from hpckit.events.behavior import Behavior, CoffeaMethodMissing, build_behavior
from hpckit.events.plan import BufferSource
from hpckit.events.reader import OpenTree
from hpckit.events.schema import BaseSchema, record_kind


class _LazySource:
    """Form + buffer loaders of one chunk; builds one top-level field at a time."""

    def __init__(self, form, length, container, behavior, attrs):
        self.form, self.length, self.container = form, length, container
        self.behavior, self.attrs = behavior, attrs
        self.fields = form.fields
        self._layouts: dict[str, ak.contents.Content] = {}  # built once: events.Jet and matched_jet share it
        self._contents: dict[str, ak.contents.Content] = {}

    def field(self, name: str) -> ak.Array:
        layout = self._layouts.get(name)
        if layout is None:
            form = self.form.content(name)
            layout = fast_layout.build(form, self.length, self.container)
            if layout is None:
                layout = ak.from_buffers(form, self.length, self.container, highlevel=False)
            self._layouts[name] = layout
        return ak.Array(layout, behavior=self.behavior, attrs=self.attrs)

    def collection_content(self, name: str) -> ak.contents.Content:
        """The records of collection ``name`` of the whole chunk, flat: what global indices point into."""
        content = self._contents.get(name)
        if content is None:
            if name not in self.fields:
                raise CoffeaMethodMissing(f"this file has no collection {name!r} (no n{name} / {name}_* branches)")
            self.field(name)
            layout = self._layouts[name]
            while isinstance(layout, (ak.contents.IndexedOptionArray, ak.contents.IndexedArray)):
                layout = layout.content
            if not isinstance(layout, ak.contents.ListOffsetArray):
                raise TypeError(f"{name} is not a collection (a list of records per event)")
            content = self._contents[name] = layout.content
        return content

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
        self.derived: dict[tuple, np.ndarray] = {}  # crossref's computed buffers
        self.on_read: Any = None  # called (branch, buffer key) per buffer loaded: coffea's access_log

    def _array(self, branch: str) -> Any:
        arr = self._arrays.get(branch)
        if arr is None:
            arr = self.tree.read(branch, self.start, self.stop)
            self._arrays[branch] = arr
            self.columns.add(branch)
        return arr

    def counter_offsets(self, branch: str) -> np.ndarray:
        """Offsets made from the ``nX`` counter ``branch``."""
        key = (branch, "counts", ())
        offsets = self.derived.get(key)
        if offsets is None:
            counts = np.asarray(self._array(branch), dtype=np.int64)
            offsets = np.empty(len(counts) + 1, dtype=np.int64)
            offsets[0] = 0
            np.cumsum(counts, out=offsets[1:])
            self.derived[key] = offsets
        return offsets

    def jagged(self, branch: str) -> tuple[np.ndarray, np.ndarray]:
        """(offsets from 0, values) of a jagged branch."""
        layout = self._array(branch)  # a layout, as OpenTree.read cuts it, or an awkward array
        if not isinstance(layout, ak.contents.Content):
            layout = ak.to_layout(layout)
        offsets = np.asarray(layout.offsets, dtype=np.int64)  # Parquet's plain lists have int32 offsets
        return offsets - offsets[0], np.asarray(layout.content.data)[offsets[0] : offsets[-1]]

    def buffer(self, source: BufferSource) -> np.ndarray:
        if self.on_read is not None:  # one entry per buffer loaded, as coffea's access_log
            self.on_read(source.branch, f"{source.branch}-{source.part}")
        if source.part == "counts":
            return self.counter_offsets(source.branch)
        if source.part not in ("data", "offsets"):
            return crossref.derive(self, source)
        arr = self._array(source.branch)
        if isinstance(arr, np.ndarray):  # flat branch
            return arr
        offsets, values = self.jagged(source.branch)
        return offsets if source.part == "offsets" else values


@functools.lru_cache(maxsize=64)
def _behavior(vector_names: frozenset[tuple[str, str]]) -> Behavior:
    behavior = Behavior(build_behavior(vector_names), (__name__, "_behavior", vector_names))
    behavior["*", "NanoEvents"] = NanoEventsArray
    return behavior


def _plan(tree: OpenTree, schema: type[BaseSchema]):
    cached = tree.forms.get(schema)
    if cached is None:
        form, sources = schema.plan(tree.branches)
        vector_names = frozenset(
            (f.parameters["__record__"], record_kind(f))
            for f in _record_forms(form)
            if f.parameters.get("collection_name")
        )
        cached = tree.forms[schema] = (form, sources, vector_names)
    return cached


def _record_forms(form: ak.forms.RecordForm):
    for content in form.contents:
        inner = content.content if isinstance(content, ak.forms.ListOffsetForm) else content
        if isinstance(inner, ak.forms.RecordForm):
            yield inner


def release(events: Any) -> None:
    """Drop the chunk's link from its arrays' attrs back to its source once ``process`` is done: the link
    makes a cycle, so without this every chunk's layouts and buffers (~1,000 objects on a NanoAOD v15
    chunk) waited for the cyclic garbage collector instead of being freed on the spot. Cross-references
    of arrays kept past the chunk stop working; nothing else does."""
    source = getattr(events, "__dict__", {}).get("_source")
    if isinstance(source, _LazySource):
        source.attrs.pop("@events", None)


def make_events(
    tree: OpenTree, start: int, stop: int, schema: type[BaseSchema], metadata: dict
) -> tuple[NanoEventsArray, ChunkReader]:
    """Events for entries [start, stop) of ``tree``; the reader records the branches actually read."""
    form, sources, vector_names = _plan(tree, schema)
    reader = ChunkReader(tree, start, stop)
    attrs: dict = {"metadata": metadata}
    source = _LazySource(form, stop - start, _Buffers(reader, sources), _behavior(vector_names), attrs)
    attrs["@events"] = source  # how cross-references find their target collections ("@": never pickled)
    return NanoEventsArray._lazy(source), reader
