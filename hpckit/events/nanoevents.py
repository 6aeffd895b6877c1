"""``NanoEventsFactory.from_root`` / ``from_parquet``: the Runner's lazy events for one file, for a notebook
or a test, with coffea's factory spellings (``mode``, ``access_log``, ``file_handle``, pickling)."""

from __future__ import annotations

import os
import warnings
from typing import Any, NamedTuple

import awkward as ak

from hpckit.events import formats
from hpckit.events.factory import ChunkReader, NanoEventsArray, make_events
from hpckit.events.reader import OpenTree, open_tree
from hpckit.events.schema import BaseSchema, NanoAODSchema

_MODES = ("virtual", "eager")


class Accessed(NamedTuple):
    """One entry of ``access_log``: a buffer loaded and the branch it came from (as coffea's)."""

    branch: str
    buffer_key: str


def _file_and_tree(file: Any, treepath: str) -> tuple[str, str, Any]:
    """(path, tree name, the handle the caller passed, if any) of coffea's spellings of a file."""
    if isinstance(file, dict):  # coffea's {path: treepath}
        if len(file) != 1:
            raise ValueError(f"from_root takes one file, got {len(file)}: {list(file)}")
        ((path, tree),) = file.items()
        return str(path), str(tree or treepath), None
    handle = getattr(file, "file", None)
    if handle is not None and hasattr(handle, "file_path"):  # an open uproot directory or tree
        tree = treepath
        if hasattr(file, "num_entries"):  # the tree itself: its path inside the file
            tree = str(getattr(file, "object_path", "") or treepath).lstrip("/").split(";")[0]
        return str(handle.file_path), tree, file
    path = str(file)
    if ".root:" in path:  # "file.root:Events", uproot's spelling
        path, tree = path.rsplit(":", 1)
        return path, tree, None
    return path, treepath, None


def _check_event_ids(tree: OpenTree, schema: type[BaseSchema]) -> None:
    """coffea's NanoAOD check that run, luminosityBlock and event are there (an error, or a warning when
    ``schema.error_missing_event_ids`` is False)."""
    wanted = getattr(schema, "event_ids", None)
    if not wanted:
        return
    missing = [name for name in wanted if name not in tree.branches]
    if not missing:
        return
    if getattr(schema, "error_missing_event_ids", True):
        raise RuntimeError(
            f"There are missing event ID fields: {missing} in {tree.filename}. The event ID fields {wanted} "
            f"identify events across files; this error can be demoted to a warning by setting "
            f"{schema.__name__}.error_missing_event_ids = False."
        )
    warnings.warn(f"Missing event_ids : {missing}", RuntimeWarning, stacklevel=3)


