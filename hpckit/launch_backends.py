"""Workers for one launch: a dask-jobqueue cluster, the rendered Parsl config, or a vine_factory; each
reports its batch job ids and connected workers and makes the matching executor."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

from hpckit.deploy.schedulers import _run
from hpckit.deploy.site import Site

# ------------------------------------------------------------------------------------------------
# backends: start workers, report job ids and connected workers, make the executor, close


class Backend:
    """Starts workers for one launch. ``job_ids()`` lists every batch job it submitted so far."""

    name = "base"

    def __init__(self, site: Site, run_dir: Path, jobs: int):
        self.site = site
        self.run_dir = run_dir
        self.jobs = jobs
        self._seen: list[str] = []

    def start(self) -> None: ...

    def _job_ids(self) -> list[str]:
        return []

    def job_ids(self) -> list[str]:
        for j in self._job_ids():
            if j and j not in self._seen:
                self._seen.append(j)
                with open(self.run_dir / "jobs.txt", "a") as fh:
                    fh.write(f"{j}\n")
        return list(self._seen)

    def connected(self) -> int | None:
        """Workers connected now; None when this backend cannot tell before the run starts."""
        return None

    def executor(self, status: bool) -> Any:
        raise NotImplementedError

    def close(self) -> None: ...


class DaskBackend(Backend):
    """A dask-jobqueue cluster built from the rendered kwargs (``dask_cluster.json``), ``scale(jobs x per_job)``."""

    name = "dask"

    def __init__(self, site, run_dir, jobs):
        super().__init__(site, run_dir, jobs)
        self.cluster = None
        self.client = None

    def overrides(self) -> dict[str, Any]:
        from hpckit.deploy.backends.dask import render_dask

        kwargs = render_dask(self.site).kwargs
        over: dict[str, Any] = {}
        sched = dict(kwargs.get("scheduler_options", {}))
        sched.setdefault("dashboard_address", ("127.0.0.1" if self.site.loopback else "") + ":0")
        over["scheduler_options"] = sched
        logs = self.run_dir / "logs"
        if self.site.scheduler == "slurm":
            over["job_extra_directives"] = list(kwargs["job_extra_directives"]) + [
                f"--output={logs}/dask-worker-%j.out", f"--error={logs}/dask-worker-%j.err"]
        if self.site.scheduler == "local":
            over["n_workers"] = self.jobs
        return over

    def start(self) -> None:
        from distributed import Client

        from hpckit.deploy.backends.dask import render_dask

        self.cluster = render_dask(self.site).make_cluster(**self.overrides())
        if self.site.scheduler != "local":
            self.cluster.scale(self.jobs * self.site.worker.per_job)
        self.client = Client(self.cluster)

    def _job_ids(self) -> list[str]:
        if self.cluster is None:
            return []
        return [str(w.job_id) for w in list(getattr(self.cluster, "workers", {}).values())
                if getattr(w, "job_id", None)]

    def connected(self) -> int | None:
        if self.client is None:
            return 0
        try:
            return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))
        except TypeError:  # older distributed without n_workers
            return len(self.client.scheduler_info().get("workers", {}))
        except Exception:  # noqa: BLE001 - scheduler going away
            return 0

    def executor(self, status: bool) -> Any:
        from hpckit.processor import DaskExecutor

        return DaskExecutor(client=self.client, status=status)

    def close(self) -> None:
        self.job_ids()  # record the last ones before the cluster forgets them
        with contextlib.suppress(Exception):
            if self.client is not None:
                self.client.close(timeout=10)
        with contextlib.suppress(Exception):
            if self.cluster is not None:
                self.cluster.close(timeout=20)
        self.client = self.cluster = None


class ParslBackend(Backend):
    """The rendered ``parsl_config.py`` imported from the run dir, ``get_config(run_dir/runinfo)``, with
    ``init_blocks = max_blocks = jobs`` so the blocks are submitted at ``parsl.load``."""

    name = "parsl"

    def __init__(self, site, run_dir, jobs):
        super().__init__(site, run_dir, jobs)
        self.config = None
        self.dfk = None

    def load_config(self) -> Any:
        path = self.run_dir / "parsl_config.py"
        spec = importlib.util.spec_from_file_location(f"hpckit_parsl_config_{uuid.uuid4().hex[:8]}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = module.get_config(run_dir=str(self.run_dir / "runinfo"))
        for ex in config.executors:
            provider = getattr(ex, "provider", None)
            if provider is not None and self.site.scheduler != "local":
                provider.init_blocks = self.jobs
                provider.min_blocks = 0
                provider.max_blocks = self.jobs
        return config

    def start(self) -> None:
        import parsl

        self.config = self.load_config()
        self.dfk = parsl.load(self.config)

    def _htex(self) -> list[Any]:
        if self.dfk is None:
            return []
        return [ex for ex in self.dfk.executors.values() if hasattr(ex, "connected_managers")]

    def _job_ids(self) -> list[str]:
        ids = []
        for ex in self._htex():
            ids += [str(j) for j in dict(getattr(ex, "blocks_to_job_id", {}) or {}).values() if j is not None]
        return ids

    def connected(self) -> int | None:
        n = 0
        for ex in self._htex():
            with contextlib.suppress(Exception):
                n += sum(int(m.get("worker_count", 0)) for m in ex.connected_managers() if m.get("active", True))
        return n

    def executor(self, status: bool) -> Any:
        from hpckit.processor import ParslExecutor

        return ParslExecutor(config=self.config, status=status)

    def close(self) -> None:
        self.job_ids()
        if self.dfk is not None:
            import parsl

            with contextlib.suppress(Exception):
                self.dfk.cleanup()
            with contextlib.suppress(Exception):
                parsl.clear()
        self.dfk = None


class TaskVineBackend(Backend):
    """A ``vine_factory`` subprocess (rendered command) that keeps worker jobs for the executor's manager.

    The factory submits and, on SIGTERM, removes its own jobs. On Slurm its jobs get a job name of this run
    (``--job-name`` appended to its batch options) so launch lists them with ``squeue -n`` and cancels any the
    factory left. ``CATALOG_HOST`` defaults to 127.0.0.1 (cctools' compiled-in catalog
    is a public host)."""

    name = "taskvine"

    def __init__(self, site, run_dir, jobs, port: int = 9123):
        super().__init__(site, run_dir, jobs)
        self.port = port
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        from hpckit.deploy.backends.taskvine import WRAPPER_NAME, render_taskvine

        host = "127.0.0.1" if self.site.loopback or self.site.scheduler == "local" else _host_address(self.site)
        r = render_taskvine(self.site, host, self.port, config_path=str(self.run_dir / "vine_factory.json"),
                            wrapper_path=str(self.run_dir / WRAPPER_NAME))
        cfg = dict(r.config)
        cfg["max-workers"] = self.jobs
        cfg["min-workers"] = self.jobs
        (self.run_dir / "vine_factory.json").write_text(json.dumps(cfg, indent=2) + "\n")
        scratch = self.run_dir / "vine-factory"
        scratch.mkdir(exist_ok=True)
        cmd = [r.command[0], "--scratch-dir", str(scratch), *r.command[1:]]
        if self.site.scheduler == "slurm":
            # a job name of this run, so its jobs can be listed (and cancelled) by name
            self.job_name = f"hpckit-vine-{self.run_dir.name}"[:60]
            if "--batch-options" in cmd:
                i = cmd.index("--batch-options") + 1
                cmd[i] = f"{cmd[i]} --job-name={shlex.quote(self.job_name)}"
            else:
                cmd[1:1] = ["--batch-options", f"--job-name={shlex.quote(self.job_name)}"]
        env = dict(os.environ)
        env.setdefault("CATALOG_HOST", "127.0.0.1")
        log = open(self.run_dir / "logs" / "vine_factory.log", "ab")
        self.proc = subprocess.Popen(cmd, cwd=self.run_dir / "logs", env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log.close()

    job_name: str | None = None

    def _job_ids(self) -> list[str]:
        if not self.job_name or shutil.which("squeue") is None:
            return []
        r = _run(["squeue", "-h", "-n", self.job_name, "-o", "%i"], timeout=15)
        return r.stdout.split() if r.returncode == 0 else []

    def executor(self, status: bool) -> Any:
        from hpckit.processor import TaskVineExecutor

        # envdeliver: tarball delivery stages the packed environment for every task by default
        env_file = self.site.env_delivery.path if self.site.env_delivery.mode == "tarball" else None
        return TaskVineExecutor(port=self.port, status=status, filepath=str(self.run_dir),
                                environment_file=os.path.expandvars(env_file) if env_file else None)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # the factory removes its worker jobs on SIGTERM
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _host_address(site: Site) -> str:
    import socket

    iface = site.network.interface
    if iface:
        import psutil

        for a in psutil.net_if_addrs().get(iface, []):
            if a.family == socket.AF_INET:
                return a.address
    return socket.gethostname()


