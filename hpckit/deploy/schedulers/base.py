"""What every scheduler class provides: its facts (directive prefix, commands, the dask-jobqueue, Parsl and
TaskVine names, which site settings it owns and requires, its Parsl provider arguments and the header
template of its job scripts) and the verbs launch and teardown use: ``status`` (every job in one query),
``queued``, ``cancel``, ``ids_named``. Submission is the engines' (dask-jobqueue, Parsl, vine_factory): no
scheduler class submits.

A job's state is a :class:`JobState`; :class:`JobStatus` keeps the job's stdout/stderr paths and gives the head
and tail of its stderr (the batch error a user otherwise never sees). Scheduler classes know sites, not
processors.
"""

from __future__ import annotations

import shutil
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from hpckit.core.errors import LaunchError

if TYPE_CHECKING:
    from hpckit.deploy.checks import Check
    from hpckit.deploy.site import Site

__all__ = ["JobState", "JobStatus", "Scheduler", "SubmitError", "run_command", "squeue_listed"]


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
    note: str | None = None  # the job's own one line (``Scheduler.job_note_shell``), e.g. why it failed

    def __post_init__(self) -> None:
        self.state = JobState.parse(self.state)

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    def stderr_tail(self, n: int = 15) -> list[str]:
        return (_lines(self.stderr_path) or [])[-n:]

    def summary(self, head: int = 3, tail: int = 15, logs_here: bool = True) -> str:
        """``job ID: STATE (exit, reason)``, the job's note, then the head and tail of its stderr (and
        stdout's tail); ``logs_here=False``: the logs are on the job's node (no shared file system), named only."""
        bits = [x for x in (f"exit {self.exit_code}" if self.exit_code else None, self.reason) if x and x != "None"]
        lines = [f"job {self.job_id}: {self.state.value}" + (f" ({', '.join(bits)})" if bits else "")]
        if self.note:
            lines.append(f"  the job says: {self.note}")
        for label, path, n_tail in (("stderr", self.stderr_path, tail), ("stdout", self.stdout_path, 5)):
            if not path:
                continue
            if not logs_here:
                lines.append(f"  {label}: {path} on the job's node (this site shares no file system)")
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


def squeue_listed(job_ids: list[str]) -> set[str]:
    """The ids of ``job_ids`` Slurm's squeue still lists (pending, running or completing), in one call;
    shared by Slurm and by PBS front ends over Slurm (Debian's slurm-wlm-torque)."""
    if not job_ids:
        return set()
    r = run_command(["squeue", "-h", "-o", "%i", "-j", ",".join(job_ids)], timeout=15)
    return set(r.stdout.split()) if r.returncode == 0 else set()


class Scheduler(ABC):
    """One batch system: every fact hpckit needs about it, and its verbs.

    Subclasses (one file each) fill in the class attributes and the verbs; see slurm.py for the full set.
    Facts: ``name`` (the site's ``scheduler:``), ``label`` (how messages name it), ``directive_prefix``
    (``#SBATCH ``; None when the header is not prefixed lines), ``submit_command``/``status_command``/
    ``cancel_command``/``queue_command``, ``doctor_commands`` (what doctor looks for on PATH),
    ``dask_cluster_class`` (dotted path), ``parsl_provider_name``, ``taskvine_batch_type_name``,
    ``script_suffix`` of a job script, ``own_settings`` (site fields only this scheduler reads),
    ``submit_template`` (a submit description rendered beside worker_job.sh, HTCondor's ``.sub``).
    """

    name: ClassVar[str] = "base"
    label: ClassVar[str] = "base"
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
    own_settings: ClassVar[tuple[str, ...]] = ()
    # what to say when another scheduler's setting is used on this one's site: {setting: hint}
    setting_hints: ClassVar[dict[str, str]] = {}
    submit_template: ClassVar[str | None] = None
    # Staging (sites without a shared file system): the job's environment variable holding its id, where
    # the scheduler can copy a file from the submit host into a running job's node (:meth:`stage`); None
    # where it cannot, and such a site's launch is refused naming what would need a shared file system.
    stage_job_var: ClassVar[str | None] = None
    # A shell command run in the job that sets its one-line note from ``$hpckit_note``, shown back by
    # :meth:`status` (``JobStatus.note``): how a job on such a site says why it failed, its logs being on
    # its node. None where the scheduler has no such field.
    job_note_shell: ClassVar[str | None] = None
    # The batch system copies each job's input files to its node and its output back (HTCondor's file
    # transfer), so an engine that hands its files to it with each job needs no shared file system.
    transfers_job_files: ClassVar[bool] = False

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
    def header_template(cls) -> str | None:
        """The template of its job-script header (directives or submit commands); None without a batch system."""
        return f"{cls.name}/header.j2" if cls.batch else None

    @classmethod
    def script_header_template(cls) -> str | None:
        """The header our own worker_job.sh carries: prefixed directive lines only (an HTCondor header is
        a separate submit description, :attr:`submit_template`)."""
        return cls.header_template() if cls.directive_prefix is not None else None

    @classmethod
    def validate(cls, site: Site) -> None:
        """Raise ValueError when ``site`` lacks what this scheduler needs (the Site model calls it)."""
        if cls.batch:
            if site.walltime is None:
                raise ValueError(f"a {cls.name} site needs a walltime")
            if site.worker.memory is None:
                raise ValueError(f"a {cls.name} site needs worker.memory")
            if site.max_workers is None:
                raise ValueError(f"a {cls.name} site needs max_workers")

    @classmethod
    def job_facts(cls, site: Site, mode: str, job: dict[str, Any]) -> dict[str, Any]:
        """The scheduler's part of a template's ``job`` (hpckit.deploy.render.job_context, the rest of which
        is ``job``): ``resources`` (write cores/memory requests) and ``select`` (PBS Pro's select line)."""
        return {"resources": True, "select": True}

    @classmethod
    def parsl_provider_args(cls, site: Site, job: dict[str, Any]) -> dict[str, Any]:
        """Provider arguments beyond the blocks and walltime every batch provider takes."""
        return {}

    @classmethod
    def starts_container(cls, site: Site) -> bool:
        """True when the scheduler itself starts the site's container around the worker."""
        return False

    @classmethod
    def job_script_name(cls) -> str:
        """The file name of the job script dask-jobqueue submits, as rendered."""
        return "job_script" + cls.script_suffix

    @classmethod
    def log_directives(cls, log_dir: str, stem: str) -> list[str]:
        """Directive arguments that put a job's stdout/stderr in ``log_dir`` ([] when the scheduler cannot)."""
        return []

    @classmethod
    def node_local_directives(cls, node_dir: str, stem: str) -> list[str]:
        """Directive arguments that keep a job's logs and working directory in the node-local ``node_dir``."""
        return cls.log_directives(node_dir, stem)

    @classmethod
    def job_name_directive(cls, name: str) -> str | None:
        """The directive argument naming a job (None when the scheduler has none)."""
        return None

    # ---- verbs --------------------------------------------------------------------------------
    def stage(self, job_id: str, source: str | Path, dest: str) -> None:
        """Copy ``source`` (on this host) to ``dest`` on the node of the running job ``job_id``; raises
        LaunchError saying why it could not (only where :attr:`stage_job_var` is set)."""
        raise LaunchError(f"{self.label} cannot copy files into a running job")

    @abstractmethod
    def status(self, job_ids: list[str]) -> dict[str, JobStatus]:
        """Every job of ``job_ids`` (GONE when the scheduler no longer lists it), in as few queries as the
        scheduler allows."""

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
