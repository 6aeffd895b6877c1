"""Copy what a worker job needs onto its node once it runs, for sites without a shared file system
(:mod:`hpckit.deploy.staging` says where and why). Called after every job-state poll of the launch
(:class:`hpckit.report.jobs.JobStateRecorder`): each job that is running and not yet served gets the env
tarball, the engine's keys and then the ``ready`` marker its script waits for."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from hpckit.core.errors import LaunchError
from hpckit.deploy import staging

TRIES_BEFORE_SAYING = 3  # a job's first copy can miss its directory (the script has not made it yet)


class Stager:
    """``stager(states)``: stage every RUNNING job of ``states`` (job id -> state) not served yet."""

    def __init__(self, site: Any, sched: Any, files: Callable[[], dict[str, Path]], marker_dir: Path,
                 say: Callable[[str], None]):
        self.site, self.sched, self.files, self.say = site, sched, files, say
        self.marker = Path(marker_dir) / "staged-ready"
        self.served: set[str] = set()
        self.failures: dict[str, int] = {}

    def __call__(self, states: dict[str, str]) -> None:
        for job, state in states.items():
            if state != "RUNNING" or job in self.served:
                continue
            try:
                self.stage(job)
            except (LaunchError, OSError) as err:
                n = self.failures[job] = self.failures.get(job, 0) + 1
                if n == TRIES_BEFORE_SAYING:
                    self.say(f"hpckit: cannot copy the job's files onto its node: {err} (trying again)")
            else:
                self.served.add(job)

    def stage(self, job: str) -> None:
        where = staging.job_dir(self.site, job, os.getuid())
        if not self.marker.exists():
            fd = os.open(self.marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.write(fd, b"ready\n")
            os.close(fd)
        for name, source in self.files().items():
            self.sched.stage(job, source, f"{where}/{name}")
        self.sched.stage(job, self.marker, f"{where}/{staging.READY}")


def launch_files(site: Any, pool: Any) -> dict[str, Path]:
    """What a job of ``site`` needs from the launch: the env tarball (tarball delivery) and the pool's own
    files (Parsl's keys), by their name in the job's staging directory."""
    files: dict[str, Path] = {}
    d = site.env_delivery
    if d.mode == "tarball" and d.path:
        files[staging.TARBALL] = Path(os.path.expandvars(d.path)).expanduser()
    files.update(pool.staged_files())
    return files
