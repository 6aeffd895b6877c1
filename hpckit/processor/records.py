"""Per-chunk records of a run, appended to a JSON-lines file as they happen (read by ``hpckit report``).

A :class:`ChunkRecorder` travels inside the ``ChunkJob`` to wherever chunks run and appends one line per
finished (or failed) chunk; the Runner appends the run's own events (start, chunks planned, end). Each
line is one ``os.write`` on a file opened with ``O_APPEND``, so lines from concurrent worker processes do
not interleave on a local file system or Lustre/GPFS (NFS does not promise it across nodes: the reader
counts and skips a broken line), and a run that is killed keeps every line written so far. A line that a
full disk cuts short is taken back, so the file holds whole lines only. A worker that cannot reach the file
(a site without a shared file system) hands its chunk's record back with the chunk's result instead
(``"records"``, merged like the rest), and the Runner writes those when the run ends: the report is as
complete, only not live (records are appended only to a file and directory of the user's own, never through
a link: on a node, another user may have made the run directory's path in /tmp). A failed attempt has no
result to ride with: its records are held in the worker process (:func:`hold`, by run) and ride with that
process's next chunk result of the same run, so the failures an engine retried past are in the report too. Held records of a process that runs no more chunks of
the run, or of the failure that ends it, stay behind (the run's own error record says why it failed).

Lines (``t`` is Unix time in seconds)::

    {"kind": "run", "event": "start" | "planned" | "end" | "error", "t": ..., ...}
    {"kind": "chunk", "t0": start, "t1": end, "worker": "host:pid", "job": batch job id or null,
     "dataset": ..., "file": ..., "start": entrystart, "stop": entrystop, "events": n, "bytes": n,
     "retries": n}
    {"kind": "skipped" | "failure", "t": ..., "worker": ..., "job": ..., "chunk": "...", "error": "..."}
    {"kind": "log", "t": ..., "worker": ..., "job": ..., "level": "WARNING", "logger": ..., "message": ...}
      (what a worker process logged while it ran chunks: hpckit.processor.worker_log)
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

# where a worker learns its batch job id (set by the scheduler in the job's environment)
BATCH_JOB_ENV = ("HPCKIT_JOB_ID", "SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "COBALT_JOBID")


HELD_MAX = 1000  # records one worker process holds for its next results; older ones are dropped
_held: list[tuple[str, dict]] = []
_held_lock = threading.Lock()


def hold(run: str, records: list[dict]) -> None:
    """Keep records of run ``run`` that this process could not write, until :func:`take_held` hands them to
    that run's next chunk result (a worker may serve several runs: each gets only its own)."""
    if records:
        with _held_lock:
            _held.extend((run, r) for r in records)
            del _held[:-HELD_MAX]


def take_held(run: str) -> list[dict]:
    with _held_lock:
        out = [r for k, r in _held if k == run]
        _held[:] = [(k, r) for k, r in _held if k != run]
    return out


def batch_job_id() -> str | None:
    for name in BATCH_JOB_ENV:
        value = os.environ.get(name)
        if value:
            return value
    return None


class ChunkRecorder:
    """Append records to ``path`` (``chunks.jsonl`` in a run directory). Picklable: only the path travels."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)

    def __repr__(self) -> str:
        return f"ChunkRecorder({self.path!r})"

    def __call__(self, record: dict) -> bool:
        """Append ``record``; False when it could not be written here (the caller may carry it elsewhere)."""
        line = (json.dumps(record, default=str, separators=(",", ":")) + "\n").encode()
        uid = os.geteuid()
        try:  # a node's /tmp where another user made the run directory's path: carried back instead
            if os.stat(os.path.dirname(self.path) or ".").st_uid != uid:
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError:
            return False  # this worker cannot see the run directory (no shared file system)
        try:
            if os.fstat(fd).st_uid != uid:
                return False
            written = os.write(fd, line)
            if written < len(line):  # a full disk took part of the line: take it back (whole or nothing)
                _take_back(fd, written)
                return False
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def run_event(self, event: str, **fields: Any) -> None:
        self({"kind": "run", "event": event, "t": time.time(), **fields})

    def reset(self) -> None:
        """Start a new record file (a new run in the same directory)."""
        try:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            with open(self.path, "wb"):
                pass
        except OSError:
            pass


def _take_back(fd: int, written: int) -> None:
    """Cut the ``written`` bytes of a short append off the end again, unless another writer appended after
    them (then the reader counts one broken line, as after a kill)."""
    end = os.lseek(fd, 0, os.SEEK_CUR)  # O_APPEND: just after our bytes
    if os.fstat(fd).st_size == end:
        os.ftruncate(fd, end - written)

