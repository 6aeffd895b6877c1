"""What runs on a worker for one chunk: open (cached), build lazy events, call process, measure.

``ChunkJob`` is a small picklable callable, the same for every executor: executors only move work
items and results around. A chunk's result is a plain mapping that merges with ``accumulate``::

    {"out": <processor output>, "metrics": {...}, "processed": ProcessedChunks.of(item.key)}   # or, skipped:
    {"metrics": {"skipped": [...]}, "processed": ProcessedChunks.of(item.key)}
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from hpckit.core.errors import ChunkError, FileAccessError, FilesetError, ProcessorError, error_chain
from hpckit.events import make_events
from hpckit.events.factory import release
from hpckit.events.reader import file_uuid, forget, open_tree
from hpckit.processor.abc import call_process
from hpckit.processor.accumulate import Merger, accumulate
from hpckit.processor.fileset import WorkItem
from hpckit.processor.checkpoint import chunk_fingerprint
from hpckit.processor.isolate import ProcessorCopies
from hpckit.processor.metacache import MetadataCache
from hpckit.processor import records
from hpckit.processor.records import batch_job_id
from hpckit.processor.replicas import candidates, is_permanent, mismatch, with_replicas
from hpckit.processor.processed import ProcessedChunks
from hpckit.processor.serialize import compress, decompress, load_processor
from hpckit.processor import worker_log
from hpckit.processor.timeout import chunk_deadline

_PROCESSORS: dict[int, ProcessorCopies] = {}  # per worker process: processor bytes -> its copies


def _copies(blob: bytes) -> ProcessorCopies:
    """The processor is unpickled once per worker process; every chunk then gets its own copy."""
    key = hash(blob)
    copies = _PROCESSORS.get(key)
    if copies is None:
        if len(_PROCESSORS) > 8:
            _PROCESSORS.clear()
        import linecache

        linecache.checkcache()  # a new processor (edited code on a long-lived worker): no stale source lines
        copies = _PROCESSORS[key] = ProcessorCopies(load_processor(blob))
    return copies


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _outcome_record(kind: str, item: WorkItem, t0: float, error: str) -> dict:
    return {"kind": kind, "t0": t0, "t": time.time(), "worker": worker_id(), "job": batch_job_id(),
            "dataset": item.dataset, "file": item.filename, "chunk": item.describe(), "error": error}


# Missing trees and invalid Parquet files are file errors here, but not OSErrors in coffea, whose
# ``skipbadfiles=True`` means ``(OSError,)``: they are skipped only when named in a tuple, as there.
_NOT_SKIPPED_BY_TRUE = frozenset({"UprootMissTreeError", "InvalidParquetError"})


def skip_matches(skipbadfiles: Any, err: BaseException) -> bool:
    """Does ``skipbadfiles`` cover ``err``? ``True``: any OSError on its cause chain (missing or unreadable
    files, but not a missing tree); a tuple of types: any instance on the chain (for errors that crossed
    a process boundary, also the type names the error recorded)."""
    if not skipbadfiles:
        return False
    chain = error_chain(err)
    if skipbadfiles is True:
        return any(
            isinstance(e, OSError) and not _NOT_SKIPPED_BY_TRUE & {c.__name__ for c in type(e).__mro__}
            for e in chain
        )
    wanted = skipbadfiles if isinstance(skipbadfiles, tuple) else (skipbadfiles,)
    names = {f"{t.__module__}.{t.__qualname__}" for t in wanted}
    recorded = {n for e in chain for n in getattr(e, "cause_types", ())}
    return any(isinstance(e, wanted) for e in chain) or bool(names & recorded)


_NEVER_HEALS = re.compile(r"not found|not a ROOT file|expected Chunk of length|received \d+ bytes")


def never_heals(err: FileAccessError, filename: str) -> bool:
    """A missing file or tree anywhere, or a local file that is empty, truncated or not ROOT: retrying
    reads the same bytes again. Remote files (``scheme://``) are retried: a short read there may be
    the network."""
    text = str(err)
    if "not found" in text:
        return True
    local = "://" not in filename or filename.startswith("file://")
    return local and (bool(_NEVER_HEALS.search(text)) or "builtins.OSError" not in err.cause_types)


def retry_file_errors(fn: Any, filename: str, retries: int) -> tuple[Any, int]:
    """``fn()`` and the number of failed attempts before it worked; file errors are retried with backoff
    on a freshly opened file, except those that never heal (:func:`never_heals`: not there, a directory,
    refused, or a local file that is empty, truncated or not ROOT). The last error is raised."""
    for attempt in range(retries + 1):
        try:
            return fn(), attempt
        except FileAccessError as err:
            forget(filename)
            if attempt == retries or is_permanent(err) or never_heals(err, filename):
                raise
            time.sleep(min(0.1 * 2**attempt, 2.0))
    raise AssertionError("unreachable")


CARRIED_RECORDS = "records"  # a chunk result's records that its worker could not write (hpckit.processor.records)


def _from_checkpoint(saved: dict) -> dict:
    return share_keys({**saved, "metrics": {**saved.get("metrics", {}), "from_checkpoint": 1}})


@dataclass
class DriverCheckpoints:
    """Chunk checkpoints read and written by the driver, for workers that cannot see the checkpoint
    directory (a site without a shared file system): a chunk saved before is not sent out, its saved
    payload takes the chunk's place in the merge tree (so the output is the same bytes); a finished chunk
    is saved when its payload passes the driver, before it is merged on the workers. Used by the executors
    whose ``checkpoints_on_driver`` is True."""

    checkpointer: Any
    fingerprint: str
    compression: int | None = 1

    def load(self, item: WorkItem) -> Any | None:
        """The chunk's saved result as a payload, or None."""
        saved = self.checkpointer.load(item, chunk_fingerprint(self.fingerprint, item))
        return None if saved is None else compress(_from_checkpoint(saved), self.compression)

    def save(self, item: WorkItem, payload: Any) -> None:
        result = load_result(payload)
        if isinstance(result, dict) and result.get("metrics", {}).get("skipped"):
            return  # a file skipped (skipbadfiles) is tried again on a resume, as the workers' checkpoints do
        if isinstance(result, dict) and CARRIED_RECORDS in result:  # written once, by this run, not on a resume
            result = {k: v for k, v in result.items() if k != CARRIED_RECORDS}
        self.checkpointer.save(result, item, chunk_fingerprint(self.fingerprint, item))


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
    timeout: float | None = None  # chunk_timeout of the Runner (hpckit.processor.timeout)
    format: str = "root"  # "root" (TTree or RNTuple) or "parquet"
    # with use_result_type a file error that skipbadfiles covers is raised (the Runner returns it as Err)
    raise_skippable: bool = False
    # a ChunkRecorder (hpckit.processor.records) or None: one record per finished or failed chunk
    recorder: Any = None
    driver: str = field(default_factory=lambda: worker_id())  # the driver process, as host:pid
    run_id: str = field(default_factory=lambda: secrets.token_hex(8))  # this run's, among those a worker serves
    # a DriverCheckpoints where the workers cannot see the checkpoint directory (checkpointer is then None):
    # the executor loads and saves chunks on the driver; never sent to the workers
    driver_checkpoints: Any = field(default=None, repr=False, compare=False)
    # copies of processor_object, one per chunk (hpckit.processor.isolate); made on first use
    _object_copies: Any = field(default=None, init=False, repr=False, compare=False)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["processor_object"] = None
        state["_object_copies"] = None
        state["driver_checkpoints"] = None
        return state

    def _copies(self) -> ProcessorCopies:
        if self.processor_object is None:
            return _copies(self.processor_blob)
        if self._object_copies is None:  # the live object's state now, before any chunk ran
            self._object_copies = ProcessorCopies(self.processor_object)
        return self._object_copies

    def _processor(self) -> Any:
        """A processor of this chunk's own: what one chunk's process() changes on it no other chunk sees."""
        return self._copies().fresh()

    def __call__(self, item: WorkItem) -> Any:
        return compress(self.run(item), self.compression)

    def run(self, item: WorkItem) -> dict:
        if self.recorder is None:
            return self._run(item)
        # in a worker process (not the driver's): what that process logs becomes records of the run too
        in_worker = worker_id() != self.driver
        if in_worker:
            worker_log.tap()
        t0 = time.time()
        try:
            result = self._run(item)
        except Exception as err:
            failed = [_outcome_record("failure", item, t0, f"{type(err).__name__}: {err}"),
                      *(worker_log.take(worker_id(), batch_job_id()) if in_worker else ())]
            records.hold(self.run_id, [r for r in failed if not self.recorder(r)])  # rides with the next result
            raise
        skipped = result["metrics"].get("skipped")
        if skipped:
            rec = _outcome_record("skipped", item, t0, skipped[0]["error"])
        else:
            m = result["metrics"]
            rec = {
                "kind": "chunk", "t0": t0, "t1": time.time(), "worker": worker_id(), "job": batch_job_id(),
                "dataset": item.dataset, "file": item.filename, "start": item.entrystart, "stop": item.entrystop,
                "events": m.get("entries", 0), "bytes": m.get("bytesread", 0), "retries": m.get("retries", 0),
            }
        logged = worker_log.take(worker_id(), batch_job_id()) if in_worker else []
        carried = [r for r in (*records.take_held(self.run_id), rec, *logged) if not self.recorder(r)]
        if carried:  # no run directory here: the records travel with the result
            result = {**result, CARRIED_RECORDS: carried}
        return result

    def _run(self, item: WorkItem) -> dict:
        env = self.worker_check() if self.worker_check is not None else None
        if self.checkpointer is not None:  # a chunk recomputed after its worker left (walltime) reuses its result
            saved = self.checkpointer.load(item, chunk_fingerprint(self.fingerprint, item))
            if saved is not None:
                return _from_checkpoint(saved)
        failovers = 0

        def served() -> dict:  # one attempt: every replica in turn
            nonlocal failovers
            try:
                result, name, failed = with_replicas(item.filename, item.replicas, lambda n: self._once(item, n))
            except FileAccessError as err:
                failovers += getattr(err, "failovers", 0)
                raise
            failovers += failed
            result["metrics"]["served_by"] = {name: 1}
            return result

        try:
            with chunk_deadline(self.timeout, item.describe()):
                result, attempt = retry_file_errors(served, item.filename, self.retries)
            result["metrics"]["retries"] = attempt
            result["metrics"]["failovers"] = failovers
            if isinstance(env, str):  # what the check says this worker runs (e.g. its lock hash)
                result["metrics"]["environments"] = {(worker_id(), env)}
        except FileAccessError as last:
            if skip_matches(self.skipbadfiles, last):
                if self.raise_skippable:
                    raise
                warnings.warn(f"hpckit: skipping {item.describe()}: {last}")
                return {
                    "metrics": {"skipped": [{"chunk": item.describe(), "file": item.filename, "error": str(last)}]},
                    "processed": ProcessedChunks.of(item.key),
                }
            raise ChunkError(
                f"{item.describe()} failed (file errors are tried up to {self.retries + 1} times): {last}", item.describe()
            ) from last
        if self.checkpointer is not None:
            self.checkpointer.save(result, item, chunk_fingerprint(self.fingerprint, item))
        return result

    def warm_up(self, item: WorkItem) -> None:
        """Pay once, here, the first-call costs of the event machinery (vector dispatch, awkward
        kernels) on an empty slice of ``item``'s file, so that processes forked afterwards start warm.
        Best effort: any problem is left for the real chunk to report."""
        try:
            self._processor()
            tree = open_tree(candidates(item.filename, item.replicas)[0], item.treename, self.uproot_options, self.format)
            events, _ = make_events(tree, item.entrystart, item.entrystart, self.schema, item.metadata())
            for name in events.fields:
                column = events[name]
                if getattr(column, "ndim", 0) == 2 and "mass" in getattr(column, "fields", ()):
                    first = column[:, :1]
                    (first + first).mass
            release(events)
        except Exception:  # noqa: BLE001
            pass

    def _once(self, item: WorkItem, name: str) -> dict:
        tree = open_tree(name, item.treename, self.uproot_options, self.format)
        if tree.uuid != item.fileuuid:  # perhaps a handle this process kept from before the file changed
            forget(name)
            tree = open_tree(name, item.treename, self.uproot_options, self.format)
        if tree.uuid != item.fileuuid and item.replicas:
            forget(name)
            raise mismatch(item.filename, name, tree.uuid, item.fileuuid)
        if tree.uuid != item.fileuuid:
            raise FileAccessError(
                f"{item.filename} changed since it was chunked (uuid {tree.uuid}, expected {item.fileuuid})",
                item.filename,
            )
        if item.entrystop > tree.num_entries:
            raise FileAccessError(
                f"{item.describe()} is past the end of the tree ({tree.num_entries} entries)", item.filename
            )
        bytes_before, requests_before = tree.bytes_requested, tree.requests
        processor = self._processor()
        events, reader = build_events(tree, item, self.schema)
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
        finally:
            release(events)
        processtime = time.perf_counter() - t0
        if out is None:
            raise ProcessorError(
                f"process() returned None on {item.describe()}; it must return an accumulatable "
                "(dict, number, set, list, hist.Hist, ...)",
                item.describe(),
            )
        self._copies().check_not_shared(out, item.describe())
        return {
            "out": out,
            "metrics": {
                "bytesread": tree.bytes_requested - bytes_before,
                "requests": tree.requests - requests_before,
                "columns": set(reader.columns),
                "entries": len(item),
                "processtime": processtime,
                "workers": {worker_id()},
            },
            "processed": ProcessedChunks.of(item.key),
        }


class EventsFactoryInfo:
    """``events.attrs["@events_factory"]`` as coffea's processors read it: the open file and the columns
    read so far (``access_log``)."""

    def __init__(self, tree: Any, reader: Any):
        self._tree, self._reader = tree, reader

    @property
    def file_handle(self) -> Any:
        return self._tree.file

    @property
    def access_log(self) -> list[str]:
        return sorted(self._reader.columns)


def build_events(tree: Any, item: WorkItem, schema: Any) -> tuple[Any, Any]:
    """The chunk's events: hpckit's lazy events, or coffea's when ``schema`` is one of coffea's schema
    classes (coffea then builds them from the file hpckit has open; see ``coffea_events``)."""
    if _is_coffea_schema(schema):
        from hpckit.processor.coffea_bridge import coffea_events

        return coffea_events(tree, item, schema)
    events, reader = make_events(tree, item.entrystart, item.entrystop, schema, item.metadata())
    events.attrs["@events_factory"] = EventsFactoryInfo(tree, reader)
    return events, reader


def _is_coffea_schema(schema: Any) -> bool:
    return isinstance(schema, type) and any(c.__module__.startswith("coffea.") for c in schema.__mro__)


@dataclass
class FileMetaTask:
    """Preprocessing of one file (entries, uuid, clusters), run wherever the executor puts it.
    Returns the metadata, or the FileAccessError as a value so the driver decides about skipping."""

    uproot_options: dict = field(default_factory=dict)
    retries: int = 3
    align_clusters: bool = False
    format: str = "root"
    light: bool = False  # read only the tree header (hpckit.processor.planning.read_light) when it can

    def __call__(self, spec: Any) -> dict:
        replicas = tuple(getattr(spec, "replicas", ()))
        identity = MetadataCache.identity(spec.filename)  # before reading: a file changed meanwhile is read again

        def read(name: str) -> dict:
            if self.light and not self.align_clusters and self.format == "root" and not name.endswith(".parquet"):
                from hpckit.processor.planning import read_light

                meta = read_light(name, spec.treename, self.uproot_options)
                if meta is not None:
                    return meta
            tree = open_tree(name, spec.treename, self.uproot_options, self.format)
            meta = {"numentries": tree.num_entries, "uuid": tree.uuid}
            if self.align_clusters:
                meta["clusters"] = tree.cluster_starts()
            return meta

        try:
            meta, served, _ = retry_file_errors(
                lambda: with_replicas(spec.filename, replicas, read), spec.filename, self.retries
            )[0]
        except FileAccessError as err:
            return {"error": err}
        try:
            self._same_file(spec.filename, replicas, served, meta["uuid"])
        except FilesetError as err:
            return {"error": err}
        return {**meta, "identity": identity}

    def _same_file(self, primary: str, replicas: tuple, served: str, uuid: str) -> None:
        """Every other copy that answers must hold the same file; one that does not answer is left for
        failover to find out (it may be down only now)."""
        for name in (primary, *replicas):
            if name == served:
                continue
            try:
                other = file_uuid(name, self.uproot_options)
            except FileAccessError:
                forget(name)
                continue
            if other != uuid:
                raise mismatch(served, name, other, uuid)


def load_result(payload: Any) -> Any:
    """A chunk's (or a merge's) result from its payload, its ``processed`` keys sharing their strings with
    every other result's: each unpickled key brings its own copies of the dataset, file, tree and uuid
    (~430 bytes a chunk in a driver folding 10^5 of them, ~180 shared); a merged set then also pickles
    each string once."""
    return share_keys(decompress(payload))


def share_keys(result: Any) -> Any:
    """``result`` with its ``processed`` chunks as :class:`ProcessedChunks` (whose unpickling interns the
    file keys' strings, see :func:`load_result`); a set of keys (a checkpoint written before) converted."""
    keys = result.get("processed") if isinstance(result, dict) else None
    if isinstance(keys, (set, frozenset)):
        result["processed"] = ProcessedChunks(tuple(sys.intern(x) if type(x) is str else x for x in key)
                                              for key in keys)
    return result


def run_group(run: Callable[[int, Any], Any], items: list, compression: int | None = 1) -> Any:
    """One level-0 group of the merge tree, run where its chunks run: ``run(offset, item)`` gives each
    chunk's result in turn, folded as the driver's fold would fold their payloads (the same calls, so the
    same bytes); one result sent back."""
    merged = Merger()
    for offset, item in enumerate(items):
        merged.add(share_keys(run(offset, item)))
    return compress(merged.result, compression)


def run_chunks(items: list, job: Any) -> Any:
    """A merge group of ``job``'s chunks as one task (the engines that send a group a task call this)."""
    return run_group(lambda _, item: job.run(item), items, job.compression)


def merge_payloads(payloads: list[Any], compression: int | None = 1) -> Any:
    """Merge chunk results (compressed or not) into one compressed result; runs where the engine puts it."""
    return compress(accumulate(load_result(p) for p in payloads), compression)
