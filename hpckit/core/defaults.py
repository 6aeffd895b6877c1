"""The one default (and check) of each value several layers share: the CLI, run, launch, deploy and the
processor read them here. Light on purpose (no third-party imports), so the CLI starts fast and neither
hpckit.processor nor hpckit.deploy has to import the other for a number."""

from __future__ import annotations

from typing import Any

from hpckit.core.errors import UsageError

__all__ = ["DEFAULT_CHUNKSIZE", "VINE_PORT", "check_chunksize"]

DEFAULT_CHUNKSIZE = 100_000  # events per chunk (coffea's default)
VINE_PORT = 9123  # the TaskVine manager's port (workers, vine_factory and doctor use the same)


def check_chunksize(value: Any) -> int:
    """``value`` as a chunk size (a positive whole number of events), else a UsageError (a ValueError)."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or (isinstance(value, float) and value != n):
        raise UsageError(f"chunksize must be a positive integer, got {value!r}")
    return n
