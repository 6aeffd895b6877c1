"""What worker processes log at WARNING and above (the engine's own loggers, uproot, the user's code), turned
into records of the run (``{"kind": "log", ...}`` in ``chunks.jsonl``, shown by report.html).

Where the workers see the run directory the lines are appended there as they happen, like the chunk
records; where they do not (a site without a shared file system, whose batch logs stay on the nodes) they
come back with the chunk results (:data:`hpckit.processor.work.CARRIED_RECORDS`). Only lines logged while
the worker ran chunks come back: a worker that never ran one, or what it logs after its last, stays in its
batch log. A process keeps at most :data:`LIMIT` lines between two chunks and counts the rest.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

LIMIT = 100  # lines a worker process holds between two chunks
LONGEST = 2000  # characters of one line kept
_OWN_HANDLERS = ("distributed", "parsl", "ndcctools")  # loggers that may not propagate to the root logger

_lock = threading.Lock()
_tap: "_Tap | None" = None


class _Tap(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: deque = deque(maxlen=LIMIT)
        self.dropped = 0
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001 - a line that cannot be formatted is not worth failing a chunk
            text = str(record.msg)
        with _lock:
            if len(self.lines) == self.lines.maxlen:
                self.dropped += 1
            self.lines.append((record.created, record.levelname, record.name, text[:LONGEST]))


def tap() -> None:
    """Start keeping this process's WARNING+ log lines (once per process)."""
    global _tap
    with _lock:
        if _tap is not None:
            return
        _tap = _Tap()
    logging.getLogger().addHandler(_tap)
    for name in _OWN_HANDLERS:
        logger = logging.getLogger(name)
        if not logger.propagate:
            logger.addHandler(_tap)


def take(worker: str, job: str | None) -> list[dict]:
    """The lines kept since the last call, as records naming ``worker`` and its batch ``job``."""
    if _tap is None:
        return []
    with _lock:
        lines, dropped = list(_tap.lines), _tap.dropped
        _tap.lines.clear()
        _tap.dropped = 0
    out = [{"kind": "log", "t": t, "worker": worker, "job": job, "level": level, "logger": name, "message": text}
           for t, level, name, text in lines]
    if dropped:
        out.append({"kind": "log", "t": lines[-1][0], "worker": worker, "job": job, "level": "WARNING",
                    "logger": "hpckit", "message": f"{dropped} more log line(s) dropped (at most {LIMIT} a chunk)"})
    return out
