"""How chunk outputs merge: numbers add, mappings merge per key, sets union, lists concatenate,
`hist.Hist` adds bin-wise, and the legacy coffea accumulator classes add.

The rules are checked in a fixed order so that the result does not depend on which executor merged
what: anything with ``__add__`` adds, then sets, then mappings. Anything else is a ``ValueError`` that
names both types.
"""

from __future__ import annotations

import copy
import io
import pickle
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable, MutableMapping, MutableSet
from typing import Any, Callable

import numpy as np


class AccumulatorABC(ABC):
    """Legacy coffea accumulator: ``identity()`` and in-place ``add()``; ``+`` and ``+=`` follow."""

    @abstractmethod
    def identity(self) -> "AccumulatorABC": ...

    @abstractmethod
    def add(self, other: Any) -> None: ...

    def __add__(self, other: Any) -> "AccumulatorABC":
        out = copy.deepcopy(self)
        out.add(other)
        return out

    def __radd__(self, other: Any) -> "AccumulatorABC":
        out = copy.deepcopy(other)
        out.add(self)
        return out

    def __iadd__(self, other: Any) -> "AccumulatorABC":
        self.add(other)
        return self


class value_accumulator(AccumulatorABC):
    """A single value built by ``default_factory`` that adds."""

    def __init__(self, default_factory: Callable[[], Any], initial: Any = None):
        self.value = default_factory() if initial is None else initial
        self.default_factory = default_factory

    def __repr__(self) -> str:
        return f"value_accumulator({self.default_factory!r}, {self.value!r})"

    def identity(self) -> "value_accumulator":
        return value_accumulator(self.default_factory)

    def add(self, other: Any) -> None:
        self.value = self.value + (other.value if isinstance(other, value_accumulator) else other)


class list_accumulator(list, AccumulatorABC):
    def identity(self) -> "list_accumulator":
        return list_accumulator()

    def add(self, other: Iterable) -> None:
        self.extend(other)


class set_accumulator(set, AccumulatorABC):
    def identity(self) -> "set_accumulator":
        return set_accumulator()

    def add(self, other: Any) -> None:  # a non-set is inserted as an element, as coffea does
        if isinstance(other, MutableSet):
            self.update(other)
        else:
            set.add(self, other)


class dict_accumulator(dict, AccumulatorABC):
    def identity(self) -> "dict_accumulator":
        return dict_accumulator({k: _identity_of(v) for k, v in self.items()})

    def add(self, other: MutableMapping) -> None:
        _merge_mapping_into(self, other)


class defaultdict_accumulator(defaultdict, AccumulatorABC):
    def identity(self) -> "defaultdict_accumulator":
        return defaultdict_accumulator(self.default_factory)

    def add(self, other: MutableMapping) -> None:
        for key, value in other.items():
            self[key] = _add(self[key], value) if key in self else copy.deepcopy(value)


class column_accumulator(AccumulatorABC):
    """Concatenates numpy (or awkward) arrays along the first axis."""

    def __init__(self, value: Any):
        self._empty = value[:0] if hasattr(value, "__getitem__") else np.zeros(0)
        self._value = value

    @property
    def value(self) -> Any:
        return self._value

    def __repr__(self) -> str:
        return f"column_accumulator({self._value!r})"

    def identity(self) -> "column_accumulator":
        return column_accumulator(self._empty)

    def add(self, other: "column_accumulator") -> None:
        if not isinstance(other, column_accumulator):
            raise ValueError(f"column_accumulator cannot add {type(other).__name__}")
        if isinstance(self._value, np.ndarray):
            if other._value.shape[1:] != self._value.shape[1:]:
                raise ValueError(f"column_accumulator shapes differ: {self._value.shape} vs {other._value.shape}")
            self._value = np.concatenate([self._value, other._value])
        else:
            import awkward as ak

            self._value = ak.concatenate([self._value, other._value])


def _identity_of(value: Any) -> Any:
    if isinstance(value, AccumulatorABC):
        return value.identity()
    return type(value)()


def _is_addable(value: Any) -> bool:
    return hasattr(value, "__add__") and not isinstance(value, (MutableSet, MutableMapping)) or isinstance(
        value, AccumulatorABC
    )


_ATOMIC = frozenset({int, float, str, bool, bytes, type(None)})  # deepcopy returns these as they are


def _merge_mapping_into(target: MutableMapping, other: MutableMapping) -> None:
    for key, value in other.items():
        if key in target:
            target[key] = _add(target[key], value, inplace=True)
        else:
            target[key] = value if type(value) in _ATOMIC else copy.deepcopy(value)


def _mapping_result_type(a: MutableMapping, b: MutableMapping) -> type:
    ta, tb = type(a), type(b)
    if issubclass(ta, tb):
        return tb
    if issubclass(tb, ta):
        return ta
    raise ValueError(f"Cannot add accumulators of incompatible type ({ta.__name__}, {tb.__name__})")


_NUMBERS = (int, float)


