"""Run chunks on TaskVine workers that connect back to a manager this executor starts.

* ``mode="serverless"`` (default): one TaskVine library (``LibraryTask``) per worker holds the imports,
  the unpickled processor and the open-file cache; each chunk and each merge is a ``FunctionCall`` run
  inside it (exec mode "direct": files stay open across calls). A chunk lists a tiny cached per-file
  token as input, so TaskVine's file-aware scheduling prefers the worker that already ran (and opened)
  that file, as Dask's locality does. The worker's ``python`` needs hpckit, ndcctools and threadpoolctl.
* ``mode="tasks"``: every chunk is a ``PythonTask`` (a fresh ``python3`` per task: imports, unpickling
  and file opening each time, about a second and a half a task); for workers that cannot run libraries.
* Workers connect by host and port (``vine_worker HOST PORT``, or ``vine_factory``); a ``manager_name`` is
  only used when given (then the manager advertises itself to the catalog server named by
  ``CATALOG_HOST``, and workers may find it by name).
* Task mode: the ``ChunkJob`` (with the processor inside) is part of one function object shared by every chunk task:
  TaskVine declares it once and caches it on each worker, so the processor crosses the network once per
  worker. Each task carries only its chunk description. ``environment_file`` (a poncho/conda-pack
  tarball) is unpacked on each worker once and the task's ``python3`` comes from it; without one, the
  worker's own ``python3`` (with hpckit and the same cloudpickle) runs the tasks.
  ``extra_input_files`` are shipped (and cached) next to every task under their base names.
* Results come back to the manager and are merged by merge calls on the workers in the fixed merge
  tree (``treereduction`` consecutive chunks at a time; the shared streaming driver), so the output does
  not depend on completion order and the driver never folds them one by one.
* A task that raised is submitted again up to ``retries`` times; tasks whose worker disconnected are
  re-dispatched by TaskVine on its own. Both are counted in ``stats["retried"]``.
* Planning many files (more than ``LIGHT_ABOVE``) runs on the workers too: a ``PythonTask`` per batch of
  files, two batches per connected worker, at least eight (each starts a ``python3``), so the driver does not open
  10^4 remote files one after the other. The manager started for it stays up for the run (``close``).

TaskVine is not on PyPI: ``conda install -c conda-forge ndcctools``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hpckit.core.defaults import VINE_PORT
from hpckit.core.errors import EngineError, MissingExtra
from hpckit.processor.executors._remote import (
    JobRef,
    StreamingDriver,
    guarded,
    guarded_merge,
    run_cached,
    run_stats,
)
from hpckit.processor.executors._window import window_size
from hpckit.processor.accumulate import DEFAULT_TREE_WIDTH
from hpckit.processor.executors.base import ExecutorBase
from hpckit.processor.planning import FileBatch, batch_size, in_batches


def _missing_taskvine() -> ImportError:
    return ImportError(
        "ndcctools (TaskVine) is not installed; install it with: pip install 'hpckit[taskvine]' and "
        "conda install -c conda-forge ndcctools (TaskVine is not on PyPI)"
    )


def _import_vine() -> Any:
    try:
        from ndcctools import taskvine
    except ImportError:
        raise _missing_taskvine() from None
    return taskvine


def _library_setup(ref: JobRef) -> None:
    """Runs once when the library starts on a worker: unpickle the job, import the event stack."""
    ref.load()
    import hpckit.events  # noqa: F401


def hpckit_chunk(key: str, item: Any) -> Any:  # a library function: its name is the FunctionCall's
    return guarded(run_cached, JobRef(key), item)


def hpckit_merge(payloads: list, compression: Any) -> Any:
    return guarded_merge(payloads, compression)


class _VineEngine:
    def __init__(self, vine: Any, manager: Any, executor: "TaskVineExecutor", job: Any):
        self.vine = vine
        self.m = manager
        self.ex = executor
        self.chunk_fn = functools.partial(guarded, job)  # one object: declared once, cached on workers
        self.merge_fn = functools.partial(guarded_merge, compression=job.compression)
        self.compression = job.compression
        self.tasks: dict[int, Any] = {}
        self.submitted = 0
        self.inputs = [(manager.declare_file(p, cache=True), os.path.basename(p)) for p in executor.extra_input_files]
        self.proxy = manager.declare_file(executor.x509_proxy, cache=True) if executor.x509_proxy else None
        if self.proxy is not None:
            self.inputs.append((self.proxy, "x509_proxy"))
        self.serverless = executor.mode == "serverless"
        self.env = None
        if self.serverless:
            self.ref = JobRef.of(job)
            self.library = f"hpckit-{self.ref.key}"
            self.tokens: dict[str, Any] = {}
            self._install_library(job)
        elif executor.environment_file:
            self.env = manager.declare_poncho(executor.environment_file, cache=True)

    def _install_library(self, job: Any) -> None:
        ex, m = self.ex, self.m
        try:
            lib = m.create_library_from_functions(
                self.library, hpckit_chunk, hpckit_merge,
                poncho_env=ex.environment_file, add_env=bool(ex.environment_file),
                exec_mode="direct", library_context_info=[_library_setup, [self.ref], {}],
            )
        except ModuleNotFoundError as err:  # a cctools built from source lacks what conda-forge's pulls in
            name = err.name or "a module"
            raise MissingExtra(f"TaskVine's serverless mode needs {name}, which ndcctools imports to build its "
                               f"library: pip install {name.replace('_', '-')}, or "
                               "TaskVineExecutor(mode='tasks')") from None
        lib.set_cores(ex.cores)
        lib.set_function_slots(1)  # "direct": calls run one at a time inside the library process
        if ex.memory is not None:
            lib.set_memory(ex.memory)
        if ex.disk is not None:
            lib.set_disk(ex.disk)
        if ex.gpus is not None:
            lib.set_gpus(ex.gpus)
        if self.proxy is not None:
            lib.set_env_var("X509_USER_PROXY", "x509_proxy")  # relative: calls run in their sandbox
        m.install_library(lib)

    def _token(self, filename: str) -> Any:
        """A few cached bytes per file: TaskVine sends a call to the worker holding most of its cached
        inputs, so later chunks of a file prefer the worker that already opened it."""
        token = self.tokens.get(filename)
        if token is None:
            token = self.tokens[filename] = self.m.declare_buffer(filename.encode(), cache=True)
        return token

    def _submit_call(self, call: Any, category: str) -> int:
        call.set_category(category)
        if self.ex.retries:
            call.set_retries(self.ex.retries + 1)
        for f, name in self.inputs:
            call.add_input(f, name)
        task_id = self.m.submit(call)
        self.tasks[task_id] = call
        self.submitted += 1
        return task_id

    def _submit(self, task: Any, category: str) -> int:
        ex = self.ex
        task.set_category(category)
        task.set_cores(ex.cores)
        if ex.memory is not None:
            task.set_memory(ex.memory)
        if ex.disk is not None:
            task.set_disk(ex.disk)
        if ex.gpus is not None:
            task.set_gpus(ex.gpus)
        if ex.retries:
            task.set_retries(ex.retries + 1)
        for f, name in self.inputs:
            task.add_input(f, name)
        if self.env is not None:
            task.add_environment(self.env)
        if self.proxy is not None:
            task.set_env_var("X509_USER_PROXY", "x509_proxy")
        task_id = self.m.submit(task)
        self.tasks[task_id] = task
        self.submitted += 1
        return task_id

    def workers(self) -> int:
        return int(self.m.stats.workers_connected)

    def submit_chunk(self, item):
        if self.serverless:
            call = self.vine.FunctionCall(self.library, "hpckit_chunk", self.ref.key, item)
            call.add_input(self._token(item.filename), "hpckit-file-token")
            return self._submit_call(call, "chunk")
        return self._submit(self.vine.PythonTask(self.chunk_fn, item), "chunk")

    def submit_merge(self, payloads):
        if self.serverless:
            return self._submit_call(self.vine.FunctionCall(self.library, "hpckit_merge", payloads, self.compression), "merge")
        return self._submit(self.vine.PythonTask(self.merge_fn, payloads), "merge")

    def wait(self, handles):
        while True:
            task = self.m.wait(self.ex.wait_timeout)
            if task is None:
                continue
            task = self.tasks.pop(task.id, task)
            worker = f"{task.hostname} {task.addrport}".strip() if task.addrport else ""
            if task.successful():
                value = task.output
                if isinstance(value, str) and self.serverless:  # the library's own failure text
                    value = EngineError(f"TaskVine function call failed in the library:\n{value[-4000:]}")
                return [(task.id, not isinstance(value, BaseException), value, 0, worker)]
            out = (task.std_output or "")[-4000:]
            err = EngineError(f"TaskVine task ended with result {task.result!r}, exit code {task.exit_code}; output:\n{out}")
            return [(task.id, False, err, 0, worker)]

    @property
    def redispatched(self) -> int:
        stats = self.m.stats
        libraries = int(stats.workers_joined) if self.serverless else 0  # one library sent to each worker
        return max(0, int(stats.tasks_dispatched) - self.submitted - libraries)


@dataclass
class TaskVineExecutor(ExecutorBase):
    checkpoints_on_driver = True
    port: Any = VINE_PORT  # an int, or (low, high) for the first free port in a range; 0 for any free port
    manager_name: str | None = None
    cores: int = 1
    memory: int | None = None  # MB per task
    disk: int | None = None  # MB per task
    gpus: int | None = None
    environment_file: str | None = None
    extra_input_files: Sequence[str] = ()
    x509_proxy: str | None = None
    treereduction: int = DEFAULT_TREE_WIDTH
    filepath: str = "/tmp"  # where the manager's staging directory and logs go (removed afterwards)
    ssl: bool = False
    password_file: str | None = None
    wait_timeout: int = 2
    # coffea's other TaskVineExecutor arguments, accepted with the same defaults; see docs/executors.md for
    # which ones change what hpckit does
    status_display_interval: int = 5
    verbose: bool = False
    print_stdout: bool = False
    replicas: int = 1
    disable_worker_transfers: bool = False
    resource_monitor: str | None = "off"
    resources_mode: str | None = "fixed"
    fast_terminate_workers: int | None = None
    split_on_exhaustion: bool = True
    checkpoint_proportion: float = 0.1
    concurrent_reads: int = 2
    custom_init: Any = None
    mode: str = "serverless"  # "serverless": a library per worker runs function calls; "tasks": a process per chunk
    window: int | None = None  # chunks submitted ahead of the oldest unfinished one (None: max(64, 16 x workers))
    # the live vine.Manager while run() runs (e.g. to read .port when port=0)
    manager: Any = field(default=None, init=False, repr=False, compare=False)
    _session: Any = field(default=None, init=False, repr=False, compare=False)  # ExitStack of the open manager

    def __post_init__(self) -> None:
        _import_vine()
        window_size(1, self.window)
        if self.mode not in ("serverless", "tasks"):
            raise ValueError(f"TaskVineExecutor mode must be 'serverless' or 'tasks', got {self.mode!r}")
        if int(self.treereduction) < 2:
            raise ValueError(f"treereduction must be at least 2, got {self.treereduction}")
        self.extra_input_files = tuple(self.extra_input_files or ())
        for path in (*self.extra_input_files, self.environment_file, self.x509_proxy, self.password_file):
            if path is not None and not os.path.exists(path):
                raise FileNotFoundError(f"TaskVineExecutor: {path} does not exist")

    def _open(self) -> Any:
        """The manager of this run, started once (by planning or by ``run``) and ended by ``close``."""
        if self._session is None:
            vine = _import_vine()
            stack = contextlib.ExitStack()
            run_dir = tempfile.mkdtemp(prefix="hpckit-vine-", dir=self.filepath)
            stack.callback(shutil.rmtree, run_dir, ignore_errors=True)
            try:
                manager = stack.enter_context(vine.Manager(port=self.port, name=self.manager_name,
                                                           run_info_path=run_dir, staging_path=run_dir,
                                                           ssl=self.ssl or None))
                if self.password_file:
                    manager.set_password_file(self.password_file)
            except BaseException:
                stack.close()
                raise
            self._session, self.manager = stack, manager
        return self.manager

    def close(self) -> None:
        stack, self._session, self.manager = self._session, None, None
        if stack is not None:
            stack.close()

    def map_files(self, task, specs, job=None) -> list:
        """Many files: planned on the workers, two batches of files per worker, each a ``PythonTask``."""
        if len(specs) < 2 or not getattr(task, "light", False):
            return super().map_files(task, specs, job)
        vine = _import_vine()
        manager = self._open()
        env = manager.declare_poncho(self.environment_file, cache=True) if self.environment_file else None
        manager.wait(0)  # the manager takes in the workers that connected (its stats count them then)
        # workers still coming (batch jobs in the queue) take later batches: plan for at least four
        workers = max(4, int(manager.stats.workers_connected))
        batches = in_batches(specs, batch_size(len(specs), workers, per_worker=2, most=4096))
        plan = functools.partial(FileBatch(task))  # one hashable function object: declared to the workers once
        order: dict[int, int] = {}
        for i, batch in enumerate(batches):
            t = vine.PythonTask(plan, batch)
            t.set_category("planning")
            t.set_cores(self.cores)
            if self.retries:
                t.set_retries(self.retries + 1)
            if env is not None:
                t.add_environment(env)
            order[manager.submit(t)] = i
        results: list = [None] * len(batches)
        while order:
            t = manager.wait(self.wait_timeout)
            if t is None or t.id not in order:
                continue
            i = order.pop(t.id)
            if not t.successful() or isinstance(t.output, BaseException):
                out = (t.std_output or "")[-2000:]
                raise EngineError(f"TaskVine planning task for {len(batches[i])} file(s) from {batches[i][0].filename} "
                                  f"failed (result {t.result!r}, exit code {t.exit_code}): "
                                  f"{t.output if isinstance(t.output, BaseException) else out}")
            results[i] = t.output
        return [meta for batch in results for meta in batch]

    def run(self, items, job, progress) -> Any:
        vine = _import_vine()
        opened_here = self._session is None
        manager = self._open()
        try:
            return self._run(manager, vine, items, job, progress)
        finally:
            if opened_here:
                self.close()

    def _run(self, manager, vine, items, job, progress) -> Any:
        engine = _VineEngine(vine, manager, self, job)
        progress.set_workers(int(manager.stats.workers_connected))
        driver = StreamingDriver(engine, self.retries, self.treereduction, progress, self.window,
                                 checkpoints=job.driver_checkpoints)
        try:
            result = driver.run(items)
        finally:
            if engine.serverless:
                # a library outlives its manager on the worker (holding its cores, so the worker never
                # idles out and cannot host the next run's library): stop every instance now
                try:
                    manager.remove_library(engine.library)
                except Exception:  # noqa: BLE001 - best effort while shutting down
                    pass
        self.stats = run_stats(result, driver.retried + engine.redispatched, driver.engine_workers)
        self.stats.update(held_max=driver.held_max, merge_tail_s=driver.merge_tail, in_flight_max=driver.in_flight_max)
        return result
