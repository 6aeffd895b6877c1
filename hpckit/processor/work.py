"""What runs on a worker for one chunk: open (cached), build lazy events, call process, measure.

``ChunkJob`` is a small picklable callable, the same for every executor: executors only move work
items and results around. A chunk's result is a plain mapping that merges with ``accumulate``::

    {"out": <processor output>, "metrics": {...}, "processed": {item.key}}   # or, skipped:
    {"metrics": {"skipped": [...]}, "processed": {item.key}}
"""

from __future__ import annotations

import os
import socket
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any

from hpckit.errors import ChunkError, FileAccessError, ProcessorError
from hpckit.events import make_events
from hpckit.events.reader import forget, open_tree
from hpckit.processor.abc import call_process
from hpckit.processor.accumulate import accumulate
from hpckit.processor.fileset import WorkItem
from hpckit.processor.serialize import compress, decompress, load_processor

_PROCESSORS: dict[int, Any] = {}  # per worker process: processor bytes -> loaded processor


def _processor(blob: bytes) -> Any:
    key = hash(blob)
    proc = _PROCESSORS.get(key)
    if proc is None:
        if len(_PROCESSORS) > 8:
            _PROCESSORS.clear()
        proc = _PROCESSORS[key] = load_processor(blob)
    return proc


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def skip_matches(skipbadfiles: Any, err: FileAccessError) -> bool:
    """True: every file error is skipped; a tuple: only if a type on the error's cause chain matches."""
    if skipbadfiles is True:
        return True
    if not skipbadfiles:
        return False
    wanted = skipbadfiles if isinstance(skipbadfiles, tuple) else (skipbadfiles,)
    names = {f"{t.__module__}.{t.__qualname__}" for t in wanted}
    return isinstance(err, wanted) or bool(names & set(err.cause_types))


def retry_file_errors(fn: Any, filename: str, retries: int) -> tuple[Any, int]:
    """``fn()`` and the number of failed attempts before it worked; file errors are retried with backoff
    on a freshly opened file, except a file or tree that is not there. The last error is raised."""
    for attempt in range(retries + 1):
        try:
            return fn(), attempt
        except FileAccessError as err:
            forget(filename)
            if attempt == retries or "not found" in str(err):
                raise
            time.sleep(min(0.1 * 2**attempt, 2.0))
    raise AssertionError("unreachable")


@dataclass
class ChunkJob:
    processor_blob: bytes
    schema: type
    fingerprint: str
    retries: int = 3
    skipbadfiles: Any = False
    compression: int | None = 1
    checkpointer: Any = None
    uproot_options: dict = field(default_factory=dict)
    # the live processor, used where the job is not pickled (Iterative, thread pools): tracebacks then
    # keep the user's file and source lines, which by-value pickled code loses
    processor_object: Any = field(default=None, repr=False, compare=False)
    # run on the worker before the processor is unpickled (e.g. the environment fingerprint check of
    # `hpckit launch`); it raises to refuse work. Must be picklable and cheap after its first call.
    worker_check: Any = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["processor_object"] = None
        return state

    def _processor(self) -> Any:
        if self.processor_object is not None:
            return self.processor_object
        return _processor(self.processor_blob)

    def __call__(self, item: WorkItem) -> Any:
        return compress(self.run(item), self.compression)

    def run(self, item: WorkItem) -> dict:
        env = self.worker_check() if self.worker_check is not None else None
        try:
            result, attempt = retry_file_errors(lambda: self._once(item), item.filename, self.retries)
            result["metrics"]["retries"] = attempt
            if isinstance(env, str):  # what the check says this worker runs (e.g. its lock hash)
                result["metrics"]["environments"] = {(worker_id(), env)}
        except FileAccessError as last:
            if skip_matches(self.skipbadfiles, last):
                warnings.warn(f"hpckit: skipping {item.describe()}: {last}")
                return {
                    "metrics": {"skipped": [{"chunk": item.describe(), "file": item.filename, "error": str(last)}]},
                    "processed": {item.key},
                }
            raise ChunkError(
                f"{item.describe()} failed (file errors are tried up to {self.retries + 1} times): {last}", item.describe()
            ) from last
        if self.checkpointer is not None:
            self.checkpointer.save(result, item, self.fingerprint)
        return result

    def warm_up(self, item: WorkItem) -> None:
        """Pay once, here, the first-call costs of the event machinery (vector dispatch, awkward
        kernels) on an empty slice of ``item``'s file, so that processes forked afterwards start warm.
        Best effort: any problem is left for the real chunk to report."""
        try:
            self._processor()
            tree = open_tree(item.filename, item.treename, self.uproot_options)
            events, _ = make_events(tree, item.entrystart, item.entrystart, self.schema, item.metadata())
            for name in events.fields:
                column = events[name]
                if getattr(column, "ndim", 0) == 2 and "mass" in getattr(column, "fields", ()):
                    first = column[:, :1]
                    (first + first).mass
        except Exception:  # noqa: BLE001
            pass

    def _once(self, item: WorkItem) -> dict:
        tree = open_tree(item.filename, item.treename, self.uproot_options)
        if tree.uuid != item.fileuuid:
            raise FileAccessError(
                f"{item.filename} changed since it was chunked (uuid {tree.uuid}, expected {item.fileuuid})",
                item.filename,
            )
        if item.entrystop > tree.num_entries:
            raise FileAccessError(
                f"{item.describe()} is past the end of the tree ({tree.num_entries} entries)", item.filename
            )
        bytes_before = tree.bytes_requested
        processor = self._processor()
        events, reader = make_events(tree, item.entrystart, item.entrystop, self.schema, item.metadata())
        t0 = time.perf_counter()
        try:
            out = call_process(processor, events)
        except FileAccessError:
            raise  # a column could not be read: a file problem, retried/skipped as such
        except Exception as err:  # noqa: BLE001 - the user's code raised: report it, never retry
            raise ProcessorError(
                f"process() raised {type(err).__name__}: {err} on {item.describe()}",
                item.describe(),
                traceback.format_exc(),
            ) from err
        processtime = time.perf_counter() - t0
        if out is None:
            raise ProcessorError(
                f"process() returned None on {item.describe()}; it must return an accumulatable "
                "(dict, number, set, list, hist.Hist, ...)",
                item.describe(),
            )
        return {
            "out": out,
            "metrics": {
                "bytesread": tree.bytes_requested - bytes_before,
                "columns": set(reader.columns),
                "entries": len(item),
                "processtime": processtime,
                "workers": {worker_id()},
            },
            "processed": {item.key},
        }


@dataclass
class FileMetaTask:
    """Preprocessing of one file (entries, uuid, clusters), run wherever the executor puts it.
    Returns the metadata, or the FileAccessError as a value so the driver decides about skipping."""

    uproot_options: dict = field(default_factory=dict)
    retries: int = 3
    align_clusters: bool = False

    def __call__(self, spec: Any) -> dict:
        def read() -> dict:
            tree = open_tree(spec.filename, spec.treename, self.uproot_options)
            meta = {"numentries": tree.num_entries, "uuid": tree.uuid}
            if self.align_clusters:
                meta["clusters"] = [int(c) for c in tree.tree.common_entry_offsets()]
            return meta

        try:
            return retry_file_errors(read, spec.filename, self.retries)[0]
        except FileAccessError as err:
            return {"error": err}


def merge_payloads(payloads: list[Any], compression: int | None = 1) -> Any:
    """Merge chunk results (compressed or not) into one compressed result; runs where the engine puts it."""
    return compress(accumulate(decompress(p) for p in payloads), compression)
