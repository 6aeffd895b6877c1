"""``NanoEventsFactory.from_root``: the Runner's lazy events for one file, for a notebook or a test."""

from __future__ import annotations

from typing import Any

from hpckit.events.factory import ChunkReader, NanoEventsArray, make_events
from hpckit.events.reader import open_tree
from hpckit.events.schema import BaseSchema, NanoAODSchema


def _file_and_tree(file: Any, treepath: str) -> tuple[str, str]:
    if isinstance(file, dict):  # coffea's {path: treepath}
        if len(file) != 1:
            raise ValueError(f"from_root takes one file, got {len(file)}: {list(file)}")
        ((path, tree),) = file.items()
        return str(path), str(tree or treepath)
    path = str(file)
    if ".root:" in path:  # "file.root:Events", uproot's spelling
        path, tree = path.rsplit(":", 1)
        return path, tree
    return path, treepath


class NanoEventsFactory:
    """coffea's spelling: ``NanoEventsFactory.from_root(file, schemaclass=NanoAODSchema).events()``.

    The events are the same lazy array the Runner hands a processor (columns read when touched);
    ``factory.columns`` lists the branches read so far.
    """

    def __init__(self, events: NanoEventsArray, reader: ChunkReader):
        self._events, self._reader = events, reader

    @classmethod
    def from_root(
        cls,
        file: Any,
        treepath: str = "Events",
        entry_start: int | None = None,
        entry_stop: int | None = None,
        schemaclass: type[BaseSchema] = NanoAODSchema,
        metadata: dict | None = None,
        uproot_options: dict | None = None,
        mode: str = "virtual",
        **ignored: Any,
    ) -> "NanoEventsFactory":
        if mode not in ("virtual", "eager"):
            raise ValueError(f"hpckit's events are lazy (mode='virtual'); mode={mode!r} is coffea-only (dask)")
        path, tree_name = _file_and_tree(file, treepath.lstrip("/"))
        tree = open_tree(path, tree_name, uproot_options)
        n = tree.num_entries
        start = 0 if entry_start is None else max(0, min(int(entry_start), n))
        stop = n if entry_stop is None else max(start, min(int(entry_stop), n))
        meta = {"filename": path, "treename": tree_name, "entrystart": start, "entrystop": stop,
                "fileuuid": tree.uuid, **(metadata or {})}
        events, reader = make_events(tree, start, stop, schemaclass, meta)
        return cls(events, reader)

    def events(self) -> NanoEventsArray:
        return self._events

    @property
    def columns(self) -> set[str]:
        """Branches read so far."""
        return set(self._reader.columns)