def _add(a: Any, b: Any, inplace: bool = False) -> Any:
    # the plain built-in types of every chunk's metrics first: the same operations as the general rules
    # below, without their ABC isinstance checks (the driver folds 10^5 of these)
    kind = type(a)
    if kind is type(b):
        if kind in _NUMBERS:
            return a + b
        if kind is set:
            if inplace:
                a |= b
                return a
            return a | b
        if kind is dict:
            out = a if inplace else {}
            if not inplace:
                _merge_mapping_into(out, a)
            _merge_mapping_into(out, b)
            return out
    if _is_addable(a) and _is_addable(b):
        try:
            if inplace:
                a += b
                return a
            return a + b
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"Cannot add accumulators of incompatible type ({type(a).__name__}, {type(b).__name__}): {err}"
            ) from err
    if isinstance(a, MutableSet) and isinstance(b, MutableSet):
        if inplace:
            a |= b
            return a
        return a | b
    if isinstance(a, MutableMapping) and isinstance(b, MutableMapping):
        rtype = _mapping_result_type(a, b)
        if inplace and type(a) is rtype:
            out = a
        else:
            out = _new_mapping_like(a, rtype)
            _merge_mapping_into(out, a)
        _merge_mapping_into(out, b)
        return out
    raise ValueError(f"Cannot add accumulators of incompatible type ({type(a).__name__}, {type(b).__name__})")


def _new_mapping_like(a: MutableMapping, rtype: type) -> MutableMapping:
    if issubclass(rtype, defaultdict):
        return rtype(getattr(a, "default_factory", None))
    return rtype()


def add(a: Any, b: Any) -> Any:
    """Merge two outputs into a new object (neither input is changed)."""
    return _add(a, b, inplace=False)


def iadd(a: Any, b: Any) -> Any:
    """Merge ``b`` into ``a`` where possible and return the result (use the return value)."""
    return _add(a, b, inplace=True)


def accumulate(items: Iterable[Any], accum: Any = None) -> Any:
    """Merge ``items`` (skipping ``None``) into ``accum``; with ``accum=None`` the first item is copied first."""
    it = (x for x in items if x is not None)
    if accum is None:
        try:
            first = next(it)
        except StopIteration:
            return None
        try:
            second = next(it)
        except StopIteration:
            return first
        accum = add(first, second)
    for item in it:
        accum = iadd(accum, item)
    return accum


class Merger:
    """Fold results one at a time; the first result is copied before anything is merged into it, so
    objects a processor returned (or keeps) are never changed behind its back."""

    def __init__(self) -> None:
        self.result: Any = None
        self._owned = False

    def add(self, item: Any) -> None:
        if item is None:
            return
        if self.result is None:
            self.result = item
        elif self._owned:
            self.result = iadd(self.result, item)
        else:
            self.result = add(self.result, item)
            self._owned = True


DEFAULT_TREE_WIDTH = 20


