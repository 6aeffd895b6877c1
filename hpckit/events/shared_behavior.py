"""Keep one behaviour mapping shared between arrays instead of copied on every operation.

awkward merges the behaviours of an operation's inputs by copying them into a new dict, even when every
input holds the same mapping (``awkward._layout.merge_mappings``, marked "TODO: add zero-copy" upstream):
on NanoAOD's behaviour that copy cost ~9 ms per ``a + b``. Merging a mapping with itself gives the same
mapping, so the copy is skipped there; a merge of different mappings is awkward's own, kept a
:class:`Behavior` so the binary operations it makes on demand still resolve.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

_lazy_type: type | None = None  # hpckit.events.behavior.Behavior, given by install() (it imports this module)


def _distinct(mappings: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for m in mappings:
        if m is not None and all(m is not d for d in out):
            out.append(m)
    return out


def _keep_lazy(merged: Any, inputs: Sequence[Any]) -> Any:
    Behavior = _lazy_type
    lazy = [m for m in inputs if isinstance(m, Behavior)]
    if not lazy or isinstance(merged, Behavior) or not isinstance(merged, dict):
        return merged
    kinds: dict[str, str] = {}
    for m in lazy:
        kinds.update(m.kinds)
    return Behavior(merged, lazy[0].recipe, kinds)


def install(lazy_type: type) -> None:
    """Wrap awkward's two merge points once (idempotent; a no-op if awkward renamed them); a merge of
    different ``lazy_type`` mappings stays a ``lazy_type``."""
    global _lazy_type
    if _lazy_type is not None:
        return
    _lazy_type = lazy_type
    import awkward._connect.numpy as ak_numpy
    import awkward._layout as ak_layout

    merge = getattr(ak_layout, "merge_mappings", None)
    if merge is not None:
        def merge_mappings(mappings: Sequence[Mapping], default: Mapping | None = None) -> Mapping | None:
            distinct = _distinct(mappings)
            if len(distinct) <= 1:
                return distinct[0] if distinct else merge(mappings, default)
            return _keep_lazy(merge(distinct, default), distinct)

        ak_layout.merge_mappings = merge_mappings
    behavior_of = getattr(ak_numpy, "behavior_of", None)
    if behavior_of is not None:
        def lazy_behavior_of(*arrays: Any, behavior: Mapping | None = None) -> Mapping | None:
            merged = behavior_of(*arrays, behavior=behavior)
            if behavior is not None:
                return merged
            return _keep_lazy(merged, _distinct([getattr(a, "_behavior", None) for a in arrays]))

        ak_numpy.behavior_of = lazy_behavior_of
