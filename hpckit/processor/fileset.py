"""Filesets in the forms coffea users write, normalised to files; files split into chunks (WorkItems)."""

from __future__ import annotations

import json
import math
import os
import uuid as _uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hpckit.io import storage
from hpckit.core.errors import FilesetError
from hpckit.core.defaults import check_chunksize
from hpckit.io.paths import read_limited

RESERVED_METADATA = frozenset(
    "dataset filename treename metadata entrystart entrystop fileuuid numentries uuid clusters preload".split()
)


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One chunk: the unit of work, retry and checkpoint. Slotted: a plan of 10^5-10^6 chunks is held by
    the driver for the whole run (176 bytes a chunk, against 224 with a ``__dict__``; start and stop included)."""

    dataset: str
    filename: str
    treename: str
    entrystart: int
    entrystop: int
    fileuuid: str
    usermeta: dict | None = field(default_factory=dict, compare=False, hash=False, repr=False)
    preload: frozenset | None = field(default=None, compare=False, hash=False, repr=False)  # coffea's; unused
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
        meta = dict(self.usermeta or {})
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
            text = read_limited(path, MAX_FILESET_BYTES, FilesetError, "fileset file")
            loaded = json.loads(text, object_pairs_hook=_no_duplicate_keys(path))
        except UnicodeDecodeError as err:
            raise FilesetError(f"fileset file {path} is not UTF-8 text: {err.reason} at byte {err.start}") from None
        except json.JSONDecodeError as err:
            raise FilesetError(
                f"fileset file {path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
            ) from None
        except RecursionError:
            raise FilesetError(f"fileset file {path} nests JSON objects or lists too deeply to be a fileset "
                               "(a fileset is datasets -> files -> tree names, a few levels)") from None
        if not isinstance(loaded, Mapping):
            raise FilesetError(f"fileset file {path} must hold a JSON object of datasets, got {type(loaded).__name__}")
        return _resolve_relative(loaded, os.path.dirname(os.path.abspath(path)))
    if not isinstance(fileset, Mapping):
        raise FilesetError(f"a fileset is a mapping of dataset -> files (or a JSON file path), got {type(fileset).__name__}")
    return fileset


MAX_FILESET_BYTES = 256 << 20  # ~1M file URLs; a larger file is a mistake (or /dev/zero)


def _no_duplicate_keys(path: str):
    """json object hook: a key given twice (a dataset, or a file of a dataset) is an error, not a
    silent overwrite."""

    def hook(pairs: list) -> dict:
        out: dict = {}
        for k, v in pairs:
            if k in out:
                raise FilesetError(f"fileset file {path}: {str(k)[:200]!r} appears twice in the same object")
            out[k] = v
        return out

    return hook


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
    if ":" not in name and name.strip():  # a plain local path: nothing to check (tens of thousands of files)
        return
    try:
        storage.parse(name)
    except storage.BadURL as err:
        what = "" if name == filename else f"replica of {filename}: "
        raise FilesetError(f"{where}: file {filename}: {what}{err}") from None


def normalize_fileset(fileset: Any, treename: str | None = None, require_tree: bool = True) -> list[FileSpec]:
    """Every (dataset, file, tree) of a fileset, in fileset order.

    Tree names: a file's own (``{"files": {file: tree}}``) over the dataset's ``"treename"`` over the
    ``treename`` argument (coffea: "treename can also be defined in fileset, which will override the
    passed treename"). Parquet files need none (``require_tree=False``)."""
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
            if entry.get("treename"):
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
        seen: dict[str, str] = {}
        for filename, value in items:
            if not isinstance(filename, str) or not filename:
                raise FilesetError(f"{where}: file names must be non-empty strings, got {filename!r}")
            file_tree, replicas = _file_entry(where, filename, value)
            for name in (filename, *replicas):
                _check_location(where, filename, name)
            if file_tree is not None and isinstance(entry, Mapping) and entry.get("treename"):
                if file_tree != entry["treename"]:
                    raise FilesetError(
                        f"{where}: file {filename} names tree {file_tree!r} but the dataset's treename is "
                        f"{entry['treename']!r}"
                    )
            first = seen.get(_same_file_key(filename))
            if first is not None:
                also = "" if first == filename else f" (also as {filename})"
                raise FilesetError(f"{where}: file {first} is listed twice{also}; it would be processed twice")
            seen[_same_file_key(filename)] = filename
            tree = file_tree or ds_tree
            if not tree and not require_tree:
                tree = ""
            if not tree and require_tree:
                raise FilesetError(f"{where}: no tree name for {filename}; pass treename= or use {{file: tree}}")
            specs.append(FileSpec(dataset, filename, tree, metadata, replicas))
    storage.require_remote_support(n for s in specs for n in (s.filename, *s.replicas))
    return specs


MISSING_LIMIT = 200  # stop looking for missing local files after this many


def missing_local_files(specs: list[FileSpec], limit: int = MISSING_LIMIT) -> tuple[list[str], int]:
    """(missing local files, how many files were looked at): local paths only (``root://`` and other
    remote URLs are opened later), files with replicas skipped, stopping at ``limit`` missing files so a
    fileset of 100,000 wrong paths fails in well under a second."""
    missing: list[str] = []
    looked = 0
    for spec in specs:
        name = spec.filename
        if spec.replicas or ("://" in name and not name.startswith("file://")):
            continue
        looked += 1
        if not os.path.exists(name.removeprefix("file://")):
            missing.append(name)
            if len(missing) >= limit:
                break
    return missing, looked


def _same_file_key(name: str) -> str:
    return name if "://" in name else os.path.normpath(name)


def chunk_ranges(
    num_entries: int, chunksize: int, clusters: list[int] | None = None
) -> list[tuple[int, int]]:
    """Entry ranges of one file.

    Default: the file is cut into ``max(round(n / chunksize), 1)`` chunks of equal size (so a chunk can
    be up to 1.5x ``chunksize``), as coffea does, so chunk counts match what users know. With cluster
    boundaries, a chunk ends at the first cluster boundary at least ``chunksize`` entries after its start.
    An empty file gives one empty chunk, so its dataset still appears in the output.
    """
    check_chunksize(chunksize)
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


class FileMeta:
    """coffea's (dataset, file, tree) key of the metadata cache, with the file's metadata once known."""

    __slots__ = ("dataset", "filename", "treename", "metadata", "preload")

    def __init__(self, dataset: str, filename: str, treename: str, metadata: dict | None = None, preload: Any = None):
        self.dataset, self.filename, self.treename = dataset, filename, treename
        self.metadata, self.preload = metadata, preload

    def __repr__(self) -> str:
        return f"FileMeta({self.dataset}:{self.filename}:{self.treename})"

    __str__ = __repr__

    def __hash__(self) -> int:
        return hash((self.dataset, self.filename, self.treename))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FileMeta) and (self.dataset, self.filename, self.treename) == (
            other.dataset,
            other.filename,
            other.treename,
        )

    def maybe_populate(self, cache: Any) -> None:
        if cache and self in cache:
            self.metadata = cache[self]

    def populated(self, clusters: bool = False) -> bool:
        meta = self.metadata
        if not meta or "numentries" not in meta or "uuid" not in meta:
            return False
        return not clusters or "clusters" in meta

    def chunks(self, target_chunksize: int, align_clusters: bool = False):
        """The WorkItems of this file (its metadata must be populated)."""
        if not self.populated(clusters=align_clusters):
            raise RuntimeError(f"metadata of {self} is not populated")
        clusters = self.metadata.get("clusters") if align_clusters else None
        user = {k: v for k, v in self.metadata.items() if k not in RESERVED_METADATA}
        for start, stop in chunk_ranges(self.metadata["numentries"], target_chunksize, clusters):
            yield WorkItem(self.dataset, self.filename, self.treename, start, stop, self.metadata["uuid"], user)


