"""What every scheduler class provides: its facts (directive prefix, commands, the dask-jobqueue, Parsl and
TaskVine names) and three verbs, ``submit`` / ``status`` / ``cancel`` (plus ``queued``), Parsl-provider style.

A job's state is a :class:`JobState`; :class:`JobStatus` keeps the job's stdout/stderr paths and gives the head
and tail of its stderr (the batch error a user otherwise never sees). Scheduler classes know sites, not
processors.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from hpckit.errors import LaunchError

if TYPE_CHECKING:
    from hpckit.deploy.checks import Check
    from hpckit.deploy.site import Site

__all__ = ["JobState", "JobStatus", "Scheduler", "SubmitError", "run_command"]


class SubmitError(LaunchError):
    """The scheduler refused a submission; the message starts with the scheduler's own words."""


class JobState(str, Enum):
    """A batch job's state, the same words whatever the scheduler (Slurm's names)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    COMPLETING = "COMPLETING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMEOUT = "TIMEOUT"
    NODE_FAIL = "NODE_FAIL"
    OUT_OF_MEMORY = "OUT_OF_MEMORY"
    BOOT_FAIL = "BOOT_FAIL"
    DEADLINE = "DEADLINE"
    PREEMPTED = "PREEMPTED"
    REMOVED = "REMOVED"
    GONE = "GONE"  # the scheduler no longer lists it
    UNKNOWN = "UNKNOWN"

    @property
    def terminal(self) -> bool:
        """The job has ended (it will never run, or run again)."""
        return self in TERMINAL_STATES

    @classmethod
    def parse(cls, text: str | JobState | None) -> JobState:
        """``"CANCELLED by 0"``, ``"COMPLETED+"``, ``"RUNNING"`` -> the member; anything else UNKNOWN."""
        if isinstance(text, JobState):
            return text
        word = (text or "").split()[0].rstrip("+") if (text or "").split() else ""
        try:
            return cls(word.upper())
        except ValueError:
            return cls.UNKNOWN

    def __str__(self) -> str:
        return self.value


TERMINAL_STATES = frozenset({
    JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT, JobState.NODE_FAIL,
    JobState.OUT_OF_MEMORY, JobState.BOOT_FAIL, JobState.DEADLINE, JobState.PREEMPTED, JobState.REMOVED,
    JobState.GONE,
})


def _lines(path: str | None) -> list[str] | None:
    if not path:
        return None
    try:
        with open(path, errors="replace") as fh:
            return fh.read().splitlines()
    except OSError:
        return None


@dataclass
class JobStatus:
    """One batch job as its scheduler sees it, with its log paths."""

    job_id: str
    state: JobState
    exit_code: str | None = None
    reason: str | None = None
    stdout_path: str | None = None
    stderr_path: str | None = None

    def __post_init__(self) -> None:
        self.state = JobState.parse(self.state)

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    def stderr_tail(self, n: int = 15) -> list[str]:
        return (_lines(self.stderr_path) or [])[-n:]

    def summary(self, head: int = 3, tail: int = 15) -> str:
        """``job ID: STATE (exit, reason)`` then the head and tail of its stderr (and stdout's tail)."""
        bits = [x for x in (f"exit {self.exit_code}" if self.exit_code else None, self.reason) if x and x != "None"]
        lines = [f"job {self.job_id}: {self.state.value}" + (f" ({', '.join(bits)})" if bits else "")]
        for label, path, n_tail in (("stderr", self.stderr_path, tail), ("stdout", self.stdout_path, 5)):
            if not path:
                continue
            text = _lines(path)
            if text is None:
                lines.append(f"  {label} {path}: not written (yet)")
                continue
            if not text:
                lines.append(f"  {label} {path}: empty")
                continue
            shown = text if len(text) <= head + n_tail else text[:head] + ["..."] + text[-n_tail:]
            lines.append(f"  {label} {path}:")
            lines += [f"    | {line}" for line in shown]
        return "\n".join(lines)


def run_command(cmd: list[str], timeout: float = 30, cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run one scheduler command, capturing its output; a missing executable is a :class:`LaunchError`."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except FileNotFoundError:
        raise LaunchError(f"{cmd[0]}: command not found on this machine's PATH") from None


class Scheduler:
    """One batch system: every fact hpckit needs about it, and its verbs.

    Subclasses (one file each) fill in the class attributes and the verbs; see slurm.py for the full set.
    Facts: ``name`` (the site's ``scheduler:``), ``directive_prefix`` (``#SBATCH ``; None when the header is
    not prefixed lines), ``submit_command``/``status_command``/``cancel_command``/``queue_command``,
    ``doctor_commands`` (what doctor looks for on PATH), ``dask_cluster_class`` (dotted path),
    ``parsl_provider_name``, ``taskvine_batch_type_name``, ``script_suffix`` of a job script.
    """

    name: ClassVar[str] = "base"
    batch: ClassVar[bool] = True
    directive_prefix: ClassVar[str | None] = None
    submit_command: ClassVar[str] = ""
    status_command: ClassVar[str] = ""
    cancel_command: ClassVar[str] = ""
    queue_command: ClassVar[str] = ""
    extra_doctor_commands: ClassVar[tuple[str, ...]] = ()
    dask_cluster_class: ClassVar[str] = ""
    parsl_provider_name: ClassVar[str] = ""
    taskvine_batch_type_name: ClassVar[str] = ""
    script_suffix: ClassVar[str] = ".sh"

    def __init__(self, log_dir: str | Path | None = None):
        self.log_dir = Path(log_dir) if log_dir else None

    # ---- facts that depend on the site -------------------------------------------------------
    @property
    def commands(self) -> tuple[str, ...]:
        """The executables the verbs use."""
        seen: list[str] = []
        for c in (self.submit_command, self.status_command, self.queue_command, self.cancel_command):
            if c and c not in seen:
                seen.append(c)
        return tuple(seen)

    @property
    def doctor_commands(self) -> tuple[str, ...]:
        return self.commands + tuple(c for c in self.extra_doctor_commands if c not in self.commands)

    def missing(self) -> list[str]:
        """The scheduler commands not on PATH."""
        return [c for c in self.commands if shutil.which(c) is None]

    @classmethod
    def parsl_provider(cls, site: Site) -> str:
        """The Parsl provider class name for ``site``."""
        return cls.parsl_provider_name

    @classmethod
    def taskvine_batch_type(cls, site: Site) -> str:
        """vine_factory ``-T`` for ``site``."""
        return cls.taskvine_batch_type_name

    @classmethod
    def job_script_name(cls) -> str:
        """The file name of the job script dask-jobqueue submits, as rendered."""
        return "job_script" + cls.script_suffix

    @classmethod
    def log_directives(cls, log_dir: str, stem: str) -> list[str]:
        """Directive arguments that put a job's stdout/stderr in ``log_dir`` ([] when the scheduler cannot)."""
        return []

    @classmethod
    def job_name_directive(cls, name: str) -> str | None:
        """The directive argument naming a job (None when the scheduler has none)."""
        return None

    # ---- verbs --------------------------------------------------------------------------------
    def submit(self, script: str | Path, cwd: str | Path | None = None) -> str:
        raise NotImplementedError

    def status(self, job_ids: list[str]) -> dict[str, JobStatus]:
        raise NotImplementedError

    def cancel(self, job_ids: list[str]) -> None:
        if job_ids:
            run_command([self.cancel_command, *job_ids], timeout=30)

    def queued(self, job_ids: list[str]) -> list[str]:
        """The jobs of ``job_ids`` the scheduler still lists (pending, running or completing)."""
        return [j for j, s in self.status(job_ids).items() if not s.terminal]

    def ids_named(self, job_name: str) -> list[str]:
        """Jobs whose name contains ``job_name`` (jobs submitted by Parsl or vine_factory); [] if it cannot tell."""
        return []

    def doctor_checks(self, site: Site) -> list[Check]:
        """Checks of the site's names against this scheduler (partition, queue, account); run when the
        scheduler commands are here."""
        return []

    def _submit(self, cmd: list[str], cwd) -> str:
        out = run_command(cmd, cwd=str(cwd) if cwd else None)
        if out.returncode != 0:
            said = out.stderr.strip() or out.stdout.strip()
            raise SubmitError(f"{said} ({' '.join(cmd)} exited {out.returncode})")
        m = re.search(r"(\d+(?:\.[\w.-]+)?)", out.stdout)
        if not m:
            raise SubmitError(f"{' '.join(cmd)}: no job id in its output {out.stdout!r}")
        return m.group(1)
