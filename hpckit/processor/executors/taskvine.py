"""Run chunks as TaskVine ``PythonTask``s on workers that connect back to a manager this executor starts.

* Workers connect by host and port (``vine_worker HOST PORT``, or ``vine_factory``); a ``manager_name`` is
  only used when given (then the manager advertises itself to the catalog server named by
  ``CATALOG_HOST``, and workers may find it by name).
* The ``ChunkJob`` (with the processor inside) is part of one function object shared by every chunk task:
  TaskVine declares it once and caches it on each worker, so the processor crosses the network once per
  worker. Each task carries only its chunk description. ``environment_file`` (a poncho/conda-pack
  tarball) is unpacked on each worker once and the task's ``python3`` comes from it; without one, the
  worker's own ``python3`` (with hpckit and the same cloudpickle) runs the tasks.
  ``extra_input_files`` are shipped (and cached) next to every task under their base names.
* Results come back to the manager and are merged by merge tasks on the workers in batches of
  ``treereduction`` (the shared streaming driver), so the driver never folds them one by one.
* A task that raised is submitted again up to ``retries`` times; tasks whose worker disconnected are
  re-dispatched by TaskVine on its own. Both are counted in ``stats["retried"]``.

TaskVine is not on PyPI: ``conda install -c conda-forge ndcctools``.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hpckit.errors import EngineError
from hpckit.processor.executors._remote import StreamingDriver, guarded, guarded_merge, run_stats
from hpckit.processor.executors.base import ExecutorBase


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


class _VineEngine:
    def __init__(self, vine: Any, manager: Any, executor: "TaskVineExecutor", job: Any):
        self.vine = vine
        self.m = manager
        self.ex = executor
        self.chunk_fn = functools.partial(guarded, job)  # one object: declared once, cached on workers
        self.merge_fn = functools.partial(guarded_merge, compression=job.compression)
        self.tasks: dict[int, Any] = {}
        self.submitted = 0
        self.inputs = [(manager.declare_file(p, cache=True), os.path.basename(p)) for p in executor.extra_input_files]
        self.env = manager.declare_poncho(executor.environment_file, cache=True) if executor.environment_file else None
        self.proxy = manager.declare_file(executor.x509_proxy, cache=True) if executor.x509_proxy else None

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
            task.add_input(self.proxy, "x509_proxy")
            task.set_env_var("X509_USER_PROXY", "x509_proxy")
        task_id = self.m.submit(task)
        self.tasks[task_id] = task
        self.submitted += 1
        return task_id

    def submit_chunk(self, item):
        return self._submit(self.vine.PythonTask(self.chunk_fn, item), "chunk")

    def submit_merge(self, payloads):
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
                return [(task.id, not isinstance(value, BaseException), value, 0, worker)]
            out = (task.std_output or "")[-4000:]
            err = EngineError(f"TaskVine task ended with result {task.result!r}, exit code {task.exit_code}; output:\n{out}")
            return [(task.id, False, err, 0, worker)]

    @property
    def redispatched(self) -> int:
        stats = self.m.stats
        return max(0, int(stats.tasks_dispatched) - self.submitted)


@dataclass
class TaskVineExecutor(ExecutorBase):
    port: Any = 9123  # an int, or (low, high) for the first free port in a range; 0 for any free port
    manager_name: str | None = None
    cores: int = 1
    memory: int | None = None  # MB per task
    disk: int | None = None  # MB per task
    gpus: int | None = None
    environment_file: str | None = None
    extra_input_files: Sequence[str] = ()
    x509_proxy: str | None = None
    treereduction: int = 20
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
    # the live vine.Manager while run() runs (e.g. to read .port when port=0)
    manager: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _import_vine()
        if int(self.treereduction) < 2:
            raise ValueError(f"treereduction must be at least 2, got {self.treereduction}")
        self.extra_input_files = tuple(self.extra_input_files or ())
        for path in (*self.extra_input_files, self.environment_file, self.x509_proxy, self.password_file):
            if path is not None and not os.path.exists(path):
                raise FileNotFoundError(f"TaskVineExecutor: {path} does not exist")

    def run(self, items, job, progress) -> Any:
        vine = _import_vine()
        run_dir = tempfile.mkdtemp(prefix="hpckit-vine-", dir=self.filepath)
        try:
            with vine.Manager(
                port=self.port,
                name=self.manager_name,
                run_info_path=run_dir,
                staging_path=run_dir,
                ssl=self.ssl or None,
            ) as manager:
                self.manager = manager
                return self._run(manager, vine, items, job, progress)
        finally:
            self.manager = None
            shutil.rmtree(run_dir, ignore_errors=True)

    def _run(self, manager, vine, items, job, progress) -> Any:
        if self.password_file:
            manager.set_password_file(self.password_file)
        engine = _VineEngine(vine, manager, self, job)
        progress.set_workers(int(manager.stats.workers_connected))
        driver = StreamingDriver(engine, self.retries, self.treereduction, progress)
        result = driver.run(items)
        self.stats = run_stats(result, driver.retried + engine.redispatched, driver.engine_workers)
        return result