class MergeTree:
    """The one merge order every executor follows, so that outputs are bit-identical whatever merged what
    where: chunk results (in chunk order) are merged ``width`` consecutive ones at a time, level by level;
    a group of one moves up unmerged. Float sums then add in the same order whatever the completion order,
    and growing category axes list categories in chunk (fileset) order.

    Feed it finished nodes with :meth:`put`; it hands back the groups now complete, each as
    ``((level, index), children in order)``, to be merged (by ``accumulate``) wherever the executor likes and
    put back one level up. ``held`` counts results waiting for siblings (at most ``width - 1`` per level
    when results come back in order)."""

    def __init__(self, n: int, width: int = DEFAULT_TREE_WIDTH):
        if n < 1:
            raise ValueError("nothing to merge")
        self.width = max(2, int(width))
        self.sizes = [int(n)]
        while self.sizes[-1] > 1:
            self.sizes.append(-(-self.sizes[-1] // self.width))
        self._held: dict[tuple[int, int], Any] = {}
        self._count: dict[tuple[int, int], int] = {}
        self.root: Any = None
        self.done = False
        self.held_max = 0

    @property
    def held(self) -> int:
        return len(self._held)

    def put(self, level: int, index: int, value: Any) -> list[tuple[tuple[int, int], list[Any]]]:
        top = len(self.sizes) - 1
        while level < top:
            parent = index // self.width
            lo = parent * self.width
            hi = min(lo + self.width, self.sizes[level])
            if hi - lo == 1:  # alone in its group: moves up as is
                level, index = level + 1, parent
                continue
            if (level, index) in self._held:
                raise ValueError(f"merge tree: node {(level, index)} delivered twice")
            self._held[(level, index)] = value
            key = (level + 1, parent)
            self._count[key] = self._count.get(key, 0) + 1
            self.held_max = max(self.held_max, len(self._held))
            if self._count[key] < hi - lo:
                return []
            del self._count[key]
            return [(key, [self._held.pop((level, j)) for j in range(lo, hi)])]
        self.root, self.done = value, True
        return []


class FoldTree:
    """:class:`MergeTree`'s groups and order, merged here as results arrive: each group folds its in-order
    prefix at once (``accumulate``'s own left fold: the same calls, so the same bytes) and keeps only
    the results that came early, so in-order arrival holds one partial result per tree level, not a
    whole group. ``prepare`` turns a chunk's payload into its result (e.g. decompress) when it is folded,
    so early payloads wait compressed. ``held``/``held_max``: partial results, at most one per tree level
    (only a level's oldest unfinished group folds); ``waiting``/``waiting_max``: results that came
    before their turn (bounded by how far ahead of the oldest unfinished chunk the executor lets work
    run)."""

    def __init__(self, n: int, width: int = DEFAULT_TREE_WIDTH, prepare: Callable[[Any], Any] | None = None):
        shape = MergeTree(n, width)
        self.width, self.sizes = shape.width, shape.sizes
        self.prepare = prepare or (lambda value: value)
        self._groups: dict[tuple[int, int], list] = {}  # (level, parent) -> [next index, Merger, {index: (value, raw)}]
        self.held = self.held_max = 0
        self.waiting = self.waiting_max = 0
        self._front = [0] * len(self.sizes)  # per level: the oldest group not merged yet
        self.root: Any = None
        self.done = False

    def put(self, level: int, index: int, value: Any, raw: bool | None = None) -> None:
        """``raw``: ``value`` is a payload to ``prepare`` (default: only chunk results, level 0, are)."""
        top = len(self.sizes) - 1
        todo = [(level, index, value, level == 0 if raw is None else raw)]
        while todo:
            level, index, value, raw = todo.pop()
            if level >= top:
                self.root, self.done = (self.prepare(value) if raw else value), True
                continue
            parent = index // self.width
            lo = parent * self.width
            if min(lo + self.width, self.sizes[level]) - lo == 1:  # alone in its group: moves up as is
                todo.append((level + 1, parent, value, raw))
                continue
            group = self._groups.setdefault((level, parent), [lo, Merger(), {}])
            if index < group[0] or index in group[2]:
                raise ValueError(f"merge tree: node {(level, index)} delivered twice")
            group[2][index] = (value, raw)
            self.waiting += 1
            todo.extend(self._fold(level))
            self.waiting_max = max(self.waiting_max, self.waiting)

    def _fold(self, level: int) -> list[tuple[int, int, Any, bool]]:
        """Fold what is in turn in the oldest unfinished group of ``level`` (only that one holds a partial
        result, so the groups of a level finish in order); completed groups go up a level."""
        up = []
        while True:
            parent = self._front[level]
            group = self._groups.get((level, parent))
            if group is None:
                return up
            lo = parent * self.width
            hi = min(lo + self.width, self.sizes[level])
            while group[0] in group[2]:
                value, raw = group[2].pop(group[0])
                self.waiting -= 1
                if group[0] == lo:
                    self.held += 1  # the group's partial result starts
                    self.held_max = max(self.held_max, self.held)
                group[1].add(self.prepare(value) if raw else value)
                group[0] += 1
            if group[0] < hi:
                return up
            del self._groups[(level, parent)]
            self.held -= 1
            self._front[level] += 1
            up.append((level + 1, parent, group[1].result, False))


def tree_accumulate(results: Iterable[Any], n: int, width: int = DEFAULT_TREE_WIDTH) -> Any:
    """Merge ``n`` results, given in chunk order, in :class:`MergeTree` order, here (Iterative, tests),
    folding as they come (:class:`FoldTree`)."""
    tree = FoldTree(n, width)
    for i, result in enumerate(results):
        tree.put(0, i, result)
    if not tree.done:
        raise ValueError(f"merge tree: expected {n} results")
    return tree.root


class _SharingUnpickler(pickle._Unpickler):
    """Unpickles with one object per distinct string, bytes and tuple value."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        self._seen: dict = {}

    def _share_top(self) -> None:
        value = self.stack[-1]
        try:
            self.stack[-1] = self._seen.setdefault((type(value), value), value)
        except TypeError:  # an unhashable tuple
            pass


def _sharing(load: Callable) -> Callable:
    def wrapped(self: _SharingUnpickler) -> None:
        load(self)
        self._share_top()

    return wrapped


for _op in (pickle.BINUNICODE, pickle.SHORT_BINUNICODE, pickle.BINUNICODE8, pickle.UNICODE, pickle.BINBYTES,
            pickle.SHORT_BINBYTES, pickle.BINBYTES8, pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3):
    _SharingUnpickler.dispatch[_op[0]] = _sharing(pickle._Unpickler.dispatch[_op[0]])


def canonical(obj: Any) -> Any:
    """A copy of a merged output in which equal strings, bytes and tuples are one object. ``pickle.dumps``
    writes a shared object once and distinct equal ones each time, so without this an output merged in
    this process (sharing the processor's constant strings) and one unpickled from workers pickle to
    different bytes; after it, every executor's output pickles to the same bytes."""
    try:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - not picklable (only possible in-process): left as it is
        return obj
    return _SharingUnpickler(data).load()


def canonical_result(result: Any) -> Any:
    """:func:`canonical` on the processor output of a merged chunk result (what executors return)."""
    if isinstance(result, dict) and "out" in result:
        result["out"] = canonical(result["out"])
    return result
