"""The machine services the integration tests use, started ahead of need (``prestart``) or on first need, and
stopped at the end.

Each service is one or more of the idempotent scripts in scripts/ (they install their Debian packages as
root and do nothing when the service is already up). ``ensure(name)`` runs them once per test session -
once across all pytest-xdist workers too: the first worker to need a service takes a file lock in the
session's shared temporary directory (one lock for all services: their scripts share apt), starts it and
writes down the outcome; the others read it.

The session stops at its end exactly what it started (the controller process does it in
``pytest_sessionfinish``, tests/conftest.py), so a machine whose services were already up keeps them
and a fresh machine is left as it was found. A service that cannot be started fails the tests that need
it with the script's own message; where it is down and starting it needs root, they skip saying what to
run (tests/conftest.py turns that skip into a failure under CI=true).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"


@dataclass(frozen=True)
class Service:
    """How to ask whether a service is up, start it (idempotent scripts, in order) and stop it."""

    name: str
    start: tuple[tuple[str, ...], ...]
    status: tuple[str, ...] | None = None  # exit 0: up (None: always run `start`, it is cheap when done)
    stop: tuple[str, ...] | None = None  # None: nothing runs once started (packages, an image, config)
    hint: str = field(default="")
    needs: tuple[str, ...] = ()  # services settled first (each started, and stopped at the end, as itself)

    def command_line(self) -> str:
        return " && ".join("sudo bash " + " ".join(c) for c in self.start)


def _script(name: str, *args: str) -> tuple[str, ...]:
    return (f"scripts/{name}", *args)


SERVICES: dict[str, Service] = {
    s.name: s
    for s in (
        Service("slurm", (_script("slurm-local.sh", "start"),), _script("slurm-local.sh", "status"),
                _script("slurm-local.sh", "stop")),
        Service("xrootd", (_script("xrootd-local.sh", "start"),), _script("xrootd-local.sh", "status"),
                _script("xrootd-local.sh", "stop")),
        # rootful podman (config rewritten only when it differs) and the local Debian base image
        Service("podman", (_script("podman-setup.sh"), _script("debian-base.sh"))),
        # a login node and compute nodes in network namespaces with their own Slurm (after the local one:
        # it uses the Slurm packages slurm-local.sh installs); stopped at the end like the others
        Service("cluster", (_script("cluster-local.sh", "start"),), _script("cluster-local.sh", "status"),
                _script("cluster-local.sh", "stop"), needs=("slurm",)),
        Service("chromium", (_script("chromium-setup.sh", "start"),), _script("chromium-setup.sh", "status")),
    )
}

_shared_dir: Path | None = None
_outcome: dict[str, tuple[str, str]] = {}  # name -> ("ok" | "skip" | "fail", message), this process


def set_shared_dir(path: Path) -> None:
    """Where the session's workers meet (the controller's basetemp); set by a session fixture."""
    global _shared_dir
    _shared_dir = path
    path.mkdir(parents=True, exist_ok=True)


def shared_dir_for(basetemp: Path) -> Path:
    """The controller's basetemp: a pytest-xdist worker's basetemp is ``<controller's>/popen-gwN``."""
    return basetemp.parent if os.environ.get("PYTEST_XDIST_WORKER") else basetemp


def _run(cmd: tuple[str, ...], timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", *cmd], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _up(service: Service) -> bool:
    return service.status is not None and _run(service.status, timeout=120).returncode == 0


def _start(service: Service) -> tuple[str, str]:
    """("ok"|"skip"|"fail", message) and, when this call started it, a marker for the final stop."""
    if _up(service):
        return "ok", "already up"
    if os.geteuid() != 0:
        return "skip", f"{service.name} is not set up and setting it up needs root: run {service.command_line()}"
    for cmd in service.start:
        r = _run(cmd)
        if r.returncode != 0:
            tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-20:])
            return "fail", f"{' '.join(cmd)} failed ({r.returncode}):\n{tail}"
    if service.status is not None and not _up(service):
        return "fail", f"{service.name} was started but {' '.join(service.status)} says it is not up"
    return "ok", "started"


