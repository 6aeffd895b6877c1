"""Standing pools by name: `hpckit up` starts one (:mod:`hpckit.launch.daemon`), `hpckit run --on NAME`
runs on it, `hpckit down NAME` ends it, `hpckit jobs` lists them.

A name is a file ``<pools dir>/<name>.json`` pointing at the pool's run directory (``$HPCKIT_POOLS``, else
``$XDG_STATE_HOME/hpckit/pools`` or ``~/.local/state/hpckit/pools``; 0700). The run directory holds the
rest: ``pool.json`` (state, pid, socket), ``launch.json`` and ``jobs.txt`` (so `hpckit cancel` works on it
too), ``logs/daemon.log``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from hpckit.core.defaults import VINE_PORT
from hpckit.core.child import python_child_env
from hpckit.core.errors import LaunchError
from hpckit.io.paths import private_dir

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def pools_dir() -> Path:
    base = os.environ.get("HPCKIT_POOLS")
    if not base:
        state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        base = os.path.join(state, "hpckit", "pools")
    return private_dir(base)


@dataclass
class UpOptions:
    site: str
    backend: str | None = None
    workers: int | None = None
    adapt: tuple[int, int] | None = None
    name: str | None = None
    idle_timeout: float = 1800.0  # seconds without a run before the pool ends itself (0: never)
    overrides: list = None  # type: ignore[assignment]
    run_dir: str | None = None
    worker_timeout: float = 300.0
    port: int = VINE_PORT
    env: str | None = None


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _entry(name: str) -> Path:
    if not NAME.match(name):
        raise LaunchError(f"pool name {name!r}: use letters, digits, '.', '_' or '-' (at most 63)")
    return pools_dir() / f"{name}.json"


def state(run_dir: Path) -> dict:
    try:
        return json.loads((Path(run_dir) / "pool.json").read_text())
    except (OSError, ValueError):
        return {}


def find(name: str) -> tuple[Path, dict]:
    """The run directory and ``pool.json`` of the pool ``name`` that is up (else a LaunchError saying so)."""
    entry = _entry(name)
    if not entry.is_file():
        known = ", ".join(sorted(p.stem for p in pools_dir().glob("*.json"))) or "none"
        raise LaunchError(f"no pool named {name!r} (pools: {known}); start one with hpckit up --site SITE --name {name}")
    run_dir = Path(json.loads(entry.read_text())["run_dir"])
    st = state(run_dir)
    if st.get("state") != "up" or not _pid_alive(st.get("pid")):
        raise LaunchError(f"pool {name!r} is not up ({st.get('state', 'no pool.json')}"
                          f"{', ended by ' + st['ended_by'] if st.get('ended_by') else ''}); see {run_dir}/logs/daemon.log")
    return run_dir, st


def up(opts: UpOptions, say: Callable[[str], None] = print, timeout: float | None = None) -> dict:
    """Start the daemon of a new pool and wait until it is up (or failed); returns its ``pool.json``."""
    from hpckit.deploy import load_site
    from hpckit.launch.plan import default_run_dir
    from hpckit.launch.session import parse_adapt

    site = load_site(opts.site, list(opts.overrides or [])).site
    name = opts.name or f"{site.name}-{uuid.uuid4().hex[:4]}"
    entry = _entry(name)
    if entry.is_file():
        old = Path(json.loads(entry.read_text())["run_dir"])
        if state(old).get("state") == "up" and _pid_alive(state(old).get("pid")):
            raise LaunchError(f"a pool named {name!r} is already up ({old}); end it with: hpckit down {name}")
    run_dir = Path(opts.run_dir).resolve() if opts.run_dir else default_run_dir(site)
    private_dir(run_dir)
    (run_dir / "logs").mkdir(exist_ok=True)
    data = {**asdict(opts), "name": name, "overrides": list(opts.overrides or []),
            "adapt": list(parse_adapt(opts.adapt)) if opts.adapt else None}
    (run_dir / "pool-options.json").write_text(json.dumps(data, indent=2) + "\n")
    (run_dir / "pool.json").write_text(json.dumps({"state": "starting", "name": name}) + "\n")
    entry.write_text(json.dumps({"name": name, "run_dir": str(run_dir)}) + "\n")
    with open(run_dir / "logs" / "daemon.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "hpckit.launch.daemon", str(run_dir)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                env=python_child_env())
    timeout = timeout if timeout is not None else opts.worker_timeout + 120
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = state(run_dir)
        if st.get("state") == "up":
            return {**st, "run_dir": str(run_dir)}
        if st.get("error") or proc.poll() is not None:
            tail = (run_dir / "logs" / "daemon.log").read_text(errors="replace").strip().splitlines()[-15:]
            raise LaunchError(st.get("error") or "the pool's process ended before its workers were up:\n"
                              + "\n".join(tail))
        time.sleep(0.3)
    proc.terminate()
    raise LaunchError(f"pool {name!r} not up after {timeout:g} s; its log: {run_dir}/logs/daemon.log")


def request(name: str, message: dict, timeout: float | None = None) -> Iterator[dict]:
    """Send ``message`` to the pool ``name``; yield its answers (the last one has ``ok``)."""
    _, st = find(name)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(st["socket"])
    except OSError as exc:
        raise LaunchError(f"pool {name!r} does not answer ({exc}); see its logs/daemon.log") from None
    with conn, conn.makefile("rwb") as fh:
        fh.write((json.dumps(message, default=str) + "\n").encode())
        fh.flush()
        for line in fh:
            yield json.loads(line)


def run_on(name: str, spec: Any, say: Callable[[str], None] = print) -> dict:
    """Run ``spec`` (a RunSpec) on the pool ``name``; returns the final answer (summary, written files)."""
    from dataclasses import fields

    from hpckit.launch.changes import fingerprint_now

    spec.check_inputs()
    spec = spec.resolved()  # absolute paths: the pool's process runs elsewhere; records go to its runs/NNN
    data = {f.name: getattr(spec, f.name) for f in fields(spec) if f.name != "run_dir"}
    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}
    final: dict = {}
    for answer in request(name, {"op": "run", "spec": data, "fingerprint": fingerprint_now()}):
        if "say" in answer:
            say(answer["say"])
        if "ok" in answer:
            final = answer
    if not final.get("ok"):
        raise LaunchError(final.get("error") or f"pool {name!r} closed the connection during the run")
    return final


def down(name: str, wait: float = 90.0) -> str:
    """Ask the pool ``name`` to end (it cancels every job) and wait until its process is gone."""
    run_dir, st = find(name)
    for _ in request(name, {"op": "down"}, timeout=30):
        pass
    deadline = time.monotonic() + wait
    while _pid_alive(st.get("pid")) and time.monotonic() < deadline:
        time.sleep(0.3)
    if _pid_alive(st.get("pid")):
        raise LaunchError(f"pool {name!r} (pid {st['pid']}) still running after {wait:g} s; hpckit cancel {run_dir} --force")
    _entry(name).unlink(missing_ok=True)
    jobs = (run_dir / "jobs.txt").read_text().split() if (run_dir / "jobs.txt").is_file() else []
    return f"pool {name} ended; {len(jobs)} job(s) cancelled ({run_dir})"


def list_pools() -> list[dict]:
    """Every standing pool (up or starting): name, state, site, backend, workers, jobs, age; the entries of
    ended pools are removed (their run directories stay)."""
    rows = []
    for entry in sorted(pools_dir().glob("*.json")):
        try:
            run_dir = Path(json.loads(entry.read_text())["run_dir"])
        except (OSError, ValueError, KeyError):
            continue
        st = state(run_dir)
        alive = st.get("state") == "up" and _pid_alive(st.get("pid"))
        row = {"name": entry.stem, "run_dir": str(run_dir), "state": st.get("state", "?") if alive or
               st.get("state") != "up" else "gone", "site": st.get("site"), "backend": st.get("backend"),
               "age_s": time.time() - st["started"] if st.get("started") else None, "workers": None, "jobs": None}
        if alive:
            try:
                for answer in request(entry.stem, {"op": "status"}, timeout=10):
                    row.update(workers=len(answer.get("workers", [])), jobs=answer.get("jobs"),
                               runs=answer.get("runs"), busy=answer.get("busy"))
            except Exception:  # noqa: BLE001 - listed without the live numbers
                pass
        elif st.get("state") != "starting":
            entry.unlink(missing_ok=True)  # ended (down, failed, idle timeout, killed): not standing any more
            continue
        rows.append(row)
    return rows