_WORKITEM_FIELDS = ("dataset", "filename", "treename", "entrystart", "entrystop", "fileuuid")


def as_work_items(chunks: Any) -> list[WorkItem] | None:
    """Pre-made chunks (a list, tuple or generator of WorkItems, also coffea's) as hpckit WorkItems, or
    None when ``chunks`` is a fileset."""
    if isinstance(chunks, (str, os.PathLike, Mapping)):
        return None
    if isinstance(chunks, (list, tuple)):
        if not chunks or not all(hasattr(c, "entrystop") for c in chunks):
            return None
    elif not hasattr(chunks, "__next__"):
        return None
    out = []
    for c in chunks:
        if isinstance(c, WorkItem):
            out.append(c)
            continue
        if not all(hasattr(c, f) for f in _WORKITEM_FIELDS):
            raise FilesetError(f"expected WorkItems from preprocess(), got {type(c).__name__}")
        uuid = c.fileuuid
        if isinstance(uuid, bytes):  # coffea keeps the 16 raw bytes; hpckit the text form uproot prints
            uuid = str(_uuid.UUID(bytes=uuid)) if len(uuid) == 16 else uuid.hex()
        out.append(
            WorkItem(c.dataset, c.filename, c.treename, c.entrystart, c.entrystop, str(uuid), dict(c.usermeta or {}))
        )
    return out
