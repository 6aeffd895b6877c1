"""The Runner: preprocess a fileset into chunks, dispatch them to an executor, merge, postprocess."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hpckit.errors import ChunkError, FilesetError
from hpckit.events import NanoAODSchema
from hpckit.processor.accumulate import Merger
from hpckit.processor.checkpoint import CheckpointerABC, processor_fingerprint
from hpckit.processor.executors.base import ExecutorBase
from hpckit.processor.fileset import WorkItem, chunk_ranges, normalize_fileset
from hpckit.processor.progress import ChunkProgress
from hpckit.processor.serialize import dump_processor
from hpckit.processor.work import ChunkJob, FileMetaTask, skip_matches


@dataclass
class Runner:
    """``runner(fileset, processor_instance=...)`` -> output, or ``(output, metrics)`` with ``savemetrics``.

    ``skipbadfiles``: True skips every file that cannot be opened or read (missing, corrupt, truncated,
    no such tree); a tuple of exception types skips only those (matched along the cause chain).
    Skipped files are warned about and listed in ``metrics["skipped"]``. A processor that raises is
    never skipped: the local executors report it at once; the distributed ones re-run a failed task up to
    ``retries`` times (to them a lost worker and a raising task look alike), then its traceback reaches
    the caller.
    """

    executor: ExecutorBase
    pre_executor: Any = None  # accepted for coffea compatibility; files are opened by executor.map_files
    chunksize: int = 100_000
    maxchunks: int | None = None
    metadata_cache: dict | None = None
    skipbadfiles: Any = False
    xrootdtimeout: int | None = 60
    align_clusters: bool = False
    savemetrics: bool = False
    schema: type | None = NanoAODSchema
    processor_compression: int | None = 1
    checkpointer: CheckpointerABC | None = None
    uproot_options: dict = field(default_factory=dict)
    worker_check: Any = None  # picklable callable run on each worker before its first chunk; raises to refuse

    def __post_init__(self) -> None:
        if not isinstance(self.executor, ExecutorBase):
            raise TypeError(f"executor must be an hpckit executor, got {type(self.executor).__name__}")
        if self.schema is None:
            raise ValueError("Schema must be set (NanoAODSchema or BaseSchema)")
        if self.chunksize is None or int(self.chunksize) < 1:
            raise ValueError(f"chunksize must be a positive integer, got {self.chunksize!r}")
        if self.metadata_cache is None:
            self.metadata_cache = {}
        self._skipped: list[dict] = []

    @property
    def retries(self) -> int:
        return getattr(self.executor, "retries", 0)

    # -- preprocessing -----------------------------------------------------------------------------
    def preprocess(
        self, fileset: Any, treename: str | None = None, uproot_options: dict | None = None
    ) -> Iterator[WorkItem]:
        """Yield the chunks of ``fileset`` in fileset order (``maxchunks`` applies per dataset)."""
        try:
            yield from self._chunks(fileset, treename, self._uproot_options(uproot_options), None)
        finally:
            self.executor.close()

    def _chunks(self, fileset: Any, treename: str | None, options: dict, job: ChunkJob | None) -> Iterator[WorkItem]:
        specs = normalize_fileset(fileset, treename)
        task = FileMetaTask(options, self.retries, self.align_clusters)
        key = lambda spec: (spec.dataset, spec.filename, spec.treename, self.align_clusters)  # noqa: E731
        if self.maxchunks is None:  # every file is needed: let the executor open them in parallel
            todo = list({key(s): s for s in specs if key(s) not in self.metadata_cache}.values())
            if todo:
                for spec, meta in zip(todo, self.executor.map_files(task, todo, job)):
                    self.metadata_cache[key(spec)] = meta
        per_dataset: dict[str, int] = {}
        for spec in specs:
            if self.maxchunks is not None and per_dataset.get(spec.dataset, 0) >= self.maxchunks:
                continue
            meta = self.metadata_cache.get(key(spec))
            if meta is None:
                meta = self.metadata_cache[key(spec)] = task(spec)
            err = meta.get("error")
            if err is not None:
                del self.metadata_cache[key(spec)]  # failures are not cached
                if skip_matches(self.skipbadfiles, err):
                    warnings.warn(f"hpckit: skipping {spec.filename} (dataset {spec.dataset!r}): {err}")
                    self._skipped.append({"chunk": None, "file": spec.filename, "error": str(err)})
                    continue
                raise err
            for start, stop in chunk_ranges(meta["numentries"], int(self.chunksize), meta.get("clusters")):
                if self.maxchunks is not None and per_dataset.get(spec.dataset, 0) >= self.maxchunks:
                    break
                per_dataset[spec.dataset] = per_dataset.get(spec.dataset, 0) + 1
                yield WorkItem(spec.dataset, spec.filename, spec.treename, start, stop, meta["uuid"], spec.metadata)

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
    ) -> Any:
        wrapped = self.run(fileset, processor_instance, treename=treename, uproot_options=uproot_options)
        if self.savemetrics:
            return wrapped["out"], wrapped["metrics"]
        return wrapped["out"]

    def run(
        self,
        fileset: Any,
        processor_instance: Any = None,
        treename: str | None = None,
        uproot_options: dict | None = None,
    ) -> dict:
        """Like ``__call__`` but returns ``{"out", "metrics", "processed"}`` whatever ``savemetrics`` is."""
        if processor_instance is None:
            raise ValueError("processor_instance is required")
        t_start = time.perf_counter()
        self._skipped = []
        options = self._uproot_options(uproot_options)
        fingerprint = processor_fingerprint(processor_instance, self.schema)
        executor = self.executor
        job = ChunkJob(
            processor_blob=dump_processor(processor_instance, self.processor_compression),
            schema=self.schema,
            fingerprint=fingerprint,
            retries=self.retries,
            skipbadfiles=self.skipbadfiles,
            compression=executor.result_compression,
            checkpointer=self.checkpointer,
            uproot_options=options,
            processor_object=processor_instance,
            worker_check=self.worker_check,
        )
        try:  # the executor may keep workers from preprocessing to processing: close() ends them
            if isinstance(fileset, (list, tuple)) and all(isinstance(x, WorkItem) for x in fileset):
                items = list(fileset)
            else:
                items = list(self._chunks(fileset, treename, options, job))
            if not items:
                raise FilesetError("No chunks survived preprocessing: every file was skipped or the fileset is empty")
            t_pre = time.perf_counter()

            merged = Merger()
            todo = items
            from_checkpoint = 0
            if self.checkpointer is not None:
                todo = []
                for item in items:
                    saved = self.checkpointer.load(item, fingerprint)
                    if saved is None:
                        todo.append(item)
                    else:
                        merged.add(saved)
                        from_checkpoint += 1

            with ChunkProgress(executor.status, len(items)) as progress:
                if from_checkpoint:
                    progress.advance(from_checkpoint, sum(len(i) for i in items) - sum(len(i) for i in todo))
                if todo:
                    merged.add(executor.run(todo, job, progress))
        finally:
            executor.close()
        result = merged.result or {}
        t_end = time.perf_counter()

        processed = result.get("processed", set())
        missing = [i for i in items if i.key not in processed]
        if missing:
            raise ChunkError(
                f"{len(missing)} chunk(s) never returned a result, first: {missing[0].describe()}; "
                "the executor lost them"
            )
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

        metrics = self._metrics(result, items, from_checkpoint, t_start, t_pre, t_end, progress)
        return {"out": out, "metrics": metrics, "processed": processed}

    def _metrics(self, result, items, from_checkpoint, t_start, t_pre, t_end, progress) -> dict:
        m = dict(result.get("metrics", {}))
        entries = sum(len(i) for i in items)
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
        }
