"""Helpers for tests that need the local single-node Slurm (scripts/slurm-local.sh start).

Tests call :func:`require_slurm` / :func:`require_qsub`: the first call of the session starts it
(tests/services.py); they fail, or skip with the reason where starting it needs root, when it cannot be.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time

import pytest
import services

START_HINT = "start it with: bash scripts/slurm-local.sh start"


# a node in any of these states is up; "planned": the backfill scheduler holds it for a pending job (the
# node is busy, e.g. another test's jobs fill it), shown by Slurm >= 23.11
UP_STATES = ("idle", "mixed", "allocated", "completing", "planned")
_SLURM_UP = False


def slurm_status() -> tuple[bool, str]:
    """(up, reason): up when sinfo shows this host's node in one of :data:`UP_STATES`. Only "up" is
    remembered: a state seen once while the node was busy must not skip every later test of this worker."""
    global _SLURM_UP
    if _SLURM_UP:
        return True, ""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return False, f"Slurm is not installed; {START_HINT}"
    try:
        out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return False, f"sinfo timed out; {START_HINT}"
    states = out.stdout.split()
    if out.returncode != 0 or not any(s.startswith(UP_STATES) for s in states):
        return False, f"local Slurm is not up (sinfo: {out.stdout.strip() or out.stderr.strip()}); {START_HINT}"
    _SLURM_UP = True
    return True, ""


def require_slurm() -> None:
    services.ensure("slurm")
    up, reason = slurm_status()
    if not up:
        pytest.skip(reason)


def require_qsub() -> None:
    require_slurm()
    if shutil.which("qsub") is None:
        pytest.skip(f"qsub (slurm-wlm-torque) is not installed; {START_HINT}")


def job_state(job_id: str) -> str:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True)
    m = re.search(r"JobState=(\S+)", out.stdout)
    return m.group(1) if m else "UNKNOWN"


def wait_for_job(job_id: str, timeout: float = 60.0) -> str:
    """Wait until the job leaves PENDING/RUNNING; return its final state. Cancels it on timeout."""
    deadline = time.monotonic() + timeout
    state = job_state(job_id)
    while state in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING") and time.monotonic() < deadline:
        time.sleep(0.3)
        state = job_state(job_id)
    if state in ("PENDING", "RUNNING", "CONFIGURING"):
        subprocess.run(["scancel", job_id])
        raise AssertionError(f"job {job_id} still {state} after {timeout}s (cancelled)")
    return state


def job_field(job_id: str, name: str) -> str | None:
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True)
    m = re.search(rf"\b{name}=(\S+)", out.stdout)
    return m.group(1) if m else None
