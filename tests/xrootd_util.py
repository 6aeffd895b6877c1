"""The local XRootD servers of scripts/xrootd-local.sh, for the remote-data tests.

``sites()`` starts (idempotently) the two shared "sites" and returns their base URLs; ``server()`` starts
one more instance on a free port for a test that kills or freezes it, and always stops it afterwards
(SIGCONT first), so the shared sites are never disturbed.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import services

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "xrootd-local.sh"
RUN = Path(os.environ.get("XROOTD_LOCAL_RUN", "/run/hpckit-xrootd"))


def _script(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


def sites() -> dict[str, str]:
    """{"site1": "root://127.0.0.1:PORT//.../site1/data", "site2": ...}: both answer, or the test fails
    (it skips, with the reason, only where they are down and starting them needs root)."""
    services.ensure("xrootd")  # started once per session, stopped at its end (tests/services.py)
    r = _script("status")
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        name, _port, url = line.split()
        out[name] = url
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    url: str  # base URL: root://127.0.0.1:PORT//dir

    @property
    def pid(self) -> int:
        return int((RUN / self.name / "xrootd.pid").read_text())

    def stop(self) -> None:
        _script("stop-one", self.name, timeout=60)


@contextlib.contextmanager
def server(name: str) -> Iterator[Server]:
    """One extra XRootD instance (exporting site1's copy of data/) on a free port, stopped afterwards; its
    name carries this process's id, so tests in parallel xdist workers never share one."""
    name = f"{name}-{os.getpid()}"
    sites()  # the data copies exist
    r = _script("start-one", name, str(free_port()))
    if r.returncode != 0:
        pytest.fail(f"scripts/xrootd-local.sh start-one {name} failed:\n{r.stderr}")
    srv = Server(name, r.stdout.strip().splitlines()[-1])
    try:
        yield srv
    finally:
        srv.stop()
