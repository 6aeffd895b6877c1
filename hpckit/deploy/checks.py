"""One preflight check's result (pass, fail with the fix, or skip with why), shared by `hpckit doctor` and the
scheduler classes that know how to check their own names (partitions, queues, accounts)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

__all__ = ["Check", "command_output"]


@dataclass
class Check:
    name: str
    result: str  # "pass", "fail" or "skip"
    detail: str
    fix: str = ""


def command_output(argv: list[str], timeout: float = 20) -> tuple[int, str]:
    """(exit status, stdout + stderr) of ``argv``; 127 and the error text when it cannot run."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return r.returncode, (r.stdout + r.stderr).strip()
