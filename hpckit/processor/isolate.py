"""Every chunk runs on its own copy of the processor, so no chunk's output can be counted twice.

coffea unpickles a fresh processor for every chunk, so the old tutorial pattern of filling
``self.output`` (made in ``__init__``) inside ``process()`` and returning it gives the right totals there.
Running every chunk on one long-lived instance would return the same, ever-growing object each time and
the merge would add it again and again (a 4-chunk file counted 160 events for 40). :class:`ProcessorCopies`
takes the processor's state once, as it is when the run starts, and hands out an isolated copy per chunk:

* fast path: a processor whose state holds only immutable values (numbers, strings, tuples, classes,
  functions; e.g. none at all) is copied by making a new instance around a copy of its ``__dict__``
  (a few microseconds); rebinding an attribute in ``process()`` touches only that chunk's copy;
* otherwise the state is pickled once and unpickled per chunk (the cost coffea pays, without
  rebuilding the class);
* anything else (a custom ``__reduce__``) is copied through its pickled bytes;
* a plain function (``processor_instance=lambda events: ...``) has no instance state: it is used as it is.

A shared accumulator that no copy can isolate (a class attribute or a module global that ``process()``
fills and returns) is caught by :func:`check_not_shared`: the chunk fails with an error naming the
processor and the fix, instead of being merged several times.
"""

from __future__ import annotations

import copyreg
import enum
import functools
import pickle
import types
from collections.abc import Mapping, MutableSet
from typing import Any

import cloudpickle
import numpy as np

from hpckit.core.errors import ProcessorError

_IMMUTABLE = (
    type(None), bool, int, float, complex, str, bytes, range, type, types.FunctionType,
    types.BuiltinFunctionType, types.ModuleType, enum.Enum, np.generic, np.dtype, type(Ellipsis),
)
_FIX = "return a new accumulator from process() (build it inside process(), not in __init__ or at module level)"


def is_immutable(value: Any, depth: int = 0) -> bool:
    """True for values no code can change in place: a processor holding only these needs no deep copy."""
    if isinstance(value, (tuple, frozenset)):
        return depth < 6 and all(is_immutable(v, depth + 1) for v in value)
    return isinstance(value, _IMMUTABLE)


def _set_state(obj: Any, state: Any) -> None:
    """What unpickling does with an object's state (``copy._reconstruct``'s rules)."""
    if state is None:
        return
    setstate = getattr(obj, "__setstate__", None)
    if setstate is not None:
        setstate(state)
        return
    slots = None
    if isinstance(state, tuple) and len(state) == 2:
        state, slots = state
    if state:
        obj.__dict__.update(state)
    for key, value in (slots or {}).items():
        setattr(obj, key, value)


class ProcessorCopies:
    """Fresh, isolated copies of one processor, as it was when this was made (see the module docstring)."""

    def __init__(self, processor: Any):
        name = getattr(processor.func if isinstance(processor, functools.partial) else processor, "__qualname__", None)
        self.call = f"{name}()" if name else f"{type(processor).__name__}.process()"  # for error messages
        self._new: Any = None
        self._state: Any = None  # fast path: the state itself (immutable values only)
        self._state_bytes: bytes | None = None  # state pickled once
        self._bytes: bytes | None = None  # the whole processor pickled once (fallback)
        self._function: Any = None  # a plain function: no state of its own to copy
        if isinstance(processor, (types.FunctionType, types.BuiltinFunctionType, functools.partial)):
            self._function = processor
            self._persistent = _persistent_objects(processor)
            return
        rv = _reduce(processor)
        if rv is None:
            self._bytes = cloudpickle.dumps(processor, protocol=pickle.HIGHEST_PROTOCOL)
            self._persistent = _persistent_objects(processor)
            return
        cls, args, state = rv
        self._new = (cls, args)
        if _state_is_immutable(state):
            self._state = _copy_state(state)
        else:
            try:
                self._state_bytes = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # noqa: BLE001 - lambdas, local classes: cloudpickle writes them, pickle reads them
                self._state_bytes = cloudpickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        self._persistent = _persistent_objects(processor)

    @property
    def cheap(self) -> bool:
        """Whether copies cost no unpickling (the processor holds no mutable state)."""
        return self._function is not None or (self._new is not None and self._state_bytes is None)

    def fresh(self) -> Any:
        if self._function is not None:
            return self._function
        if self._new is None:
            return pickle.loads(self._bytes)
        cls, args = self._new
        obj = cls.__new__(cls, *args)
        if self._state_bytes is not None:
            _set_state(obj, pickle.loads(self._state_bytes))
        else:
            _set_state(obj, _copy_state(self._state))
        return obj

    def check_not_shared(self, out: Any, where: str) -> None:
        """Fail when ``out`` holds a mutable object that outlives the chunk (a class attribute or a module
        global of the processor): every chunk would return it and it would be merged once per chunk."""
        if not self._persistent:
            return
        for path, obj in _mutable_parts(out):
            if id(obj) in self._persistent and not isinstance(obj, MutableSet):  # a union is idempotent
                raise ProcessorError(
                    f"{self.call} returned {path}, an object that lives on after the chunk "
                    f"({self._persistent[id(obj)][1]}): every chunk would add it to the total again; {_FIX}",
                    where,
                )


