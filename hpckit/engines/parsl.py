"""The Parsl engine: `hpckit run` on a HighThroughputExecutor of ``--workers`` here (or the user's own config,
``--parsl-config``); `launch` / `up` load the site's rendered ``parsl_config.py``, whose blocks are submitted
at ``parsl.load``. One loader reads both files."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shlex
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Iterator

from hpckit.engines.base import Engine, Pool
from hpckit.core.errors import UsageError
from hpckit.core.extras import require_module
from hpckit.core.units import plural


if TYPE_CHECKING:
    from hpckit.engines.base import Plan


class ParslEngine(Engine):
    name = "parsl"
    batch = True
    modules = ("parsl",)
    node_files = ("Parsl CurveZMQ keys in the run directory",)

    def sizes_workers(self, opts: Any) -> bool:
        return not opts.parsl_config

    @contextlib.contextmanager
    def run_executor(self, opts: Any, workers: int, status: bool, records_dir: Path, say: Any) -> Iterator[Any]:
        require_module("parsl", "the parsl executor")
        from hpckit.processor import ParslExecutor

        from hpckit.io.paths import private_dir

        # Parsl's logs and keys next to the run's records, in a directory only this user may enter: Parsl
        # trusts every client key in its run's certificates directory
        runinfo = str(private_dir(Path(records_dir) / "runinfo", what="Parsl's run directory"))
        with pool_tmp() as tmp:
            config = (load_parsl_config(opts.parsl_config) if opts.parsl_config
                      else local_parsl_config(workers, runinfo, tmp))
            if config.run_dir == "runinfo":  # Parsl's default: the current directory
                config.run_dir = runinfo
            yield ParslExecutor(config=config, status=status)

    def pool(self, plan: Plan) -> Pool:
        return ParslPool(plan)

    def dry_run(self, plan: Plan) -> list[str]:
        return [f"would load {plan.run_dir / 'parsl_config.py'} with {plural(plan.sizing.jobs, 'block')} "
                f"({plan.scheduler.submit_command} via Parsl)"]


def _load_module(path: Path) -> ModuleType:
    """The Python file ``path`` as a fresh module (a config file: the user's own, or one rendered for them)."""
    spec = importlib.util.spec_from_file_location(f"hpckit_parsl_config_{uuid.uuid4().hex[:8]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_parsl_config(path: Path) -> Any:
    """``get_config()`` (or ``config``) of the Python file ``path``."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"Parsl config file not found: {path}")
    module = _load_module(path)
    if hasattr(module, "get_config"):
        return module.get_config()
    if hasattr(module, "config"):
        return module.config
    raise UsageError(f"{path} defines neither get_config() nor config")


POOL_TMP_PREFIX = "hpckit-parsl-"


@contextlib.contextmanager
def pool_tmp() -> Iterator[str]:
    """A private TMPDIR for a worker pool on this machine, removed when the block ends: Parsl's pool starts a
    multiprocessing manager that leaves its pymp-* directory behind (one in /tmp per run before). Those of a
    SIGKILLed run (its process gone) are removed by the next."""
    _sweep_pool_tmps()
    path = tempfile.mkdtemp(prefix=f"{POOL_TMP_PREFIX}{os.getpid()}-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _sweep_pool_tmps() -> None:
    """Remove this user's pool TMPDIRs whose hpckit process no longer runs."""
    for d in Path(tempfile.gettempdir()).glob(f"{POOL_TMP_PREFIX}*-*"):
        pid = d.name.removeprefix(POOL_TMP_PREFIX).split("-", 1)[0]
        try:
            if not pid.isdigit() or d.is_symlink() or d.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)  # still running (or the pid was reused): keep it
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except OSError:
            continue


def local_parsl_config(workers: int, run_dir: str = "runinfo", tmp: str | None = None) -> Any:
    """A HighThroughputExecutor with ``workers`` workers on this machine, on loopback (``tmp``: their TMPDIR)."""
    from hpckit.io.paths import shell_safe_path

    require_module("parsl", "the parsl executor")
    shell_safe_path(run_dir, "Parsl run directory")  # Parsl formats it into the worker command, unquoted
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    from hpckit.deploy.backends.parsl import POOL_TMP_INIT

    return Config(executors=[HighThroughputExecutor(
        label="hpckit-local", address="127.0.0.1", max_workers_per_node=workers, cores_per_worker=1,
        provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1,
                               worker_init=POOL_TMP_INIT.format(shlex.quote(tmp)) if tmp else ""))],
        run_dir=run_dir)