def _settle(name: str) -> tuple[str, str]:
    """This session's outcome for ``name``: read where a process of the session has started it already,
    else started here (under the session's one lock) and written down for the others."""
    service = SERVICES[name]
    for dep in service.needs:  # a session that needs only the cluster stops the Slurm it started for it too
        kind, message = _settle(dep)
        if kind != "ok":
            return kind, f"{dep}, which {name} needs: {message}"
    if _shared_dir is None:  # imported outside a pytest session with tests/conftest.py
        return _start(service)
    # one lock for every service: their scripts share apt/dpkg, which refuses concurrent installs
    with FileLock(str(_shared_dir / "services.lock")):
        done = _shared_dir / f"service-{name}.outcome"
        if done.is_file():
            kind, _, message = done.read_text().partition("\n")
            return kind, message
        kind, message = _start(service)
        done.write_text(f"{kind}\n{message}")
        if kind == "ok" and message == "started" and service.stop is not None:
            (_shared_dir / f"service-{name}.started").touch()
        return kind, message


def ensure(name: str) -> None:
    """Make the service ``name`` usable for this test, starting it once per session; skip or fail the
    test (with the reason) where it cannot be."""
    if name not in _outcome:
        _outcome[name] = _settle(name)
    kind, message = _outcome[name]
    if kind == "skip":
        pytest.skip(message)
    if kind == "fail":
        pytest.fail(f"could not start {name}: {message}", pytrace=False)


# the order a session starts its services in ahead of need: quick installs first, podman (with its Debian base
# image, built by debootstrap: minutes on a fresh machine) last
PRESTART_ORDER = ("slurm", "cluster", "xrootd", "chromium", "podman")
_prestarted: threading.Thread | None = None


def prestart(names: set[str]) -> None:
    """Start ``names`` in a background thread of this process, so that installing them on a fresh machine
    overlaps the tests that need none (tests/conftest.py runs those first). A test that needs one still
    goes through :func:`ensure`, which waits for it (the lock) and reads the outcome written here."""
    global _prestarted
    todo = [n for n in PRESTART_ORDER if n in names]
    if _prestarted is not None or not todo or _shared_dir is None or os.geteuid() != 0:
        return

    def run() -> None:
        for name in todo:
            if name not in _outcome:
                with contextlib.suppress(Exception):  # the test that needs it reports the failure
                    _outcome[name] = _settle(name)

    _prestarted = threading.Thread(target=run, name="hpckit-test-services", daemon=True)
    _prestarted.start()


def wait_prestarted() -> None:
    """Let the background starts end before the process does (a half-run apt would leave dpkg locked)."""
    if _prestarted is not None:
        _prestarted.join()


# The daemons the service scripts start. They daemonize (fork and leave their parent), and a pytest process
# that has run an engine in-process is a child subreaper (hpckit.processor.lifeline): a daemon started from
# it then becomes its child, with every batch job of the session (other tests' included) below it.
SERVICE_DAEMONS = frozenset({"slurmctld", "slurmd", "slurmstepd", "munged", "xrootd", "cmsd", "conmon"})


def own_descendants(pid: int | None = None) -> set[int]:
    """Pids of the processes below ``pid`` (this one by default) that a test started: the session's service
    daemons and what runs under them are skipped."""
    import psutil

    found: set[int] = set()
    todo = [psutil.Process(pid)]
    while todo:
        try:
            kids = todo.pop().children()
        except psutil.Error:
            continue
        for kid in kids:
            try:
                if kid.name() in SERVICE_DAEMONS:
                    continue
            except psutil.Error:
                continue
            found.add(kid.pid)
            todo.append(kid)
    return found


def stop_started(shared: Path) -> list[str]:
    """Stop the services this session started (markers in ``shared``); return the failures."""
    errors = []
    for name, service in reversed(SERVICES.items()):  # a service before those it needs
        marker = shared / f"service-{name}.started"
        if service.stop is None or not marker.is_file():
            continue
        r = _run(service.stop, timeout=300)
        if r.returncode != 0:
            errors.append(f"{' '.join(service.stop)}: {r.stderr.strip()}")
        marker.unlink()
    return errors