class NanoEventsFactory:
    """coffea's spelling: ``NanoEventsFactory.from_root(file, schemaclass=NanoAODSchema).events()``.

    The events are the same lazy array the Runner hands a processor (columns read when touched);
    ``mode="eager"`` reads every column up front, as coffea's. ``factory.columns`` lists the branches
    read so far and ``access_log`` (a list you pass) gets one ``Accessed(branch, buffer_key)`` per read.
    """

    def __init__(self, events: NanoEventsArray, reader: ChunkReader, mode: str = "virtual",
                 access_log: list | None = None, file_handle: Any = None, recipe: dict | None = None):
        self._events, self._reader, self._mode = events, reader, mode
        self.access_log, self._file_handle, self._recipe = access_log, file_handle, recipe or {}
        if mode == "eager":
            self._events = _materialized(events)

    @classmethod
    def _make(cls, tree: OpenTree, tree_name: str, entry_start: Any, entry_stop: Any, schemaclass: Any,
              metadata: dict | None, mode: str, access_log: list | None, handle: Any, recipe: dict) -> "NanoEventsFactory":
        if mode not in _MODES:
            raise ValueError(f"hpckit's events are eager or virtual; mode={mode!r} is coffea-only (dask)")
        _check_event_ids(tree, schemaclass)
        n = tree.num_entries
        start = 0 if entry_start is None else max(0, min(int(entry_start), n))
        stop = n if entry_stop is None else max(start, min(int(entry_stop), n))
        meta = {"filename": tree.filename, "treename": tree_name, "entrystart": start, "entrystop": stop,
                "fileuuid": tree.uuid, **(metadata or {})}
        events, reader = make_events(tree, start, stop, schemaclass, meta)
        if access_log is not None:
            reader.on_read = lambda branch, key: access_log.append(Accessed(branch, key))
        return cls(events, reader, mode, access_log, handle, recipe)

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
        access_log: list | None = None,
        **ignored: Any,
    ) -> "NanoEventsFactory":
        path, tree_name, handle = _file_and_tree(file, treepath.lstrip("/"))
        tree = open_tree(path, tree_name, uproot_options)
        recipe = dict(kind="root", file=path, treepath=tree_name, entry_start=entry_start, entry_stop=entry_stop,
                      schemaclass=schemaclass, metadata=metadata, uproot_options=uproot_options)
        return cls._make(tree, tree_name, entry_start, entry_stop, schemaclass, metadata, mode, access_log,
                         handle if handle is not None else tree.file.file, recipe)

    @classmethod
    def from_parquet(
        cls,
        file: Any,
        treepath: str = "",
        entry_start: int | None = None,
        entry_stop: int | None = None,
        schemaclass: type[BaseSchema] = NanoAODSchema,
        metadata: dict | None = None,
        mode: str = "virtual",
        access_log: list | None = None,
        **ignored: Any,
    ) -> "NanoEventsFactory":
        """coffea's ``from_parquet``: a Parquet file's columns play the branches (a path, a ``pathlib`` path, an
        fsspec URL with ``storage_options``, an open binary file or a ``pyarrow.parquet.ParquetFile``)."""
        storage_options = ignored.get("storage_options")
        if type(file).__name__ == "ParquetFile":  # not a plain path: opened for this factory, not cached
            tree = formats.open_parquet(repr(file), "", parquet_file=file)
        elif hasattr(file, "read") and not isinstance(file, (str, os.PathLike)):
            tree = formats.open_parquet(str(getattr(file, "name", repr(file))), "", fileobj=file)
        elif storage_options:
            tree = formats.open_parquet(os.fspath(file), "", storage_options=storage_options)
        else:
            path = os.fspath(file) if not isinstance(file, str) else file
            if path.startswith("file://"):
                path = path[len("file://"):]
            tree = open_tree(path, "", format="parquet")
        path = tree.filename
        recipe = dict(kind="parquet", file=path, treepath="", entry_start=entry_start, entry_stop=entry_stop,
                      schemaclass=schemaclass, metadata=metadata)
        return cls._make(tree, "", entry_start, entry_stop, schemaclass, metadata, mode, access_log, tree.file, recipe)

    def events(self) -> NanoEventsArray:
        return self._events

    @property
    def file_handle(self) -> Any:
        """The open file the events read from (the handle you passed, else hpckit's own)."""
        return self._file_handle

    @property
    def columns(self) -> set[str]:
        """Branches read so far."""
        return set(self._reader.columns)

    # -- pickling: the recipe, rebuilt on load (open files and lambdas do not pickle) -------------------
    def __getstate__(self) -> dict:
        return {**self._recipe, "mode": self._mode}

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        mode = state.pop("mode", "virtual")
        kind = state.pop("kind", "root")
        maker = NanoEventsFactory.from_parquet if kind == "parquet" else NanoEventsFactory.from_root
        if kind == "parquet":
            state.pop("uproot_options", None)
        fresh = maker(state.pop("file"), mode=mode, **state)
        self.__dict__.update(fresh.__dict__)


def _materialized(events: NanoEventsArray) -> NanoEventsArray:
    """coffea's eager mode: every column read now (``events.layout.is_all_materialized``)."""
    events._layout = ak.to_layout(ak.materialize(ak.Array(events._layout, behavior=events.behavior)))
    return events
