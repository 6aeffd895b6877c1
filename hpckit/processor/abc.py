"""The processor interface users already write for coffea."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class ProcessorABC(ABC):
    """Subclass and implement ``process(events)``; ``postprocess`` runs once on the merged output.

    Every chunk runs on its own copy of the instance as it was when the run started (as in coffea), so
    state that ``process`` changes is never shared between chunks; return a new accumulator from
    ``process`` (docs/physics.md).
    """

    @abstractmethod
    def process(self, events: Any) -> Any:
        """Return an accumulatable (dict, number, set, list, hist.Hist, ...) for one chunk."""

    def postprocess(self, accumulator: Any) -> Any:
        """Return the final output (or None to keep ``accumulator`` as it is)."""
        return accumulator


def call_process(processor: Any, events: Any) -> Any:
    """A ProcessorABC or a plain single-argument callable."""
    if isinstance(processor, ProcessorABC) or hasattr(processor, "process"):
        return processor.process(events)
    if callable(processor):
        return processor(events)
    raise TypeError(f"processor must be a ProcessorABC or a callable, got {type(processor).__name__}")
