"""Filesets in the forms coffea users write, normalised to files; files split into chunks (WorkItems)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hpckit import storage
from hpckit.errors import FilesetError

RESERVED_METADATA = frozenset(
    "dataset filename treename metadata entrystart entrystop fileuuid numentries uuid clusters preload".split()
)


@dataclass(frozen=True)
class WorkItem:
    """One chunk: the unit of work, retry and checkpoint."""

    dataset: str
    filename: str
    treename: str
    entrystart: int
    entrystop: int
    fileuuid: str
    usermeta: dict = field(default_factory=dict, compare=False, hash=False, repr=False)
    # other copies of ``filename`` (same uuid), tried in order when it cannot be opened or read
    replicas: tuple[str, ...] = field(default=(), compare=False, hash=False, repr=False)

    def __len__(self) -> int:
        return self.entrystop - self.entrystart

    @property
    def key(self) -> tuple:
        return (self.dataset, self.filename, self.treename, self.entrystart, self.entrystop, self.fileuuid)

    def describe(self) -> str:
        return (
            f"chunk {self.entrystart}-{self.entrystop} of {self.filename} "
            f"(dataset {self.dataset!r}, tree {self.treename!r})"
        )

    def metadata(self) -> dict:
        meta = dict(self.usermeta)
        meta.update(
            dataset=self.dataset,
            filename=self.filename,
            treename=self.treename,
            entrystart=self.entrystart,
            entrystop=self.entrystop,
            fileuuid=self.fileuuid,
        )
        return meta


@dataclass(frozen=True)
class FileSpec:
    dataset: str
    filename: str
    treename: str
    metadata: dict = field(default_factory=dict, compare=False, hash=False)
    replicas: tuple[str, ...] = field(default=(), compare=False, hash=False)


def load_fileset(fileset: Any) -> Mapping:
    """Accept a mapping or the path of a JSON file holding one; errors name the file and position."""
    if isinstance(fileset, (str, os.PathLike)):
        path = os.fspath(fileset)
        try:
            with open(path) as fh:
                loaded = json.load(fh)
        except FileNotFoundError as err:
            raise FilesetError(f"fileset file not found: {path}") from err
        except json.JSONDecodeError as err:
            raise FilesetError(
                f"fileset file {path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
            ) from err
        if not isinstance(loaded, Mapping):
            raise FilesetError(f"fileset file {path} must hold a JSON object of datasets, got {type(loaded).__name__}")
        return _resolve_relative(loaded, os.path.dirname(os.path.abspath(path)))
    if not isinstance(fileset, Mapping):
        raise FilesetError(f"a fileset is a mapping of dataset -> files (or a JSON file path), got {type(fileset).__name__}")
    return fileset


def _resolve_relative(fileset: Mapping, base: str) -> dict:
    """Relative file paths in a JSON fileset are relative to the JSON file, not to the working dir."""

    def fix(name: Any) -> Any:
        if isinstance(name, str) and "://" not in name and not os.path.isabs(name):
            return os.path.join(base, name)
        return name

    out: dict = {}
    for ds, spec in fileset.items():
        if isinstance(spec, list):
            out[ds] = [fix(f) for f in spec]
        elif isinstance(spec, Mapping) and "files" in spec:
            files = spec["files"]
            spec = dict(spec)
            if isinstance(files, Mapping):
                spec["files"] = {fix(k): _fix_replicas(v, fix) for k, v in files.items()}
            elif isinstance(files, list):
                spec["files"] = [fix(f) for f in files]
            out[ds] = spec
        else:
            out[ds] = spec
    return out


def _fix_replicas(value: Any, fix: Any) -> Any:
    if isinstance(value, Mapping) and isinstance(value.get("replicas"), list):
        return {**value, "replicas": [fix(r) for r in value["replicas"]]}
    return value


# keys of a file entry {"object_path": ..., "replicas": [...]}; the others are coffea's preprocessed
# fields, accepted and not needed here
FILE_ENTRY_KEYS = frozenset({"object_path", "treename", "replicas", "steps", "num_entries", "uuid"})


def _file_entry(where: str, filename: str, value: Any) -> tuple[str | None, tuple[str, ...]]:
    """(tree name or None, replicas) of one ``files`` value: a tree name, None, or a mapping."""
    if value is None or isinstance(value, str):
        return value, ()
    if not isinstance(value, Mapping):
        raise FilesetError(f"{where}: file {filename}: expected a tree name or a mapping, got {type(value).__name__}")
    unknown = set(value) - FILE_ENTRY_KEYS
    if unknown:
        raise FilesetError(f"{where}: file {filename}: unknown key(s) {sorted(unknown)} (known: {sorted(FILE_ENTRY_KEYS)})")
    tree = value.get("object_path", value.get("treename"))
    if tree is not None and not isinstance(tree, str):
        raise FilesetError(f"{where}: file {filename}: object_path must be a tree name, got {tree!r}")
    replicas = value.get("replicas", [])
    if not isinstance(replicas, (list, tuple)):
        raise FilesetError(
            f"{where}: file {filename}: 'replicas' must be a list of file names or URLs, got {type(replicas).__name__}"
        )
    seen = {filename}
    for r in replicas:
        if not isinstance(r, str) or not r:
            raise FilesetError(f"{where}: file {filename}: replicas must be non-empty strings, got {r!r}")
        if r in seen:
            raise FilesetError(f"{where}: file {filename}: replica {r} is listed twice (or is the file itself)")
        seen.add(r)
    return tree, tuple(replicas)


def _check_location(where: str, filename: str, name: str) -> None:
    try:
        storage.parse(name)
    except storage.BadURL as err:
        what = "" if name == filename else f"replica of {filename}: "
        raise FilesetError(f"{where}: file {filename}: {what}{err}") from None


def normalize_fileset(fileset: Any, treename: str | None = None) -> list[FileSpec]:
    """Every (dataset, file, tree) of a fileset, in fileset order."""
    fileset = load_fileset(fileset)
    specs: list[FileSpec] = []
    for dataset, entry in fileset.items():
        where = f"dataset {dataset!r}"
        metadata: dict = {}
        ds_tree = treename
        if isinstance(entry, (list, tuple)):
            files: Any = list(entry)
        elif isinstance(entry, Mapping):
            if "files" not in entry:
                raise FilesetError(f"{where}: expected a list of files or a mapping with a 'files' key")
            files = entry["files"]
            metadata = dict(entry.get("metadata") or {})
            bad = RESERVED_METADATA & set(metadata)
            if bad:
                raise FilesetError(f"{where}: metadata uses reserved key(s) {sorted(bad)}")
            if "treename" in entry:
                if treename is not None and entry["treename"] != treename:
                    raise FilesetError(
                        f"{where}: fileset says treename {entry['treename']!r} but treename={treename!r} was passed"
                    )
                ds_tree = entry["treename"]
        else:
            raise FilesetError(f"{where}: expected a list of files or a mapping, got {type(entry).__name__}")

        if isinstance(files, Mapping):
            items = list(files.items())
        elif isinstance(files, (list, tuple)):
            items = [(f, None) for f in files]
        else:
            raise FilesetError(f"{where}: 'files' must be a list or a mapping of file -> tree name")
        if not items:
            raise FilesetError(f"{where}: no files")
        for filename, value in items:
            if not isinstance(filename, str) or not filename:
                raise FilesetError(f"{where}: file names must be non-empty strings, got {filename!r}")
            file_tree, replicas = _file_entry(where, filename, value)
            for name in (filename, *replicas):
                _check_location(where, filename, name)
            if file_tree is not None and ds_tree is not None and file_tree != ds_tree:
                raise FilesetError(
                    f"{where}: file {filename} names tree {file_tree!r} but treename {ds_tree!r} was given"
                )
            tree = file_tree or ds_tree
            if not tree:
                raise FilesetError(f"{where}: no tree name for {filename}; pass treename= or use {{file: tree}}")
            specs.append(FileSpec(dataset, filename, tree, metadata, replicas))
    storage.require_remote_support(n for s in specs for n in (s.filename, *s.replicas))
    return specs


def chunk_ranges(
    num_entries: int, chunksize: int, clusters: list[int] | None = None
) -> list[tuple[int, int]]:
    """Entry ranges of one file.

    Default: the file is cut into ``max(round(n / chunksize), 1)`` chunks of equal size (so a chunk can
    be up to 1.5x ``chunksize``), as coffea does, so chunk counts match what users know. With cluster
    boundaries, a chunk ends at the first cluster boundary at least ``chunksize`` entries after its start.
    An empty file gives one empty chunk, so its dataset still appears in the output.
    """
    if chunksize < 1:
        raise ValueError(f"chunksize must be >= 1, got {chunksize}")
    if num_entries == 0:
        return [(0, 0)]
    if clusters:
        bounds = [0]
        for b in clusters[1:]:
            if b - bounds[-1] >= chunksize or b == num_entries:
                bounds.append(b)
        if bounds[-1] != num_entries:
            bounds.append(num_entries)
        return list(zip(bounds[:-1], bounds[1:]))
    n = max(round(num_entries / chunksize), 1)
    size = math.ceil(num_entries / n)
    return [(s, min(s + size, num_entries)) for s in range(0, num_entries, size)]
