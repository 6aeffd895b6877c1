"""Run chunks on a Dask distributed cluster and merge them there, in a tree, so the driver gets one result.

* The ``ChunkJob`` (with the cloudpickled processor inside) is scattered once; every chunk task refers to
  that one future, so the processor crosses the network once per worker, not once per task.
* Chunks go out through the bounded window every executor shares; chunk results are merged on the
  cluster in groups of ``treereduction`` (``merge_payloads``) as soon as a group's tasks are out. Each
  merged result comes to the driver and goes into the next level's merge as data, so the scheduler
  forgets the merged tasks (it keeps a task's dependencies as long as the task, to recompute it): the
  scheduler and the driver hold a window of chunks and a few results per tree level, not the tree.
* ``retries``: Dask re-runs a task that raised up to ``retries`` times; a task whose worker died is re-run
  by the scheduler on its own (up to ``distributed.scheduler.allowed-failures``, then ``KilledWorker``).
  Every re-run (either kind) is counted by a scheduler plugin installed for the run into ``stats["retried"]``.
* ``client=None``: a ``LocalCluster`` of process workers (one thread each, ``workers`` of them, default one
  per core) is started for the call and closed after it. It listens on 127.0.0.1 only and speaks TLS with
  a certificate made for the run (:func:`hpckit.io.tls.temporary_security`), so no other local user's
  client can connect and run code; its dashboard binds to ``dashboard_address`` (loopback by default).
* ``use_dataframes=True``: each chunk's output must be a pandas DataFrame; the run returns a
  ``dask.dataframe`` made of those chunk frames, still living on the workers (so it needs a ``client`` the
  caller keeps open), as the output handed to ``postprocess`` and returned. Metrics and the processed
  chunks are still merged in a tree. Not combinable with a checkpointer.
* ``shared_filesystem=False`` with a checkpointer: each chunk's result also comes to the driver, which
  saves it (:class:`hpckit.processor.work.DriverCheckpoints`); a chunk saved before is not sent out.
"""

from __future__ import annotations

import contextlib

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from hpckit.core.errors import EngineError
from hpckit.processor.executors._remote import chunk_failure, run_stats
from hpckit.processor.executors._groups import ChunkGroups, describe_run
from hpckit.processor.executors._window import SubmitWindow, window_size
from hpckit.processor.executors.base import ExecutorBase, missing_extra
from hpckit.processor.accumulate import DEFAULT_TREE_WIDTH, MergeTree, canonical_result
from hpckit.processor.planning import FileBatch, batch_size, in_batches
from hpckit.processor.serialize import decompress
from hpckit.processor.work import ChunkJob, merge_payloads, run_chunks


def _run_chunk(item, job: ChunkJob):
    return job(item)


def _the_job(job: ChunkJob) -> ChunkJob:
    return job


@dataclass(frozen=True)
class _Payload:
    """A merged result the driver sends back as data (opaque to Dask's argument traversal)."""

    value: Any


def _merge(group: list, compression: Any) -> Any:
    return merge_payloads([g.value if isinstance(g, _Payload) else g for g in group], compression)


def _frame_of(result: dict) -> Any:
    return result.get("out")


def _without_frame(result: dict) -> dict:
    return {k: v for k, v in result.items() if k != "out"}


# distributed keeps, for debugging, its last ``low-level-log-length`` (1,000) transitions and messages of
# every stream; in a scheduler hpckit starts in the driver those keep whole task specs alive. 100 still
# shows a task's recent story. Measured with 40,000 chunks (docs/scale.md): the driver's peak and time fall.
QUIET_LOGS = {"distributed.admin.low-level-log-length": 100}