def _reduce(processor: Any) -> tuple[type, tuple, Any] | None:
    """``(class, extra __new__ args, state)`` for an ordinary instance; None when it pickles otherwise."""
    if isinstance(processor, (types.FunctionType, types.MethodType, type)):
        return None
    try:
        rv = processor.__reduce_ex__(pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001
        return None
    plain = isinstance(rv, tuple) and len(rv) >= 2 and rv[0] is copyreg.__newobj__
    if not plain or any(x is not None for x in rv[3:]):
        return None
    args = rv[1]
    if not args or not isinstance(args[0], type):
        return None
    return args[0], tuple(args[1:]), rv[2] if len(rv) > 2 else None


def _state_is_immutable(state: Any) -> bool:
    if state is None:
        return True
    if isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict) for s in state):
        return all(is_immutable(v) for part in state if part for v in part.values())
    return isinstance(state, dict) and all(is_immutable(v) for v in state.values())


def _copy_state(state: Any) -> Any:
    if isinstance(state, dict):
        return dict(state)
    if isinstance(state, tuple) and len(state) == 2:
        return tuple(dict(s) if isinstance(s, dict) else s for s in state)
    return state


def _is_mutable(value: Any) -> bool:
    return not is_immutable(value) and not isinstance(value, (types.MethodType, property, classmethod, staticmethod))


def _mutable_parts(value: Any, path: str = "the output", depth: int = 0) -> Any:
    """Mutable objects in an output: the value itself, and inside mappings and tuples (lists and sets are
    not walked: they may hold millions of numbers)."""
    if not _is_mutable(value):
        if isinstance(value, tuple) and depth < 6:
            for i, v in enumerate(value):
                yield from _mutable_parts(v, f"{path}[{i}]", depth + 1)
        return
    yield path, value
    if isinstance(value, Mapping) and depth < 6:
        for key, v in value.items():
            yield from _mutable_parts(v, f"{path}[{key!r}]", depth + 1)


def _persistent_objects(processor: Any) -> dict[int, tuple[Any, str]]:
    """Mutable objects reachable from the processor's class attributes and its module's globals (two levels
    deep), by id; the objects are kept so that an id cannot be reused while this lives."""
    owners: list[tuple[str, Mapping]] = []
    fn = processor.func if isinstance(processor, functools.partial) else processor
    fn = fn if isinstance(fn, types.FunctionType) else None
    if isinstance(processor, functools.partial):
        owners.append(("an argument of the partial", {f"arg{i}": a for i, a in enumerate(processor.args)}
                       | dict(processor.keywords)))
    if fn is not None:
        owners.append((f"a global of module {fn.__module__}", fn.__globals__))
        cells = {f"cell{i}": c.cell_contents for i, c in enumerate(fn.__closure__ or ()) if _cell_full(c)}
        owners.append((f"a variable {fn.__qualname__} closes over", cells))
    elif not isinstance(processor, (types.BuiltinFunctionType, functools.partial)):
        import sys

        for klass in type(processor).__mro__:
            if klass.__module__ in ("builtins", "abc") or klass.__module__.startswith("hpckit."):
                continue
            owners.append((f"class attribute of {klass.__qualname__}", vars(klass)))
            module = sys.modules.get(klass.__module__)
            if module is not None:
                owners.append((f"a global of module {klass.__module__}", vars(module)))
    found: dict[int, tuple[Any, str]] = {}
    for what, mapping in owners:
        for name, value in list(mapping.items()):
            if name.startswith("__") or name == "_abc_impl":  # Python's own bookkeeping
                continue
            for _, obj in _mutable_parts(value, "", 4):  # the value and two levels inside it
                if not isinstance(obj, types.ModuleType):
                    found.setdefault(id(obj), (obj, what))
    return found


def _cell_full(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True
