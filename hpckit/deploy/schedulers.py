"""Batch jobs on a site's scheduler: submit, status (with log paths and a head-and-tail summary of
stderr), cancel. One small class per scheduler, Parsl-provider style; they know sites, not processors."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hpckit.deploy.site import Site
from hpckit.errors import LaunchError

# ------------------------------------------------------------------------------------------------
# batch jobs: status with log paths, and one small class per scheduler


def _tail(path: str | None, n: int) -> list[str]:
    if not path:
        return []
    try:
        with open(path, errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    return lines[-n:]


@dataclass
class JobStatus:
    """One batch job as its scheduler sees it. ``state`` is Slurm-style upper case (PENDING, RUNNING,
    COMPLETED, FAILED, CANCELLED, ..., or GONE when the scheduler no longer knows it)."""

    job_id: str
    state: str
    exit_code: str | None = None
    reason: str | None = None
    stdout_path: str | None = None
    stderr_path: str | None = None

    TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                "DEADLINE", "PREEMPTED", "GONE", "REMOVED")

    @property
    def terminal(self) -> bool:
        return self.state.split()[0].rstrip("+") in self.TERMINAL

    def stderr_tail(self, n: int = 15) -> list[str]:
        return _tail(self.stderr_path, n)

    def stdout_tail(self, n: int = 5) -> list[str]:
        return _tail(self.stdout_path, n)

    def summary(self, head: int = 3, tail: int = 15) -> str:
        """``job ID: STATE (exit, reason)`` then the head and tail of its stderr (and stdout's tail)."""
        bits = [x for x in (f"exit {self.exit_code}" if self.exit_code else None, self.reason) if x and x != "None"]
        lines = [f"job {self.job_id}: {self.state}" + (f" ({', '.join(bits)})" if bits else "")]
        for label, path, n_tail in (("stderr", self.stderr_path, tail), ("stdout", self.stdout_path, 5)):
            if not path:
                continue
            try:
                with open(path, errors="replace") as fh:
                    text = fh.read().splitlines()
            except OSError:
                lines.append(f"  {label} {path}: not written (yet)")
                continue
            if not text:
                lines.append(f"  {label} {path}: empty")
                continue
            shown = text if len(text) <= head + n_tail else text[:head] + ["..."] + text[-n_tail:]
            lines.append(f"  {label} {path}:")
            lines += [f"    | {line}" for line in shown]
        return "\n".join(lines)


def _run(cmd: list[str], timeout: float = 30, cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)


class BatchScheduler:
    """Three verbs over one scheduler's commands. ``commands``: the executables it needs."""

    name = "base"
    commands: tuple[str, ...] = ()

    def missing(self) -> list[str]:
        """The scheduler commands not on PATH."""
        return [c for c in self.commands if shutil.which(c) is None]

    def submit(self, script: str | Path, cwd: str | Path | None = None) -> str:
        raise NotImplementedError

    def status(self, job_ids: list[str]) -> dict[str, JobStatus]:
        raise NotImplementedError

    def cancel(self, job_ids: list[str]) -> None:
        raise NotImplementedError

    def queued(self, job_ids: list[str]) -> list[str]:
        """The jobs of ``job_ids`` the scheduler still lists (pending, running or completing)."""
        return [j for j, s in self.status(job_ids).items() if not s.terminal]

    def _submit(self, cmd: list[str], cwd) -> str:
        out = _run(cmd, cwd=str(cwd) if cwd else None)
        if out.returncode != 0:
            raise LaunchError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
        m = re.search(r"(\d+(?:\.[\w.-]+)?)", out.stdout)
        if not m:
            raise LaunchError(f"{' '.join(cmd)}: no job id in its output {out.stdout!r}")
        return m.group(1)


class SlurmScheduler(BatchScheduler):
    name = "slurm"
    commands = ("sbatch", "squeue", "scontrol", "scancel")

    def submit(self, script, cwd=None) -> str:
        return self._submit(["sbatch", "--parsable", str(script)], cwd)

    def status(self, job_ids) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        for j in job_ids:
            r = _run(["scontrol", "show", "job", "-o", str(j)], timeout=15)
            if r.returncode != 0 or "JobState=" not in r.stdout:
                out[j] = JobStatus(j, "GONE", reason="the scheduler no longer lists it")
                continue
            f = dict(re.findall(r"(\w+)=(\S*)", r.stdout))
            out[j] = JobStatus(j, f.get("JobState", "UNKNOWN"), f.get("ExitCode"), f.get("Reason"),
                               f.get("StdOut"), f.get("StdErr"))
        return out

    def queued(self, job_ids) -> list[str]:
        if not job_ids:
            return []
        r = _run(["squeue", "-h", "-o", "%i", "-j", ",".join(job_ids)], timeout=15)
        listed = set(r.stdout.split()) if r.returncode == 0 else set()
        return [j for j in job_ids if j in listed]

    def cancel(self, job_ids) -> None:
        if job_ids:
            _run(["scancel", *job_ids], timeout=30)


_PBS_STATE = {"Q": "PENDING", "H": "PENDING", "W": "PENDING", "T": "PENDING", "S": "SUSPENDED", "R": "RUNNING",
              "B": "RUNNING", "E": "COMPLETING", "C": "COMPLETED", "F": "COMPLETED", "X": "COMPLETED",
              "U": "UNKNOWN"}


class PBSScheduler(BatchScheduler):
    """PBS Pro / Torque ``qsub``/``qstat``/``qdel``. Log paths come from ``qstat -f`` (Error_Path) when it
    says; otherwise PBS's default ``<name>.e<id>`` in ``log_dir`` (where jobs were submitted from)."""

    name = "pbs"
    commands = ("qsub", "qstat", "qdel")

    def __init__(self, log_dir: str | Path | None = None):
        self.log_dir = Path(log_dir) if log_dir else None

    def submit(self, script, cwd=None) -> str:
        return self._submit(["qsub", str(script)], cwd)

    def _default_log(self, job_id: str, kind: str) -> str | None:
        if self.log_dir is None:
            return None
        num = job_id.split(".")[0]
        hits = sorted(self.log_dir.glob(f"*.{kind}{num}"))
        return str(hits[0]) if hits else None

    def status(self, job_ids) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        for j in job_ids:
            r = _run(["qstat", "-f", str(j)], timeout=15)
            if r.returncode != 0 or "job_state" not in r.stdout:
                out[j] = JobStatus(j, "GONE", reason="the scheduler no longer lists it",
                                   stdout_path=self._default_log(j, "o"), stderr_path=self._default_log(j, "e"))
                continue
            f = {k.strip(): v.strip() for k, v in re.findall(r"^\s*([\w.]+)\s*=\s*(.*)$", r.stdout, re.M)}
            state = _PBS_STATE.get(f.get("job_state", "U"), f.get("job_state", "UNKNOWN"))
            exit_code = f.get("Exit_status") or f.get("exit_status")
            if state == "COMPLETED" and exit_code not in (None, "0"):
                state = "FAILED"
            err = f.get("Error_Path", "").split(":", 1)[-1] or self._default_log(j, "e")
            std = f.get("Output_Path", "").split(":", 1)[-1] or self._default_log(j, "o")
            out[j] = JobStatus(j, state, exit_code, f.get("comment"), std, err)
        return out

    def queued(self, job_ids) -> list[str]:
        left = super().queued(job_ids)
        if shutil.which("squeue") and all(j.isdigit() for j in job_ids):
            # PBS front end over Slurm (Debian's slurm-wlm-torque): qstat says C while Slurm still lists
            # the job as COMPLETING; the ids are Slurm's, so ask squeue too
            left = sorted(set(left) | set(SlurmScheduler().queued(job_ids)), key=job_ids.index)
        return left

    def cancel(self, job_ids) -> None:
        if job_ids:
            _run(["qdel", *job_ids], timeout=30)


class HTCondorScheduler(BatchScheduler):
    """``condor_submit``/``condor_q``/``condor_rm``. Not exercised here (no HTCondor daemons on this machine)."""

    name = "htcondor"
    commands = ("condor_submit", "condor_q", "condor_rm")
    _STATE = {1: "PENDING", 2: "RUNNING", 3: "REMOVED", 4: "COMPLETED", 5: "PENDING", 6: "FAILED", 7: "SUSPENDED"}

    def submit(self, script, cwd=None) -> str:
        out = _run(["condor_submit", "-terse", str(script)], cwd=str(cwd) if cwd else None)
        if out.returncode != 0:
            raise LaunchError(f"condor_submit failed: {out.stderr.strip()}")
        return out.stdout.split()[0].split("-")[0].strip()

    def status(self, job_ids) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        for j in job_ids:
            ads: list = []
            for cmd in (["condor_q", "-json", j], ["condor_history", "-json", "-limit", "1", j]):
                r = _run(cmd, timeout=30)
                with contextlib.suppress(ValueError):
                    ads = json.loads(r.stdout or "[]") or []
                if ads:
                    break
            if not ads:
                out[j] = JobStatus(j, "GONE", reason="condor_q/condor_history do not list it")
                continue
            ad = ads[0]
            state = self._STATE.get(int(ad.get("JobStatus", 0)), "UNKNOWN")
            code = ad.get("ExitCode")
            if state == "COMPLETED" and code not in (None, 0):
                state = "FAILED"
            out[j] = JobStatus(j, state, None if code is None else str(code), ad.get("HoldReason"),
                               ad.get("Out"), ad.get("Err"))
        return out

    def cancel(self, job_ids) -> None:
        if job_ids:
            _run(["condor_rm", *job_ids], timeout=30)


def scheduler_for(site: Site, log_dir: str | Path | None = None) -> BatchScheduler | None:
    """The scheduler class of ``site`` (None for a local site)."""
    if site.scheduler == "slurm":
        return SlurmScheduler()
    if site.scheduler == "pbs":
        return PBSScheduler(log_dir)
    if site.scheduler == "htcondor":
        return HTCondorScheduler()
    return None


