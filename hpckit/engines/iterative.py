"""The iterative engine: every chunk in this process, one after another (debugging, small inputs)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from hpckit.engines.base import Engine


class IterativeEngine(Engine):
    name = "iterative"

    @contextlib.contextmanager
    def run_executor(self, opts: Any, workers: int, status: bool, records_dir: Path, say: Any) -> Iterator[Any]:
        from hpckit.processor import IterativeExecutor

        yield IterativeExecutor(status=status)


ENGINE = IterativeEngine()
