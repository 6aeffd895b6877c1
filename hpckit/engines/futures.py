"""The futures engine: a process pool of ``workers`` on this machine (the default of `hpckit run`, and what
a launch falls back to when the site's scheduler is not here)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from hpckit.engines.base import Engine


class FuturesEngine(Engine):
    name = "futures"

    def sizes_workers(self, opts: Any) -> bool:
        return True

    @contextlib.contextmanager
    def run_executor(self, opts: Any, workers: int, status: bool, records_dir: Path, say: Any) -> Iterator[Any]:
        from hpckit.processor import FuturesExecutor

        yield FuturesExecutor(workers=workers, status=status)


ENGINE = FuturesEngine()
