"""The TaskVine engine: `hpckit run` starts a manager on ``--port`` for workers you start yourself;
`launch` / `up` run the site's rendered ``vine_factory.sh``, which keeps worker jobs for the executor's
manager (TaskVine is not on PyPI: ``conda install -c conda-forge ndcctools``)."""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from hpckit.core.defaults import VINE_PORT
from hpckit.deploy.backends.taskvine import PASSWORD_NAME
from hpckit.engines.base import Engine, Pool
from hpckit.core.extras import require_command, require_module
from hpckit.core.units import plural

if TYPE_CHECKING:
    from hpckit.deploy.checks import Check
    from hpckit.deploy.site import Site
    from hpckit.engines.base import Plan


class TaskVineEngine(Engine):
    name = "taskvine"
    batch = True
    modules = ("ndcctools.taskvine",)
    first_worker_before_run = False  # the manager only exists inside the executor's run
    # vine_factory hands vine_worker, its password file and the wrapper to the batch system with each job
    # (cctools' HTCondor queue writes them into transfer_input_files); its Slurm queue needs shared files
    factory_ships_files = True

    @contextlib.contextmanager
    def run_executor(self, opts: Any, workers: int, status: bool, records_dir: Path, say: Any) -> Iterator[Any]:
        require_module("ndcctools.taskvine", "the taskvine executor")
        from hpckit.processor import TaskVineExecutor

        with tempfile.TemporaryDirectory(prefix="hpckit-vine-") as d:  # 0700
            password = new_password(Path(d) / PASSWORD_NAME)
            say(f"hpckit: TaskVine manager on port {opts.port}, taking only workers with its password; start "
                f"them with: vine_worker --password {password} <this host> {opts.port} (a rendered worker_job.sh: "
                f"HPCKIT_VINE_PASSWORD={password}; copy the file to their machine; it is removed when the run ends)")
            yield TaskVineExecutor(port=opts.port, status=status, password_file=str(password))

    def pool(self, plan: Plan) -> Pool:
        return TaskVinePool(plan)

    def dry_run(self, plan: Plan) -> list[str]:
        cmd = (plan.run_dir / "vine_factory.sh").read_text().splitlines()[-1].removeprefix("exec ")
        return [f"would run: {cmd}  ({plural(plan.sizing.jobs, 'worker job')} via {plan.scheduler.submit_command})"]

    def doctor_checks(self, site: Site, host: str) -> list[Check]:
        from hpckit.deploy.checks import Check
        from hpckit.deploy.network import port_free

        ok = port_free(host, VINE_PORT)
        return super().doctor_checks(site, host) + [
            Check("TaskVine manager port", "pass" if ok else "fail", f"{VINE_PORT} {'free' if ok else 'in use'}",
                  "launch --port <free port>")]


class TaskVinePool(Pool):
    """The rendered ``vine_factory.sh`` as a subprocess; it keeps worker jobs for the executor's manager and
    removes them on SIGTERM. Its jobs carry the run's job name, so they are listed (and cancelled) by name.
    ``CATALOG_HOST`` defaults to 127.0.0.1 (cctools' compiled-in catalog is a public host)."""

    name = "taskvine"

    def __init__(self, plan: Plan):
        super().__init__(plan)
        self.proc: subprocess.Popen | None = None
        self.password: Path | None = None

    def start(self) -> None:
        require_command("vine_factory", "the taskvine backend")
        require_module("ndcctools.taskvine", "the taskvine backend")
        (self.run_dir / "vine-factory").mkdir(exist_ok=True)
        self.password = new_password(self.run_dir / PASSWORD_NAME)  # vine_factory.sh passes it to each worker
        env = dict(os.environ)
        env.setdefault("CATALOG_HOST", "127.0.0.1")
        with open(self.run_dir / "logs" / "vine_factory.log", "ab") as log:
            self.proc = subprocess.Popen(["bash", str(self.run_dir / "vine_factory.sh")], cwd=self.run_dir / "logs",
                                         env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def poll_ids(self) -> None:
        name = self.plan.sizing.job_name
        if name and self.plan.scheduler.batch and not self.plan.scheduler.missing():
            for j in self.plan.scheduler.ids_named(name):
                self.record.add(j)

    def helper_pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None else []

    def new_executor(self, status: bool) -> Any:
        from hpckit.processor import TaskVineExecutor

        # tarball delivery: every task runs inside the packed environment, staged by TaskVine. As tasks: a
        # serverless library imports ndcctools inside the environment, which `hpckit pack` cannot hold
        # (ndcctools is not on PyPI)
        d = self.plan.site.env_delivery
        auth = {"password_file": str(self.password)} if self.password else {}
        if d.mode == "tarball" and d.path:
            return TaskVineExecutor(port=self.plan.port, status=status, filepath=str(self.run_dir),
                                    environment_file=os.path.expandvars(d.path), mode="tasks", **auth)
        return TaskVineExecutor(port=self.plan.port, status=status, filepath=str(self.run_dir), **auth)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # the factory removes its worker jobs on SIGTERM
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.poll_ids()
        self.proc = None



def new_password(path: Path) -> Path:
    """A fresh random TaskVine password in ``path`` (0600; an existing file is replaced): the manager refuses a
    worker without it, so no other user who can reach the port gets tasks or hands back a result to unpickle."""
    from hpckit.io.paths import atomic_write

    atomic_write(path, (secrets.token_hex(32) + "\n").encode())  # 0600, renamed over any older one
    return path


ENGINE = TaskVineEngine()
