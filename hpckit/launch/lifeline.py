"""A pool's lifeline: a small process that cancels the pool's jobs when the process that owns them dies.

The owner (a script, a notebook kernel, `hpckit up`'s daemon) starts it with a pipe on its stdin and
keeps the write end. The kernel closes that pipe however the owner ends - ``SIGKILL``, ``SIGTERM``, a
crashed kernel - so the lifeline reads end-of-file and then cancels every job the run directory records
(``jobs.txt``, the jobs carrying its name) and ends the recorded helper processes (Parsl's interchange),
as `hpckit cancel RUN_DIR --force` would. An owner that ended its pool itself writes ``released`` first
and the lifeline exits without doing anything. It runs in its own session, so a Ctrl-C or a kernel
interrupt sent to the owner's process group does not reach it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from hpckit.processor.lifeline import EXEMPT

RELEASED = b"released\n"


class Lifeline:
    """The owner's end: :meth:`start` it once the run directory exists, :meth:`release` after teardown."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc

    @classmethod
    def start(cls, run_dir: Path) -> "Lifeline":
        from hpckit.core.child import python_child_env

        env = python_child_env()  # the hpckit this process runs, wherever it was imported from
        env[EXEMPT] = "1"  # the owner's guardian (guard_descendants) ends its other children, not this one
        with open(Path(run_dir) / "logs" / "lifeline.log", "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "hpckit.launch.lifeline", str(run_dir)],
                                    stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True, close_fds=True)
        return cls(proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self, wait: float = 10.0) -> None:
        """The pool is down: the lifeline exits without cancelling."""
        with contextlib.suppress(OSError, ValueError):
            self.proc.stdin.write(RELEASED)
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _owner_gone(stream, owner: int, poll: float) -> bool:
    """Wait for the owner's word or its end: False once it released, True once it is gone (the pipe closed,
    or this process was re-parented: a child the owner forked may still hold the pipe open)."""
    import select

    while True:
        ready, _, _ = select.select([stream], [], [], poll)
        if ready:
            return stream.readline() != RELEASED
        if os.getppid() != owner:
            return True


def watch(run_dir: Path, stream=None, owner: int | None = None, poll: float = 1.0) -> list[str]:
    """Block until the owner releases (returns []) or dies (cancels, returns what was done)."""
    stream = stream if stream is not None else sys.stdin.buffer
    if not _owner_gone(stream, owner if owner is not None else os.getppid(), poll):
        return []
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} lifeline: the owner of {run_dir} is gone; cancelling its jobs",
          flush=True)
    from hpckit.launch.teardown import cancel_runs, find_runs

    lines = []
    for attempt in range(3):  # the scheduler may be briefly unreachable: try again
        try:
            lines = cancel_runs(find_runs(Path(run_dir), Path(run_dir).parent), force=True)
            break
        except Exception as exc:  # noqa: BLE001 - keep trying, then say why in the log
            lines = [f"{run_dir}: cancelling failed: {type(exc).__name__}: {exc}"]
            time.sleep(2.0 * (attempt + 1))
    return lines


def main(argv: list[str]) -> int:
    run_dir = Path(argv[0])
    lines = watch(run_dir)
    for line in lines:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} lifeline: {line}", flush=True)
    if lines:
        _mark_ended(run_dir)
    return 0


def _mark_ended(run_dir: Path) -> None:
    """launch.json says the owner died and the lifeline cancelled its jobs."""
    import json

    f = run_dir / "launch.json"
    with contextlib.suppress(Exception):
        data = json.loads(f.read_text())
        data.update(state="owner died; jobs cancelled by its lifeline", finished=time.time())
        from hpckit.io.paths import write_json

        write_json(f, data)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
