"""Load a user's analysis file and find the processor in it."""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path
from typing import Any

import cloudpickle

from hpckit.core.errors import HpckitError, error_chain
from hpckit.processor.abc import ProcessorABC


class AnalysisError(HpckitError, ValueError):
    """The analysis file cannot be loaded or holds no usable processor."""


def load_processor(path: str | Path, class_name: str | None = None) -> Any:
    """Import ``path`` as a module and return an instance of its processor class.

    The module is registered to pickle by value, so a processor defined in a script that workers cannot
    import still reaches them.
    """
    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"analysis file not found: {path}")
    name = f"hpckit_analysis_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AnalysisError(f"cannot import {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        # from the source, never a cached .pyc: an edit within the same second that keeps the file's size
        # passes the .pyc's (whole-second mtime, size) check, and the old code would run
        exec(compile(path.read_bytes(), str(path), "exec", dont_inherit=True), module.__dict__)
    except Exception as err:
        del sys.modules[name]
        # a Ctrl-C inside an extension's import (numpy's) comes back as its ImportError raised over it
        if any(isinstance(e, KeyboardInterrupt) for e in error_chain(err)):
            raise KeyboardInterrupt from err
        raise AnalysisError(f"importing {path} failed: {type(err).__name__}: {err}") from err
    cloudpickle.register_pickle_by_value(module)

    candidates = {
        n: obj
        for n, obj in vars(module).items()
        if inspect.isclass(obj) and issubclass(obj, ProcessorABC) and obj is not ProcessorABC
        and obj.__module__ == name and not inspect.isabstract(obj)
    }
    if class_name is not None:
        obj = getattr(module, class_name, None)
        if obj is None:
            raise AnalysisError(f"{path} has no {class_name!r}; processors found: {sorted(candidates) or 'none'}")
        return obj() if inspect.isclass(obj) else obj
    if len(candidates) == 1:
        return next(iter(candidates.values()))()
    if not candidates:
        raise AnalysisError(f"{path} defines no ProcessorABC subclass; name one with --processor")
    raise AnalysisError(f"{path} defines several processors {sorted(candidates)}; choose one with --processor")

