"""The process behind `hpckit up`: a :class:`~hpckit.launch.session.Session` kept up, detached from the shell.

It brings the pool up, writes ``pool.json`` in the run directory (state, pid, the request socket), then
answers requests on a Unix socket in a private (0700) directory: ``run`` (a RunSpec, run on the pool; the
caller's environment fingerprint must equal the pool's, else the differing packages are named),
``status`` and ``down``. One run at a time. It ends itself - cancelling every job - after
``idle_timeout`` seconds without a run, on ``down``, and on SIGTERM/SIGINT/SIGHUP; if it is killed outright
its lifeline cancels the jobs. Only the user who started it can connect (directory mode and the peer's uid).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from hpckit.core.defaults import VINE_PORT
from hpckit.core.errors import HpckitError
from hpckit.io.paths import write_json


def write_state(run_dir: Path, **data: Any) -> None:
    """``pool.json``: what `hpckit up`, `hpckit run --on`, `hpckit down` and `hpckit jobs` read."""
    f = Path(run_dir) / "pool.json"
    old = {}
    with contextlib.suppress(Exception):
        old = json.loads(f.read_text())
    old.update(data)
    write_json(f, old)


def _peer_uid(conn: socket.socket) -> int | None:
    with contextlib.suppress(OSError, AttributeError):
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[1]
    return None


class Daemon:
    def __init__(self, run_dir: Path, options: dict):
        self.run_dir = Path(run_dir)
        self.options = options
        self.idle_timeout = float(options.get("idle_timeout") or 0)
        self.session: Any = None
        self.stop = threading.Event()
        self.busy = threading.Lock()
        self.last_used = time.monotonic()
        self.sock_dir = Path(tempfile.mkdtemp(prefix="hpckit-pool-"))  # 0700; short path (108-byte limit)
        self.sock_path = self.sock_dir / "s"
        self.server: socket.socket | None = None

    def say(self, msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def up(self) -> None:
        from hpckit.launch.session import PoolOptions, Session

        o = self.options
        opts = PoolOptions(site=o["site"], backend=o.get("backend"), workers=o.get("workers"),
                           adapt=tuple(o["adapt"]) if o.get("adapt") else None, overrides=list(o.get("overrides", [])),
                           run_dir=self.run_dir, worker_timeout=float(o.get("worker_timeout", 300)),
                           port=int(o.get("port", VINE_PORT)), env=Path(o["env"]) if o.get("env") else None, say=self.say)
        self.session = Session(opts)
        self.session.record(kind="pool", name=o["name"], idle_timeout=self.idle_timeout)
        self.session.up()
        self.session.check_environment()  # records the environment this pool serves: later clients must match

    def serve(self) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(self.sock_path))
        os.chmod(self.sock_path, 0o600)
        self.server.listen(8)
        self.server.settimeout(1.0)
        s = self.session
        write_state(self.run_dir, state="up", pid=os.getpid(), socket=str(self.sock_path), name=self.options["name"],
                    site=s.site.name, backend=s.backend, started=s.started_at, idle_timeout=self.idle_timeout,
                    dashboard=s.dashboard_link(), dashboard_port=_port(s.dashboard_link()),
                    seconds_to_first_worker=s.seconds_to_first_worker)
        while not self.stop.is_set():
            if self.idle_timeout and not self.busy.locked() and time.monotonic() - self.last_used > self.idle_timeout:
                self.say(f"hpckit: no run for {self.idle_timeout:g} s; ending the pool")
                write_state(self.run_dir, ended_by="idle timeout")
                break
            try:
                conn, _ = self.server.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as fh:
            def send(**msg: Any) -> None:
                fh.write((json.dumps(msg, default=str) + "\n").encode())
                fh.flush()

            if _peer_uid(conn) not in (None, os.getuid()):
                send(ok=False, error="refused: this pool belongs to another user")
                return
            try:
                req = json.loads(fh.readline() or b"{}")
                op = req.get("op")
                if op == "status":
                    send(ok=True, **self.status())
                elif op == "down":
                    send(ok=True, message="ending the pool")
                    write_state(self.run_dir, ended_by="hpckit down")
                    self.stop.set()
                elif op == "run":
                    self.run(req, send)
                else:
                    send(ok=False, error=f"unknown request {op!r}")
            except HpckitError as exc:
                send(ok=False, error=str(exc))
            except Exception as exc:  # noqa: BLE001 - the caller gets the error; the pool stays up
                send(ok=False, error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())

    def status(self) -> dict:
        s = self.session
        return {"workers": s.workers(), "jobs": s.job_ids(), "state": s.state, "runs": s.runs,
                "busy": self.busy.locked(), "age_s": time.time() - s.started_at,
                "idle_s": time.monotonic() - self.last_used}

    def run(self, req: dict, send: Any) -> None:
        from hpckit.run import RunSpec, summarize

        spec = RunSpec(**{k: (tuple(v) if k == "data" else v) for k, v in req["spec"].items()})
        if not self.busy.acquire(blocking=False):
            send(say="hpckit: the pool is busy with another run; waiting")
            self.busy.acquire()
        try:
            self.last_used = time.monotonic()
            self.session.check_environment(req.get("fingerprint"))
            send(say=f"hpckit: running on pool {self.options['name']} ({len(self.session.workers())} workers)")
            out, metrics, written = self.session.run(spec, status=False)
            send(ok=True, summary=summarize(metrics, written), written=[str(p) for p in written],
                 time_to_first_result=metrics.get("time_to_first_result"), walltime=metrics.get("walltime"))
        finally:
            self.last_used = time.monotonic()
            self.busy.release()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.server is not None:
                self.server.close()
        with contextlib.suppress(OSError):
            self.sock_path.unlink()
            self.sock_dir.rmdir()
        if self.session is not None:
            self.session.down()
        write_state(self.run_dir, state="down", finished=time.time())


def _port(link: str | None) -> int | None:
    if not link:
        return None
    return int(link.split(":")[2].split("/")[0])


def main(argv: list[str]) -> int:
    run_dir = Path(argv[0])
    options = json.loads((run_dir / "pool-options.json").read_text())
    d = Daemon(run_dir, options)

    def on_signal(signum: int, frame: Any) -> None:
        write_state(run_dir, ended_by=f"signal {signum}")
        d.stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    code = 0
    try:
        d.up()
        d.serve()
    except BaseException as exc:  # noqa: BLE001 - said in pool.json for `hpckit up` to print
        write_state(run_dir, state="failed", error=str(exc) if isinstance(exc, HpckitError)
                    else f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        code = 1
    finally:
        d.close()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