def _rerun_counter():
    """A scheduler plugin counting the re-runs of one run's tasks (a task sent to ``processing`` again: a
    retry after an error, or a worker lost under it). The transition log cannot: it keeps only the last
    ``low-level-log-length`` transitions, so a retry early in a long run had fallen out of it."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class RerunCounter(SchedulerPlugin):
        def __init__(self, prefix: str):
            self.prefix = prefix
            self.name = f"{prefix}reruns"
            self.started: set = set()  # this run's tasks that ran once and are not yet forgotten
            self.reruns = 0

        def transition(self, key, start, finish, *args, **kwargs):
            if not (isinstance(key, str) and key.startswith(self.prefix)):
                return
            if finish == "processing":
                if key in self.started:
                    self.reruns += 1
                else:
                    self.started.add(key)
            elif finish == "forgotten":
                self.started.discard(key)

    return RerunCounter


@dataclass
class DaskExecutor(ExecutorBase):
    checkpoints_on_driver = True
    client: Any = None
    treereduction: int = DEFAULT_TREE_WIDTH
    priority: int = 0
    use_dataframes: bool = False
    workers: int | None = None  # only for client=None: size of the LocalCluster started for the run
    heavy_input: Any = None  # coffea's; hpckit sends the processor once per worker whatever this says
    worker_affinity: bool = False  # coffea's; hpckit always prefers the worker that has the chunk's file open
    dashboard_address: str = "127.0.0.1:0"  # only for client=None: where its dashboard listens
    window: int | None = None  # chunks submitted ahead of the oldest unfinished one (None: max(64, 16 x workers))
    # tiny chunks sent a whole merge group a task (None: when the first chunks show they are tiny)
    group_chunks: bool | None = None
    _session: Any = field(default=None, init=False, repr=False, compare=False)  # (client, cluster) we started
    _file_workers: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise missing_extra("dask distributed", "dask") from None
        if int(self.treereduction) < 2:
            raise ValueError(f"treereduction must be at least 2, got {self.treereduction}")
        window_size(1, self.window)
        if self.use_dataframes:
            try:
                import dask.dataframe  # noqa: F401
            except ImportError:
                raise missing_extra("dask.dataframe (pandas, pyarrow)", "dask") from None
            if self.client is None:
                raise ValueError(
                    "use_dataframes=True returns a dask DataFrame whose partitions live on the cluster: "
                    "pass a client= that you keep open"
                )

    @property
    def result_compression(self) -> int | None:
        return None if self.use_dataframes else self.compression

    def map_files(self, task, specs, job=None) -> list:
        """Open the files on the workers, in parallel; each chunk later prefers the worker that already
        has its file open (the tree metadata of real NanoAOD takes a second to read)."""
        if len(specs) < 2:
            return super().map_files(task, specs, job)
        client, _ = self._client()
        prefix = f"hpckit-{uuid.uuid4().hex[:10]}-meta-"
        # a batch of files a task (hpckit.processor.planning): 10^4 files are not 10^4 scheduler round trips
        n_workers = len(client.scheduler_info(n_workers=-1).get("workers", {})) or 1
        batches = in_batches(specs, batch_size(len(specs), n_workers))
        futures = client.map(FileBatch(task), batches, key=[f"{prefix}{i}" for i in range(len(batches))],
                             retries=self.retries)
        results = client.gather(futures)
        who = client.who_has(futures)
        self._file_workers = {
            spec.filename: list(who[fut.key])[0]
            for batch, fut in zip(batches, futures) if who.get(fut.key) for spec in batch
        }
        del futures
        return [meta for batch in results for meta in batch]

    def close(self) -> None:
        self._file_workers = {}
        if self._session is not None:
            client, cluster = self._session
            self._session = None
            client.close()
            cluster.close()

    def _client(self) -> tuple[Any, Any]:
        if self.client is not None:
            return self.client, None
        if self._session is not None:
            return self._session
        from distributed import Client, LocalCluster

        import dask

        from hpckit.io.tls import temporary_security

        security = temporary_security()
        with dask.config.set(QUIET_LOGS):  # read when the scheduler, workers and streams start
            cluster = LocalCluster(
                n_workers=self.workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                protocol="tls://",
                security=security,
                dashboard_address=self.dashboard_address,
            )
            try:
                self._session = (Client(cluster, security=security), cluster)
            except BaseException:
                cluster.close()
                raise
        return self._session

    def run(self, items, job, progress) -> Any:
        if self.use_dataframes and (job.checkpointer is not None or job.driver_checkpoints is not None):
            raise ValueError("use_dataframes=True cannot be combined with a checkpointer")
        self.stats = {}
        opened_here = self.client is None and self._session is None
        client, cluster = self._client()
        prefix = f"hpckit-{uuid.uuid4().hex[:10]}-"
        live: set[Any] = set()  # futures this run holds: cancelled if it fails on a client of the caller's
        counter = self._count_reruns(client, prefix)
        try:
            result, engine_workers = self._run(client, prefix, items, job, progress, live)
            retried = self._reruns(client, counter)
        except BaseException:
            if cluster is None:
                # only what this run holds: force=True would also cancel the merges' dependents that no
                # client wants any more, which trips an assertion in distributed's scheduler (a traceback
                # in a launch's stderr, where the scheduler runs)
                with contextlib.suppress(Exception):
                    client.cancel(list(live))
            raise
        finally:
            live.clear()
            if counter is not None:
                with contextlib.suppress(Exception):
                    client.unregister_scheduler_plugin(counter)
            if opened_here:
                self.close()
        self.stats = {**run_stats(result, retried, engine_workers), **self.stats}
        return result

    def _run(self, client, prefix, items, job, progress, live) -> tuple[Any, int, set]:
        from distributed import as_completed

        engine_workers = set(client.scheduler_info(n_workers=-1).get("workers", {}))
        progress.set_workers(len(engine_workers))
        # the processor goes to the cluster once, as a task whose input is the job itself: when every worker
        # holding it is gone (walltime, preemption), the scheduler recomputes it on a new worker, where
        # scattered data would be lost for good
        job_future = client.submit(_the_job, job, key=f"{prefix}job", pure=False, retries=self.retries)
        # not in `live`: cancelling it would cancel its dependents, the chunks, some of which no client wants
        # any more (their merges hold them) - distributed's scheduler asserts on that; it is released with
        # the last reference to it instead
        pool = sorted(engine_workers)
        homes: dict[str, Any] = {}
        # chunks go out through the shared bounded window; a merge is submitted as soon as its group's
        # tasks are (the scheduler runs it when they are done), so the scheduler, the cluster's memory and
        # the driver hold a window of chunks and one partial result per tree level, not the whole graph
        window = SubmitWindow(len(items), window_size(len(engine_workers), self.window))
        tree = MergeTree(len(items), self.treereduction)
        finished = as_completed()
        frames: list[Any] | None = [] if self.use_dataframes else None
        saved = job.driver_checkpoints  # checkpoints are per chunk: no merge group a task then
        grouping = ChunkGroups(len(items), tree.width, len(engine_workers),
                               False if frames is not None or saved is not None else self.group_chunks)
        grouping.widen(window)

        merging: dict[str, tuple[int, int]] = {}  # merge task key -> its node (level, index) in the tree

        def merge(node: tuple[int, int], group: list[Any]) -> None:
            fut = client.submit(
                _merge,
                group,
                job.compression,
                key=f"{prefix}merge-{node[0]}-{uuid.uuid4().hex[:8]}",
                retries=self.retries,
                priority=self.priority + node[0],  # merge early: frees worker memory sooner
            )
            live.difference_update(g for g in group if not isinstance(g, _Payload))  # the merge holds them now
            live.add(fut)
            merging[fut.key] = node
            finished.add(fut)

        def place(level: int, index: int, value: Any) -> None:
            for node, group in tree.put(level, index, value):
                merge(node, group)

        def submit_more() -> None:
            taken = window.take()
            while taken:  # chunks answered from the driver's checkpoints free the window at once
                for i in taken:
                    submit(i)
                taken = window.take()

        def submit(i: int) -> None:
            node = grouping.take(i)
            if node is None:
                return  # its group goes out with the group's last chunk
            item = items[i] if node[0] == 0 else items[grouping.runs[node][0]]
            payload = saved.load(item) if saved is not None else None
            if payload is not None:  # at its place in the tree, as the chunk's result would be
                place(0, i, _Payload(payload))
                progress.advance(1, len(item))
                window.finish(i)
                return
            # the worker that opened the file in preprocessing, else one per file in turn: chunks of a
            # file then meet their open file, and tasks with a (loose) place skip the scheduler's
            # root-task queue, which costs a scheduler round trip between two tasks on a worker
            where = homes.get(item.filename)
            if where is None:
                where = self._file_workers.get(item.filename) or (pool[len(homes) % len(pool)] if pool else "")
                homes[item.filename] = where
            placement = {"workers": [where], "allow_other_workers": True} if where else {}
            if node[0]:
                lo, hi = grouping.runs[node]
                fut = client.submit(run_chunks, items[lo:hi], job=job_future, key=f"{prefix}group-{node[1]}",
                                    retries=self.retries, priority=self.priority, **placement)
                finished.add(fut)
                live.add(fut)
                place(*node, fut)
                return
            fut = client.submit(_run_chunk, item, job=job_future, key=f"{prefix}chunk-{i}",
                                retries=self.retries, priority=self.priority, **placement)
            finished.add(fut)
            leaf = fut
            if frames is not None:
                frames.append(client.submit(_frame_of, fut, key=f"{prefix}frame-{i}"))
                leaf = client.submit(_without_frame, fut, key=f"{prefix}meta-{i}")
            live.add(leaf)
            place(0, i, leaf)

        submit_more()
        polled = time.monotonic()
        for fut in finished:
            node = merging.pop(fut.key, None)
            if node is not None:
                # a merge's result comes to the driver and goes into the next merge as data: the scheduler
                # then forgets the merge and the chunks under it (a task's dependencies are kept as long
                # as it is, to recompute it: the whole tree's lineage would stay in the scheduler)
                live.discard(fut)
                try:
                    payload = fut.result()
                except Exception as err:
                    raise chunk_failure("merging results", err, self.retries + 1) from err
                del fut
                place(*node, _Payload(payload))
                continue
            index = int(fut.key.rsplit("-", 1)[1])
            lo, hi = grouping.runs.pop((1, index)) if fut.key.startswith(f"{prefix}group-") else (index, index + 1)
            if fut.status == "error":
                raise self._error(fut, items[lo], hi - lo)
            if saved is not None:  # its workers cannot write the checkpoint: its result comes here too
                saved.save(items[lo], fut.result())
            del fut  # the chunk's result stays on the cluster only until its merge has run
            progress.advance(hi - lo, sum(len(items[i]) for i in range(lo, hi)))
            for i in range(lo, hi):
                window.finish(i)
            grouping.finished(hi - lo, window)
            if time.monotonic() - polled > 2.0:  # workers come and go: keep the count, names and window fresh
                polled = time.monotonic()
                now = set(client.scheduler_info(n_workers=-1).get("workers", {}))
                engine_workers |= now
                progress.set_workers(len(now))
                if self.window is None:
                    window.resize(window_size(len(now)))
                    grouping.workers = max(1, len(now))
                    grouping.widen(window)
            submit_more()
        last_chunk = time.monotonic()
        engine_workers |= set(client.scheduler_info(n_workers=-1).get("workers", {}))
        root = tree.root  # a merged payload, or the one chunk's future
        try:
            payload = root.value if isinstance(root, _Payload) else root.result()
        except Exception as err:
            raise chunk_failure("merging results", err, self.retries + 1) from err
        result = canonical_result(decompress(payload))
        self.stats = {"merge_tail_s": time.monotonic() - last_chunk, "in_flight_max": window.in_flight_max,
                      "grouped_chunks": grouping.grouped}
        if frames is not None:
            import dask.dataframe as dd

            result = dict(result)
            result["out"] = dd.from_delayed(frames, verify_meta=False)
        return result, engine_workers

    @staticmethod
    def _count_reruns(client: Any, prefix: str) -> str | None:
        """The name of the re-run counter installed on the scheduler for this run (sent by value: the
        scheduler needs no hpckit); None where it cannot be installed: the run then reports no retries."""
        try:
            plugin = _rerun_counter()(prefix)
            client.register_plugin(plugin, name=plugin.name)
            return plugin.name
        except Exception:  # noqa: BLE001 - counting is a metric, not worth failing the run for
            return None

    @staticmethod
    def _reruns(client: Any, counter: str | None) -> int:
        if counter is None:
            return 0

        def reruns(dask_scheduler=None) -> int:  # on the scheduler; by value, like the plugin: no hpckit there
            plugin = dask_scheduler.plugins.get(counter)
            return plugin.reruns if plugin is not None else 0

        try:
            return int(client.run_on_scheduler(reruns))
        except Exception:  # noqa: BLE001
            return 0

    def _error(self, fut: Any, item: Any, chunks: int = 1) -> BaseException:
        from distributed import KilledWorker

        err = fut.exception()
        what = describe_run(item, chunks)
        if isinstance(err, KilledWorker):
            return EngineError(
                f"{what} was running on Dask workers that died each time it was tried "
                f"(KilledWorker: {err}); the processor may use too much memory or crash the interpreter"
            )
        return chunk_failure(what, err, self.retries + 1)