class ParslPool(Pool):
    """The rendered ``parsl_config.py``, ``get_config(<run dir>/runinfo)``: its blocks are submitted at
    ``parsl.load``. Parsl's providers submit from the current directory, so the launch runs from ``logs/``."""

    name = "parsl"
    chdir_logs = True

    def __init__(self, plan: Plan):
        super().__init__(plan)
        self.config = None
        self.dfk = None
        self._tmp = contextlib.ExitStack()  # a local pool's TMPDIR (pool_tmp), removed at close

    def start(self) -> None:
        parsl = require_module("parsl", "the parsl backend")
        module = _load_module(self.run_dir / "parsl_config.py")
        tmp = None if self.plan.scheduler.batch else self._tmp.enter_context(pool_tmp())
        self.config = module.get_config(run_dir=str(self.run_dir / "runinfo"), pool_tmp=tmp)
        for ex in self.config.executors:
            _poll_jobs_every(ex.provider, self._poll_interval(ex.provider))
            _commands_run_in(ex.provider, self.run_dir / "logs")
        self.dfk = parsl.load(self.config)
        self.poll_ids()

    def _poll_interval(self, provider: Any) -> float:
        """Parsl replaces a block that drained only when it next polls the scheduler (every 60 s for Slurm,
        PBS, HTCondor): with short walltimes, poll every sixth of the walltime (at least 10 s)."""
        every = getattr(provider, "status_polling_interval", 60) or 60
        if self.site.walltime:
            every = min(every, max(10, int(self.site.walltime) // 6))
        return every

    def quiet_allowed(self) -> float:
        every = max((self._poll_interval(ex.provider) for ex in self._htex()), default=60)
        return 2 * every + 15

    def _htex(self) -> list[Any]:
        if self.dfk is None:
            return []
        return [ex for ex in self.dfk.executors.values() if hasattr(ex, "connected_managers")]

    def helper_pids(self) -> list[int]:
        return [ex.interchange_proc.pid for ex in self._htex() if getattr(ex, "interchange_proc", None) is not None]

    def poll_ids(self) -> None:
        if not self.plan.scheduler.batch:
            return
        for ex in self._htex():
            for j in list(dict(getattr(ex, "blocks_to_job_id", {}) or {}).values()):
                if j is not None:
                    self.record.add(j)

    def refusals(self) -> list[str]:
        out = list(self.record.refusals)
        for ex in self._htex():
            with contextlib.suppress(Exception):
                for st in ex.status().values():
                    if str(getattr(st.state, "name", st.state)) == "FAILED" and st.message and \
                            "Failed to start block" in st.message:
                        out.append(st.message)
        return out

    def stop_reason(self) -> str | None:
        for ex in self._htex():
            if getattr(ex, "bad_state_is_set", False):
                return f"Parsl gave up on its blocks: {getattr(ex, 'executor_exception', None)}"
        return None

    def connected(self) -> int | None:
        n = 0
        for ex in self._htex():
            with contextlib.suppress(Exception):
                n += sum(int(m.get("worker_count", 0)) for m in ex.connected_managers() if m.get("active", True))
        return n

    def adapt(self, workers: tuple[int, int], jobs: tuple[int, int]) -> None:
        for ex in self._htex():  # Parsl's strategy reads these on every tick
            ex.provider.min_blocks, ex.provider.max_blocks = jobs

    def staged_files(self) -> dict[str, Path]:
        """The CurveZMQ keys the interchange made (the workers' half), for jobs that cannot read the run dir."""
        from hpckit.deploy.staging import KEYS

        files = {}
        for ex in self._htex():
            cert_dir = getattr(ex, "cert_dir", None)
            for f in sorted(Path(cert_dir).iterdir()) if cert_dir else ():
                files[f"{KEYS}/{f.name}"] = f
        return files

    def new_executor(self, status: bool) -> Any:
        from hpckit.processor import ParslExecutor

        return ParslExecutor(config=self.config, status=status)

    def close(self, wait: float = 30.0) -> None:
        """``DFK.cleanup``, for ``wait`` seconds at most (it waits without end on an interchange that died);
        then the interchange is ended and the launch cancels the jobs itself."""
        self.poll_ids()
        if self.dfk is not None:
            import parsl

            helpers = self.helper_pids()
            t = threading.Thread(target=self._cleanup, name="hpckit-parsl-cleanup", daemon=True)
            t.start()
            t.join(wait)
            if t.is_alive():
                logging.getLogger("hpckit.launch").warning("hpckit: Parsl's cleanup did not finish in %.0f s", wait)
                for pid in helpers:
                    with contextlib.suppress(OSError):
                        os.kill(pid, 9)
            with contextlib.suppress(Exception):
                parsl.clear()
        self.dfk = None
        self._tmp.close()

    def _cleanup(self) -> None:
        with contextlib.suppress(Exception):
            self.dfk.cleanup()


def _commands_run_in(provider: Any, where: Path) -> None:
    """Run ``provider``'s scheduler commands (qsub, sbatch, ...) from ``where``: PBS writes a job's stdout and
    stderr to the directory it was submitted from, and Parsl submits its blocks - the first ones too - from its
    own threads, whatever this process's current directory is by then."""
    run = getattr(provider, "execute_wait", None)
    if run is None:  # LocalProvider: its logs go to the submit script's directory anyway
        return
    prefix = f"cd {shlex.quote(str(where))} && "
    provider.execute_wait = lambda cmd, timeout=None: run(prefix + cmd, timeout)


def _poll_jobs_every(provider: Any, seconds: float) -> None:
    """Make ``provider`` report ``status_polling_interval = seconds`` (a read-only class property in Parsl):
    its class is swapped for a subclass that says so."""
    if provider is None or getattr(provider, "status_polling_interval", None) == seconds:
        return
    cls = type(provider)
    provider.__class__ = type(cls.__name__, (cls,), {"status_polling_interval": property(lambda self: seconds),
                                                      "__module__": cls.__module__})



ENGINE = ParslEngine()
