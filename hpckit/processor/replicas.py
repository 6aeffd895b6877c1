"""Failover between the replicas of a file: on an open or read error the next copy is tried within the
same attempt, before any retry is spent. The copy that last worked is tried first by the next chunk
of that file in this process, so a dead server costs one failed try per worker, not one per chunk."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from hpckit.core.errors import FileAccessError, FilesetError
from hpckit.events.reader import forget

T = TypeVar("T")
_LAST_GOOD: dict[str, str] = {}  # primary file name -> the copy that last worked (per process)


class ReplicaMismatchError(FilesetError):
    """Two names of one fileset entry hold different files (different uuids)."""


def mismatch(primary: str, replica: str, got: str, expected: str) -> ReplicaMismatchError:
    return ReplicaMismatchError(
        f"replica {replica} holds a different file than {primary} (uuid {got}, expected {expected}); "
        "replicas must be copies of the same file"
    )


def reset_preferences() -> None:
    """Forget which copies worked (a new run starts from the fileset's order again)."""
    _LAST_GOOD.clear()


def candidates(primary: str, replicas: Sequence[str]) -> list[str]:
    """Every copy, the one that last worked first, then the fileset's order."""
    names = [primary, *replicas]
    good = _LAST_GOOD.get(primary)
    if good in names and good != primary:
        names.remove(good)
        names.insert(0, good)
    return names


def is_permanent(err: FileAccessError) -> bool:
    """Retrying cannot help: the file (or tree) is not there, is a directory, or access is refused."""
    permanent = getattr(err, "permanent", None)
    return bool(permanent) if permanent is not None else "not found" in str(err)


def with_replicas(primary: str, replicas: Sequence[str], fn: Callable[[str], T]) -> tuple[T, str, int]:
    """``fn(name)`` on the first copy that works: (result, the name that served, failovers). When every
    copy fails, one FileAccessError naming each (``permanent`` only if every failure was)."""
    names = candidates(primary, replicas)
    errors: list[tuple[str, FileAccessError]] = []
    for name in names:
        try:
            result = fn(name)
        except FileAccessError as err:
            forget(name)
            errors.append((name, err))
            continue
        if replicas:
            _LAST_GOOD[primary] = name
        return result, name, len(errors)
    if len(errors) == 1:
        raise errors[0][1]
    combined = FileAccessError(
        f"all {len(names)} copies of {primary} failed: " + "; ".join(f"[{n}] {e}" for n, e in errors),
        primary,
        errors[-1][1],
    )
    combined.permanent = all(is_permanent(e) for _, e in errors)
    combined.failovers = len(errors) - 1
    combined.cause_types = sorted({t for _, e in errors for t in e.cause_types})
    raise combined
