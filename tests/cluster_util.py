"""Helpers for tests on the many-node cluster of scripts/cluster-local.sh (login, node1..node6).

Commands run on a node through `cluster-local.sh exec NODE -- ...` (its hostname, network and /tmp); files the
login node and the test share live in a fresh directory of the cluster's shared scratch. Tests that break
nodes take the cluster's lock exclusively, the others share it, so pytest-xdist workers never see a node
another test has killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from launch_util import REPO, chunk_records, env  # noqa: F401 - chunk_records: for the cluster tests

CLUSTER = REPO / "scripts" / "cluster-local.sh"
START_HINT = "start it with: bash scripts/cluster-local.sh start (after scripts/slurm-local.sh start)"
LOGIN_ADDR = "192.0.2.10"
SHARED_NODES = ("node1", "node2", "node3")


def cluster(*args: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(["bash", str(CLUSTER), *args], capture_output=True, text=True, timeout=timeout,
                          env=env(**{"PATH": path, **extra}))


def on(node: str, *cmd: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess:
    """``cmd`` on ``node``, with this checkout first on PYTHONPATH and the venv first on PATH."""
    return cluster("exec", node, "--", *cmd, timeout=timeout, **extra)


def login_hpckit(args: list[str], timeout: float = 180, **extra: str) -> subprocess.CompletedProcess:
    return on("login", sys.executable, "-m", "hpckit", *args, timeout=timeout, **extra)


def login_popen(args: list[str], **extra: str) -> subprocess.Popen:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.Popen(["bash", str(CLUSTER), "exec", "login", "--", sys.executable, "-m", "hpckit", *args],
                            env=env(PATH=path, **extra), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def require_cluster() -> None:
    import services

    services.ensure("cluster")  # started once per session (tests/services.py), stopped at its end
    deadline = time.monotonic() + 120  # a node a fault test killed or cut comes back (heal-node) meanwhile
    while True:
        r = cluster("status")
        if r.returncode == 0:
            return
        if time.monotonic() > deadline:
            pytest.skip(f"the cluster is not up ({r.stdout.strip().splitlines()[-1:]}); {START_HINT}")
        time.sleep(3)


def scratch() -> Path:
    return Path(cluster("scratch").stdout.strip())


@contextlib.contextmanager
def cluster_lock(exclusive: bool = False):
    """Shared for tests that use the nodes, exclusive for tests that kill or cut one; the cluster is checked
    once the lock is held (a fault test holding it may have a node down)."""
    import services

    services.ensure("cluster")
    with open(scratch().parent / "run" / "tests.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            require_cluster()
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def scratch_dir():
    """A fresh directory in the shared scratch (seen by the login node and node1-3), removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="hpckit-test-", dir=scratch()))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def fileset(d: Path) -> Path:
    from conftest import DATASETS

    p = d / "fileset.json"
    p.write_text(json.dumps({ds: {"files": {str(f): "Events"}} for ds, f in DATASETS.items()}))
    return p


def squeue_ids() -> set[str]:
    r = on("login", "squeue", "-h", "-o", "%i")
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def node_processes(node: str, pattern: str, run_dir: Path | None = None) -> list[str]:
    """Command lines of ``node``'s processes that contain ``pattern`` (its network namespace's pids); with
    ``run_dir``, only those of that run (its path in the command line, or their working directory inside it):
    tests on the shared lock run side by side, and another test's interchange is not this run's leftover."""
    r = subprocess.run(["ip", "netns", "pids", f"hpc-{node}"], capture_output=True, text=True, timeout=30)
    out = []
    for pid in r.stdout.split():
        with contextlib.suppress(OSError):
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if pattern not in cmd:
                continue
            if run_dir is not None:
                cwd = os.readlink(f"/proc/{pid}/cwd")
                if str(run_dir) not in cmd and not (cwd + "/").startswith(str(run_dir) + "/"):
                    continue
            out.append(f"{pid} {cmd}")
    return out


NOSHARE_NODES = ("node4", "node5", "node6")


@contextlib.contextmanager
def cluster_xrootd(d: Path, files: list[Path]):
    """An XRootD server on the login node's cluster address (192.0.2.10), exporting copies of ``files`` from
    ``d`` (shared scratch): the storage a site without a shared file system reads its inputs from. Only the
    cluster's nodes may connect. Yields {file name: root:// URL}; the server is killed afterwards."""
    import services
    import socket

    services.ensure("xrootd")  # the xrootd-server package and its user
    data, admin = d / "xrd" / "data", d / "xrd" / "admin"
    data.mkdir(parents=True)
    admin.mkdir()
    for f in files:
        shutil.copyfile(f, data / f.name)
    with socket.socket() as s:  # a free port number (the login namespace has its own ports: any will do)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    hosts = "".join(f"xrd.allow host {n}\n" for n in ("login", *SHARED_NODES, *NOSHARE_NODES))
    cfg = d / "xrd" / "xrootd.cfg"
    cfg.write_text(f"all.export {data}\nxrd.port {port}\n{hosts}all.adminpath {admin}\nall.pidpath {admin}\n")
    subprocess.run(["chown", "-R", "xrootd:xrootd", str(d / "xrd")], check=True)
    pidfile = admin / "xrootd.pid"
    r = on("login", "xrootd", "-b", "-R", "xrootd", "-c", str(cfg), "-l", str(d / "xrd" / "xrootd.log"),
           "-s", str(pidfile))
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        deadline = time.monotonic() + 20
        while not (pidfile.is_file() and on("login", "bash", "-c", f"exec 3<>/dev/tcp/{LOGIN_ADDR}/{port}").returncode == 0):
            assert time.monotonic() < deadline, f"no XRootD on {LOGIN_ADDR}:{port}: {(d / 'xrd').iterdir()}"
            time.sleep(0.3)
        yield {f.name: f"root://{LOGIN_ADDR}:{port}/{data / f.name}" for f in files}
    finally:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text().strip()), 9)
