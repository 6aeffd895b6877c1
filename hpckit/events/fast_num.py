"""``ak.num(collection)`` of hpckit's events without awkward's generic walk.

``ak.num(events.Muon) >= 2`` is the first line of most analyses; in awkward it costs ~0.4 ms on a
10-event chunk (error context, named axes, ``recursively_apply`` over the collection's 80 fields) for a
subtraction of two offset arrays. The collections' array classes take it through awkward's own hook for
third-party arrays (``__awkward_function__``): ``ak.num(x)`` / ``ak.num(x, axis=1)`` of a list of
records or numbers on the CPU, without named axes, is ``stops - starts`` wrapped as awkward wraps it;
every other call, and every other ``ak`` function, runs awkward's own implementation unchanged.
``tests/test_events_fast_slice.py`` compares both.
"""

from __future__ import annotations

from typing import Any

import awkward as ak
import numpy as np

from hpckit.events import fast_slice


def _awkwards_own(func: Any, args: tuple, kwargs: dict) -> Any:
    """What ``func(*args, **kwargs)`` returns when no array intercepts it (awkward's dispatch, resumed)."""
    gen = func.__wrapped__(*args, **kwargs)
    if not hasattr(gen, "__next__"):
        return gen
    next(gen)
    try:
        next(gen)
    except StopIteration as done:
        return done.value
    raise AssertionError(f"{func.__name__} yielded twice")  # pragma: no cover - awkward's own contract


def fast_num(args: tuple, kwargs: dict) -> ak.Array | None:
    """``ak.num(array)`` at axis 1 of a list layout, else None."""
    if len(args) > 2 or set(kwargs) - {"axis"}:
        return None
    axis = args[1] if len(args) == 2 else kwargs.get("axis", 1)
    array = args[0] if args else None
    if type(axis) is not int or axis != 1 or not isinstance(array, ak.Array):
        return None
    if not fast_slice.plain(array):
        return None
    layout = array._layout
    if type(layout) is not fast_slice.LISTOFFSET and type(layout) is not fast_slice.LIST:
        return None
    starts, stops = fast_slice.bounds(layout)
    counts = np.asarray(stops - starts, dtype=np.int64)
    return fast_slice.wrap(ak.contents.NumpyArray(counts), array)


class FastNum:
    """Mixin for the collections' array classes."""

    def __awkward_function__(self, func: Any, array_likes: Any, args: tuple, kwargs: dict) -> Any:
        out = fast_num(args, kwargs) if func is ak.num else None
        return _awkwards_own(func, args, kwargs) if out is None else out
