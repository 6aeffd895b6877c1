"""Build a chunk's events as an awkward array of virtual buffers: a column is read when first touched."""

from __future__ import annotations

import functools
from typing import Any

import awkward as ak
import numpy as np

from hpckit.events.reader import OpenTree
from hpckit.events.schema import BaseSchema, BufferSource, has_vector_fields


class NanoEventsArray(ak.Array):
    """The events of one chunk; ``events.metadata`` holds dataset, file, entry range and user metadata."""

    @property
    def metadata(self) -> dict:
        return self.attrs.get("metadata", {})


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


@functools.lru_cache(maxsize=64)
def _behavior(vector_names: frozenset[str]) -> dict:
    import vector
    import vector.backends.awkward as vba

    vector.register_awkward()
    behavior: dict = dict(vba.behavior)
    for name in vector_names:
        behavior.update(ak._util.copy_behaviors("Momentum4D", name, vba.behavior))
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
    container = {key: functools.partial(reader.buffer, src) for key, src in sources.items()}
    events = ak.from_buffers(
        form,
        stop - start,
        container,
        behavior=_behavior(vector_names),
        attrs={"metadata": metadata},
    )
    return events, reader
