"""The Runner: preprocess a fileset into chunks, dispatch them to an executor, merge, postprocess."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from hpckit.core.errors import ChunkError, FilesetError, error_chain
from hpckit.events import NanoAODSchema
from hpckit.events.formats import OPTIONS
from hpckit.events.reader import forget_remote
from hpckit.processor.accumulate import Merger, set_accumulator
from hpckit.processor.checkpoint import CheckpointerABC, processor_fingerprint
from hpckit.processor.chunkplan import ChunkPlan
from hpckit.processor.executors.base import ExecutorBase
from hpckit.processor.fileset import (MISSING_LIMIT, FileMeta, WorkItem, as_work_items, chunk_ranges,
                                      missing_local_files, normalize_fileset)
from hpckit.io.storage import is_remote
from hpckit.processor.metacache import MetadataCache, open_cache
from hpckit.processor.planning import LIGHT_ABOVE
from hpckit.processor.progress import ChunkProgress, PlanProgress
from hpckit.processor.processed import ProcessedChunks
from hpckit.core.defaults import DEFAULT_CHUNKSIZE, check_chunksize
from hpckit.processor.replicas import reset_preferences
from hpckit.processor.result import Err, Ok
from hpckit.processor.serialize import dump_processor
from hpckit.processor.work import CARRIED_RECORDS, ChunkJob, DriverCheckpoints, FileMetaTask, skip_matches


@dataclass
class Runner:
    """``runner(fileset, processor_instance=...)`` -> output, or ``(output, metrics)`` with ``savemetrics``,
    or ``Ok``/``Err`` with ``use_result_type``. The arguments are coffea's, in coffea's order, with the same
    meaning (README "Differences from coffea" lists where hpckit differs on purpose).

    ``skipbadfiles``: True skips every file that cannot be opened or read (an ``OSError``: missing, corrupt,
    truncated); a tuple of exception types skips only those (matched along the cause chain), e.g.
    ``(FileNotFoundError, UprootMissTreeError, pyarrow.ArrowInvalid)`` to also skip files that lack the
    tree or are not Parquet. Skipped files are warned about and listed in ``metrics["skipped"]``. A
    processor that raises is never skipped: the local executors report it at once; the distributed ones
    re-run a failed task up to ``retries`` times (to them a lost worker and a raising task look alike),
    then its traceback reaches the caller.

    ``format``: ``"root"`` (TTree or RNTuple, told apart per file) or ``"parquet"``; files named
    ``*.parquet`` are read as Parquet in either case. ``schema``: hpckit's ``NanoAODSchema``/``BaseSchema``,
    or one of coffea's schema classes when coffea is installed (coffea then builds the events from the
    file hpckit opened). ``cachestrategy`` is accepted for coffea compatibility: hpckit already keeps the
    last baskets of every column it read per open file, so it adds nothing.
    """

    executor: ExecutorBase
    pre_executor: Any = None  # accepted for coffea compatibility; files are opened by executor.map_files
    chunksize: int = DEFAULT_CHUNKSIZE
    maxchunks: int | None = None
    metadata_cache: Any = None  # a MutableMapping; coffea's LRUCache works
    skipbadfiles: Any = False
    xrootdtimeout: int | None = 60
    align_clusters: bool = False
    savemetrics: bool = False
    use_result_type: bool = False
    schema: type | None = NanoAODSchema
    processor_compression: int | None = 1
    format: str = "root"
    checkpointer: CheckpointerABC | None = None
    cachestrategy: Any = None
    uproot_options: dict = field(default_factory=dict)
    worker_check: Any = None  # picklable callable run on each worker before its first chunk; raises to refuse
    recorder: Any = None  # a processor.records.ChunkRecorder: per-chunk and run records, appended as they happen
    # seconds one chunk may run before it is ended as a failure naming it (see hpckit.processor.timeout:
    # enforced by Iterative, Futures' process pool, Parsl and TaskVine workers; not in Dask's worker threads)
    chunk_timeout: float | None = None
    # the persistent per-user file metadata cache (hpckit.processor.metacache): True (default), False, a
    # path or a MetadataCache; it sits under ``metadata_cache`` (coffea's in-memory mapping)
    persistent_metadata: Any = True
    refresh_metadata: bool = False  # read every file again (and update the persistent cache)

    def __post_init__(self) -> None:
        if not isinstance(self.executor, ExecutorBase):
            raise TypeError(f"executor must be an hpckit executor, got {type(self.executor).__name__}")
        if self.schema is None:
            raise ValueError("Schema must be set (NanoAODSchema or BaseSchema)")
        self.chunksize = check_chunksize(self.chunksize)
        if self.chunk_timeout is not None and not self.chunk_timeout > 0:
            raise ValueError(f"chunk_timeout must be a positive number of seconds, got {self.chunk_timeout!r}")
        if self.format not in OPTIONS:
            raise ValueError(f"format must be {' or '.join(map(repr, OPTIONS))}, got {self.format!r}")
        if self.format == "parquet" and self.align_clusters:
            raise ValueError("align_clusters is only supported for ROOT input (format='root')")
        if self.use_result_type and self.skipbadfiles is False:
            raise ValueError(
                "use_result_type=True requires skipbadfiles (True or a tuple of exception types): it names "
                "the errors returned as Err; other errors are raised"
            )
        if self.metadata_cache is None:
            self.metadata_cache = {}
        self._skipped: list[dict] = []
        self._store: Any = None  # the opened persistent cache (False: none)
        self._planned = {"files": 0, "from_cache": 0}

    @property
    def retries(self) -> int:
        return getattr(self.executor, "retries", 0)

    @staticmethod
    def automatic_retries(
        retries: int, skipbadfiles: Any, func: Any, *args: Any, use_result_type: bool = False, **kwargs: Any
    ) -> Any:
        """coffea's helper: ``func(*args, **kwargs)`` tried up to ``retries + 1`` times; after the last
        failure, an error ``skipbadfiles`` covers gives None (a skip, with a warning) unless
        ``use_result_type``, anything else is raised. (hpckit's own chunks retry only file errors.)"""
        for attempt in range(retries + 1):
            try:
                return func(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - coffea retries everything
                if attempt < retries:
                    warnings.warn(f"Performed attempt {attempt + 1} out of {retries + 1}")
                    continue
                if skip_matches(skipbadfiles, err) and not use_result_type:
                    warnings.warn(f"Skipping bad file after {attempt + 1} attempts. The last exception was: {err}")
                    return None
                raise
        return None

    @staticmethod
    def metadata_fetcher_root(xrootdtimeout: int | None, align_clusters: bool, uproot_options: dict, item: Any) -> Any:
        """coffea's per-file preprocessing step: ``{FileMeta}`` with numentries, uuid (and clusters)."""
        options = dict(uproot_options or {})
        if xrootdtimeout is not None:
            options.setdefault("timeout", xrootdtimeout)
        return Runner._fetch_metadata(FileMetaTask(options, 0, align_clusters, "root"), item)

    @staticmethod
    def metadata_fetcher_parquet(item: Any) -> Any:
        return Runner._fetch_metadata(FileMetaTask({}, 0, False, "parquet"), item)

    @staticmethod
    def _fetch_metadata(task: FileMetaTask, item: Any) -> Any:
        meta = task(item)
        if "error" in meta:
            raise meta["error"]
        found = FileMeta(item.dataset, item.filename, item.treename, {**(item.metadata or {}), **meta}, item.preload)
        return set_accumulator({found})

    # -- preprocessing -----------------------------------------------------------------------------
    def _still_valid(self, spec: Any, meta: Any) -> bool:
        """A metadata entry kept from an earlier run (this Runner's, or a cache the user passed) still describes
        the file: a local file's identity (size, mtime, inode, device) is the one it was read with; a remote
        file's is trusted only without a checkpointer (a checkpoint is found by the planned uuid, so a file
        replaced behind its URL would give the old file's saved results; without one, each chunk's uuid check
        catches it by name)."""
        ident = MetadataCache.identity(spec.filename)
        if ident == "remote":
            return self.checkpointer is None
        return ident is not None and isinstance(meta, dict) and meta.get("identity") == ident

    def _stop_on_missing_files(self, specs: list) -> None:
        """Local files that do not exist end the run at once, in one line with a count, before any file is
        opened (unless ``skipbadfiles`` covers a missing file: then they are skipped one by one, listed)."""
        from hpckit.core.errors import FileNotFound

        probe = FileNotFoundError("probe")
        if skip_matches(self.skipbadfiles, probe):
            return
        missing, looked = missing_local_files(specs)
        if not missing:
            return
        fix = "fix the paths in the fileset, or pass --skipbadfiles (skipbadfiles=True) to run without them"
        if len(missing) == 1:
            raise FileNotFound(f"file not found: {missing[0]} (the only missing file of the fileset's "
                               f"{len(specs):,}); {fix}", missing[0])
        if len(missing) >= MISSING_LIMIT:
            count = f"at least {len(missing)} of the fileset's {len(specs):,} files do not exist (stopped looking " \
                    f"after {len(missing)} missing, {looked:,} checked)"
        else:
            count = f"{len(missing)} of the fileset's {len(specs):,} files do not exist"
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise FileNotFound(f"{count}: {shown}; {fix}", missing[0])

    def preprocess(
        self,
        fileset: Any,
        treename: str | None = None,
        uproot_options: dict | None = None,
        *,
        trace: Any = None,
        processor_instance: Any = None,
    ) -> Generator[WorkItem, int | None, int]:
        """Yield the chunks of ``fileset`` in fileset order (``maxchunks`` applies per dataset).

        As in coffea, ``.send(n)`` changes the chunk size for the files not chunked yet, and the
        generator returns the final chunk size. ``trace``/``processor_instance`` are accepted for
        coffea compatibility: hpckit reads columns on first touch, so there is nothing to preload."""
        if trace is not None and processor_instance is None:
            raise ValueError("processor_instance must be provided when trace is specified")
        try:
            return (yield from self._chunks(fileset, treename, self._uproot_options(uproot_options), None))
        finally:
            self.executor.close()

    def _chunks(
        self, fileset: Any, treename: str | None, options: dict, job: ChunkJob | None
    ) -> Generator[WorkItem, int | None, int]:
        specs = normalize_fileset(fileset, treename, require_tree=self.format != "parquet")
        self._stop_on_missing_files(specs)
        task = FileMetaTask(options, self.retries, self.align_clusters, self.format)
        align = self.align_clusters
        key = lambda spec: (spec.dataset, spec.filename, spec.treename, align)  # noqa: E731
        keys = [key(s) for s in specs]
        fetched: dict = {}  # this call's metadata: a bounded metadata_cache may evict it meanwhile
        unique = list({k: s for k, s in zip(keys, specs)
                       if k not in self.metadata_cache or not self._still_valid(s, self.metadata_cache[k])}.values())
        self._planned = {"files": len(set(keys)), "from_cache": 0}
        # (the small case never opens the persistent cache: see below)
        store = self._persistent() if len(unique) > LIGHT_ABOVE else None
        what = f"{self.format}:{int(bool(self.align_clusters))}"
        # A few files are read as before, in full: the trees stay open for the chunks (forked Futures workers
        # inherit them, Dask runs a file's chunks where it was opened), so nothing is read twice. Files with
        # replicas are read each time: planning checks that every copy holds the same file.
        if store is not None and not self.refresh_metadata:
            # with a checkpointer a remote file's uuid is read afresh: checkpoints are found by it (_still_valid)
            single = [s for s in unique if not s.replicas and (self.checkpointer is None or not is_remote(s.filename))]
            found = {id(single[i]): meta for i, meta in store.lookup(single, what).items()}
            for spec in single:
                meta = found.get(id(spec))
                if meta is not None:  # valid now (the store compared a local file's identity)
                    meta = {**meta, "identity": MetadataCache.identity(spec.filename)}
                    fetched[key(spec)] = self.metadata_cache[key(spec)] = meta
            unique = [s for s in unique if id(s) not in found]
        self._planned["from_cache"] = self._planned["files"] - len(unique)  # this Runner's or the user's cache
        task.light = len(unique) > LIGHT_ABOVE
        if self.maxchunks is None and unique:  # every file is needed: let the executor open them in parallel
            with PlanProgress(self.executor.status and len(unique) > 10 * LIGHT_ABOVE, len(unique)) as plan:
                step = max(LIGHT_ABOVE, -(-len(unique) // 20)) if plan.enabled else len(unique)
                metas = []
                for i in range(0, len(unique), step):  # in steps only to move the bar
                    metas.extend(self.executor.map_files(task, unique[i : i + step], job))
                    plan.advance(len(unique[i : i + step]))
            for spec, meta in zip(unique, metas):
                fetched[key(spec)] = meta
                if "error" not in meta:
                    self.metadata_cache[key(spec)] = meta
            if store is not None:
                store.store(((s, m) for s, m in zip(unique, metas) if not s.replicas), what)
        chunksize = int(self.chunksize)
        per_dataset: dict[str, int] = {}
        for spec, k in zip(specs, keys):
            if self.maxchunks is not None and per_dataset.get(spec.dataset, 0) >= self.maxchunks:
                continue
            meta = fetched.get(k) or self.metadata_cache.get(k)
            if meta is None:
                meta = fetched[k] = task(spec)
                if "error" not in meta:
                    self.metadata_cache[k] = meta
                    if store is not None and not spec.replicas:
                        store.store([(spec, meta)], what)
            err = meta.get("error")
            if err is not None:
                if skip_matches(self.skipbadfiles, err) and not self.use_result_type:
                    warnings.warn(f"hpckit: skipping {spec.filename} (dataset {spec.dataset!r}): {err}")
                    self._skipped.append({"chunk": None, "file": spec.filename, "error": str(err)})
                    if self.recorder is not None:
                        self.recorder({"kind": "skipped", "t": time.time(), "dataset": spec.dataset,
                                       "file": spec.filename, "chunk": None, "error": str(err)})
                    continue
                raise err
            for start, stop in chunk_ranges(meta["numentries"], chunksize, meta.get("clusters")):
                if self.maxchunks is not None and per_dataset.get(spec.dataset, 0) >= self.maxchunks:
                    break
                per_dataset[spec.dataset] = per_dataset.get(spec.dataset, 0) + 1
                sent = yield WorkItem(
                    spec.dataset, spec.filename, spec.treename, start, stop, meta["uuid"], spec.metadata,
                    replicas=spec.replicas,
                )
                if sent is not None:  # coffea's preprocess(...).send(new_chunksize): from the next file on
                    chunksize = check_chunksize(sent)
        return chunksize

    def _persistent(self) -> Any:
        if self._store is None:
            store = open_cache(self.persistent_metadata)
            self._store = False if store is None else store
        return None if self._store is False else self._store

    def forget_metadata(self, filenames: Any) -> None:
        """Drop files from both metadata caches (their uuid changed under the same name)."""
        names = set(filenames)
        for k in [k for k in list(self.metadata_cache.keys()) if isinstance(k, tuple) and len(k) > 1 and k[1] in names]:
            self.metadata_cache.pop(k, None)
        store = self._persistent()
        if store is not None:
            store.forget(names)

    def _forget_changed(self, failures: list[tuple[Any, str]]) -> None:
        """A file replaced under the same name since it was planned (a chunk saw another uuid: ChunkJob)
        is forgotten by the metadata caches, so the next run reads it again. ``failures``: (file, message)."""
        names = {f for f, msg in failures if f and "changed since it was chunked" in msg}
        if names:
            self.forget_metadata(names)

    def _uproot_options(self, extra: dict | None) -> dict:
        options = dict(self.uproot_options)
        if self.xrootdtimeout is not None:
            options.setdefault("timeout", self.xrootdtimeout)
        options.update(extra or {})
        return options

    # -- running -----------------------------------------------------------------------------------
    def __call__(
        self,
        fileset: Any,
        processor_instance: Any = None,
        treename: str | None = None,
        uproot_options: dict | None = None,
        iteritems_options: dict | None = None,
        trace: Any = None,
    ) -> Any:
        result = self.run(
            fileset=fileset,
            processor_instance=processor_instance,
            treename=treename,
            uproot_options=uproot_options,
            iteritems_options=iteritems_options,
            trace=trace,
        )
        if self.use_result_type:
            if isinstance(result, Err):
                return result
            wrapped = result.unwrap()
        else:
            wrapped = result
        out = (wrapped["out"], wrapped.get("metrics", {})) if self.savemetrics else wrapped["out"]
        exception = wrapped.get("exception", 0)
        if self.use_result_type:
            return Err(exception, value=out) if exception not in (0, None) else Ok(out)
        return out

    def run(
        self,
        fileset: Any,
        processor_instance: Any = None,
        treename: str | None = None,
        uproot_options: dict | None = None,
        iteritems_options: dict | None = None,
        trace: Any = None,
    ) -> Any:
        """The raw wrapped output ``{"out", "metrics", "processed", "exception"}`` whatever ``savemetrics``
        is (``Ok(...)``/``Err(...)`` of it with ``use_result_type``). ``fileset`` may also be the chunks
        of ``preprocess``: a list or a generator of WorkItems."""
        if not self.use_result_type:
            return self._run(fileset, processor_instance, treename, uproot_options)
        try:
            return Ok(self._run(fileset, processor_instance, treename, uproot_options))
        except Exception as err:  # noqa: BLE001 - only what skipbadfiles names becomes Err
            if skip_matches(self.skipbadfiles, err):
                return Err(err)
            raise

    def _run(self, fileset: Any, processor_instance: Any, treename: str | None, uproot_options: dict | None) -> dict:
        if processor_instance is None:
            raise ValueError("processor_instance is required")
        t_start = time.perf_counter()
        self._skipped = []
        self._planned = {"files": 0, "from_cache": 0}
        reset_preferences()
        forget_remote()  # a remote file rewritten since an earlier run in this process is planned and read anew
        options = self._uproot_options(uproot_options)
        fingerprint = processor_fingerprint(processor_instance, self.schema)
        executor = self.executor
        on_driver = self.checkpointer is not None and not getattr(executor, "shared_filesystem", True)
        if on_driver and not getattr(executor, "checkpoints_on_driver", False):
            raise ValueError(f"{type(executor).__name__} has workers that cannot see the checkpoint directory "
                             f"(shared_filesystem=False) and cannot checkpoint on the driver: use the Dask, Parsl "
                             f"or TaskVine executor, or no checkpointer")
        job = ChunkJob(
            processor_blob=dump_processor(processor_instance, self.processor_compression),
            schema=self.schema,
            fingerprint=fingerprint,
            retries=self.retries,
            skipbadfiles=self.skipbadfiles,
            compression=executor.result_compression,
            checkpointer=None if on_driver else self.checkpointer,
            driver_checkpoints=DriverCheckpoints(self.checkpointer, fingerprint, executor.result_compression)
            if on_driver else None,
            uproot_options=options,
            processor_object=processor_instance,
            worker_check=self.worker_check,
            recorder=self.recorder,
            timeout=self.chunk_timeout,
            format=self.format,
            raise_skippable=self.use_result_type,
        )
        exception: Any = 0
        record = self.recorder.run_event if self.recorder is not None else _no_record
        record("start")
        try:  # the executor may keep workers from preprocessing to processing: close() ends them
            premade = as_work_items(fileset)
            # held to the end of the run as a few numbers a chunk (hpckit.processor.chunkplan)
            items = ChunkPlan(premade if premade is not None else self._chunks(fileset, treename, options, job))
            if not items:
                raise FilesetError("No chunks survived preprocessing: every file was skipped or the fileset is empty")
            t_pre = time.perf_counter()

            # checkpointed chunks go through the executor like the others: ChunkJob loads them where the
            # chunk would run, so they merge at their place in the fixed tree (a resumed run's output is
            # the same bytes as an uninterrupted one's)
            merged = Merger()
            record("planned", chunks=len(items), events=items.entries(), preprocess_s=t_pre - t_start,
                   files=self._planned["files"], files_metadata_from_cache=self._planned["from_cache"])
            with ChunkProgress(executor.status, len(items)) as progress:
                if self._skipped:
                    progress.failed(len(self._skipped))
                merged.add(executor.run(items, job, progress))
        except BaseException as err:
            record("error", error=f"{type(err).__name__}: {err}")
            self._forget_changed([(getattr(e, "path", None), str(e)) for e in error_chain(err)])
            raise
        finally:
            executor.close()
        result = merged.result or {}
        if isinstance(result, dict) and CARRIED_RECORDS in result:  # workers that could not reach the records file
            result = dict(result)
            carried = result.pop(CARRIED_RECORDS)
            if self.recorder is not None:
                for rec in sorted(carried, key=lambda r: r.get("t1") or r.get("t") or 0):
                    self.recorder(rec)
        if isinstance(result, dict) and "exception" in result:  # an executor written coffea's way failed
            result = dict(result)
            exception = result.pop("exception")
            if not skip_matches(self.skipbadfiles, exception):
                exception.partial_output = result.get("out")
                record("error", error=f"{type(exception).__name__}: {exception}")
                raise exception
        t_end = time.perf_counter()

        processed = result.get("processed") or ProcessedChunks()
        missing = [i for i in items if i.key not in processed]
        if missing and exception == 0:
            raise ChunkError(
                f"{len(missing)} chunk(s) never returned a result, first: {missing[0].describe()}; "
                "the executor lost them"
            )
        doubled = getattr(processed, "doubled", None)
        if doubled is not None and exception == 0:  # an executor's bug: those events would count twice
            chunk = WorkItem(doubled[0], doubled[1], doubled[2], doubled[3], doubled[4], doubled[5])
            raise ChunkError(
                f"the result of {chunk.describe()} was merged into the output more than once "
                f"({len(processed)} results for {len(items)} chunks): its events would be counted twice; "
                + (f"{type(executor).__name__} sent it back twice" if len(processed) != len(items)
                   else "the work items given to the Runner hold that chunk more than once")
            )
        self._forget_changed([(s.get("file"), s.get("error", "")) for s in result.get("metrics", {}).get("skipped", ())])
        for skipped in result.get("metrics", {}).get("skipped", ()):  # skipped on a worker: say so here too
            warnings.warn(f"hpckit: skipped {skipped['chunk']}: {skipped['error']}")
        if "out" not in result:
            raise FilesetError("No chunks returned results: every file was skipped")
        out = result["out"]
        post = getattr(processor_instance, "postprocess", None)
        if callable(post):
            final = post(out)
            if final is not None:
                out = final

        from_checkpoint = int(result.get("metrics", {}).get("from_checkpoint", 0))
        metrics = self._metrics(result, items, from_checkpoint, t_start, t_pre, t_end, progress)
        record("end", events=metrics["entries"], walltime=metrics["walltime"])
        return {"out": out, "metrics": metrics, "processed": processed, "exception": exception}

    def _metrics(self, result, items, from_checkpoint, t_start, t_pre, t_end, progress) -> dict:
        m = dict(result.get("metrics", {}))
        entries = items.entries()
        walltime = t_end - t_start
        skipped = list(m.get("skipped", [])) + self._skipped
        stats = getattr(self.executor, "stats", {}) or {}
        return {
            "bytesread": int(m.get("bytesread", 0)),
            "columns": sorted(m.get("columns", ())),
            "entries": int(m.get("entries", 0)),
            "chunks": len(items),
            "chunks_from_checkpoint": from_checkpoint,
            "chunks_processed": len(items) - from_checkpoint,
            # files planned, and how many of them had their metadata from the caches (not opened)
            "files": self._planned["files"],
            "files_metadata_from_cache": self._planned["from_cache"],
            "processtime": float(m.get("processtime", 0.0)),
            "walltime": walltime,
            "preprocesstime": t_pre - t_start,
            "events_per_second": entries / walltime if walltime > 0 else 0.0,
            "time_to_first_result": (progress.first_result_at - t_start) if progress.first_result_at else None,
            "retries": int(m.get("retries", 0)) + int(stats.get("retried", 0)),
            "workers": sorted(set(m.get("workers", ())) | set(stats.get("workers", ()))),
            "engine_workers": sorted(str(w) for w in stats.get("engine_workers", ())),
            # per worker, what its worker_check returned (launch: the lock hash it runs, its python)
            "worker_environments": [{"worker": w, "environment": json.loads(e) if e.startswith("{") else e}
                                    for w, e in sorted(m.get("environments", ()))],
            "skipped": skipped,
            # remote data: requests made, which copy served how many chunks, switches to another copy
            "requests": int(m.get("requests", 0)),
            "served_by": dict(sorted(m.get("served_by", {}).items())),
            "failovers": int(m.get("failovers", 0)),
        }


def _no_record(event: str, **fields: Any) -> None:
    """Stands in for ``ChunkRecorder.run_event`` when the Runner has no recorder."""
