"""One progress display for every executor: chunks done, events/s, workers connected."""

from __future__ import annotations

import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from hpckit.units import format_rate


class _RateColumn(ProgressColumn):
    def render(self, task: Any) -> Text:
        elapsed = task.elapsed or 0.0
        events = task.fields.get("events", 0)
        rate = events / elapsed if elapsed > 0 else 0.0
        workers = task.fields.get("workers")
        extra = f" | {workers} workers" if workers else ""
        return Text(f"{format_rate(rate)}{extra}")


class ChunkProgress:
    """Progress of a run; a no-op when ``status`` is False (nothing is drawn, no thread started)."""

    def __init__(self, status: bool, total_chunks: int, desc: str = "Processing"):
        self.enabled = bool(status)
        self.done = 0
        self.events = 0
        self.started = time.perf_counter()
        self.first_result_at: float | None = None
        self._progress: Progress | None = None
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("chunks"),
                _RateColumn(),
                TimeElapsedColumn(),
                transient=False,
            )
            self._task = self._progress.add_task(desc, total=total_chunks, events=0, workers=None)

    def __enter__(self) -> "ChunkProgress":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, chunks: int = 1, events: int = 0) -> None:
        if self.first_result_at is None:
            self.first_result_at = time.perf_counter()
        self.done += chunks
        self.events += events
        if self._progress is not None:
            self._progress.update(self._task, advance=chunks, events=self.events)

    def set_workers(self, n: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, workers=n)
