"""One progress display for every executor: chunks done/total, events/s, ETA, failures so far, workers;
and a bar of its own for planning (reading file metadata) when there are many files to read."""

from __future__ import annotations

import sys
import time
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from hpckit.core.units import format_rate


class _RateColumn(ProgressColumn):
    def render(self, task: Any) -> Text:
        elapsed = task.elapsed or 0.0
        events = task.fields.get("events", 0)
        rate = events / elapsed if elapsed > 0 else 0.0
        chunk_rate = task.completed / elapsed if elapsed > 0 else 0.0
        workers = task.fields.get("workers")
        failed = task.fields.get("failed", 0)
        extra = f" | {workers} workers" if workers else ""
        extra += f" | {failed} failed" if failed else ""
        return Text(f"{format_rate(rate)} | {chunk_rate:,.1f} chunks/s{extra}")


def _bar(*columns: ProgressColumn, transient: bool, thread: bool = True) -> Progress:
    """A rich bar ending in elapsed time and ETA. Redrawn by a thread in a terminal; in Jupyter only when
    told (:func:`_redraw`): rich's thread draws into an Output widget, and a ``print`` of the user's that
    lands while it does is captured into the widget and vanishes from the cell."""
    from rich.console import Console

    auto = thread and not Console().is_jupyter
    return Progress(*columns, TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=transient,
                    auto_refresh=auto)


def _redraw(progress: Progress, last: list[float], every: float = 0.25) -> None:
    """Refresh a bar without a thread of its own, at most every ``every`` seconds (``last``: [when])."""
    if progress.live.auto_refresh:
        return
    now = time.monotonic()
    if now - last[0] >= every:
        last[0] = now
        progress.refresh()


def _flushed() -> None:
    """Send what the user printed so far before a bar starts or after it stops. In Jupyter, stdout is
    buffered and sent by the kernel's own thread: a ``print`` just before a run, sent while the run's bar
    (an Output widget) is shown, lands in the widget and vanishes from the cell."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass


class ChunkProgress:
    """Progress of a run; a no-op when ``status`` is False (nothing is drawn, no thread started).
    ``failed``: chunk attempts that failed so far (retried, skipped) and files skipped in planning."""

    def __init__(self, status: bool, total_chunks: int, desc: str = "Processing"):
        self.enabled = bool(status)
        self.total = int(total_chunks)
        self.done = 0
        self.events = 0
        self.failures = 0
        self.started = time.perf_counter()
        self.first_result_at: float | None = None
        self._progress: Progress | None = None
        self._drawn = [0.0]
        if self.enabled:
            self._progress = _bar(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("chunks"), _RateColumn(), transient=False)
            self._task = self._progress.add_task(desc, total=total_chunks, events=0, workers=None, failed=0)

    def __enter__(self) -> "ChunkProgress":
        if self._progress is not None:
            _flushed()
            self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.refresh()  # the final count, also where nothing redraws by itself
            self._progress.stop()
            _flushed()

    def advance(self, chunks: int = 1, events: int = 0) -> None:
        if self.first_result_at is None:
            self.first_result_at = time.perf_counter()
        self.done += chunks
        self.events += events
        if self._progress is not None:
            self._progress.update(self._task, advance=chunks, events=self.events)
            _redraw(self._progress, self._drawn)

    def failed(self, n: int = 1) -> None:
        self.failures += n
        if self._progress is not None:
            self._progress.update(self._task, failed=self.failures)
            _redraw(self._progress, self._drawn)

    def set_workers(self, n: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, workers=n)


class PlanProgress:
    """A bar for reading file metadata (planning); a no-op when ``status`` is False. It redraws only when
    told (no thread: the Futures pool may fork meanwhile)."""

    def __init__(self, status: bool, total_files: int):
        self._progress: Progress | None = None
        self._drawn = [0.0]
        if status:
            self._progress = _bar(TextColumn("[bold]Planning"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("files"), transient=True, thread=False)
            self._task = self._progress.add_task("plan", total=total_files)

    @property
    def enabled(self) -> bool:
        return self._progress is not None

    def __enter__(self) -> "PlanProgress":
        if self._progress is not None:
            _flushed()
            self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
            _flushed()

    def advance(self, files: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=files)
            _redraw(self._progress, self._drawn, every=0.0)
