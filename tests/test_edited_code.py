"""Code edited between two runs in one Python session runs as edited, even when the edit keeps the file's
size and lands within the same second as the version before: a cached .pyc is checked by whole-second mtime
and size only, so it would pass for the old code. (Seen as a flaky interactive test once .pyc files were
written: the two versions were saved less than a second apart.)"""

from __future__ import annotations

import importlib.util
import os
import py_compile
import sys
import uuid

from hpckit.analysis import load_processor
from hpckit.launch.changes import forget_edited_modules

_PROC = """
from hpckit import processor

class P(processor.ProcessorABC):
    def process(self, events):
        return "{tag}"

    def postprocess(self, accumulator):
        return accumulator
"""


def _stamp(path, second_ns: int, tenths: int) -> None:
    os.utime(path, ns=(second_ns + tenths * 100_000_000,) * 2)


def _first_version(path, text: str) -> int:
    """Write ``path`` stamped 0.3 s into a whole second; returns that second (ns)."""
    path.write_text(text)
    ns = path.stat().st_mtime_ns
    second = ns - ns % 1_000_000_000
    _stamp(path, second, 3)
    return second


def _same_second_edit(path, text: str, second_ns: int) -> None:
    """Rewrite ``path`` with ``text`` (same size), stamped 0.6 s into the first version's second."""
    path.write_text(text)
    _stamp(path, second_ns, 6)


def test_analysis_file_edited_within_the_second_loads_the_new_code(tmp_path):
    path = tmp_path / "ana.py"
    second = _first_version(path, _PROC.format(tag="one"))
    py_compile.compile(str(path))  # a .pyc of the first version, as Python writes
    assert load_processor(path).process(None) == "one"
    _same_second_edit(path, _PROC.format(tag="two"), second)
    assert load_processor(path).process(None) == "two"


def test_helper_module_edited_within_the_second_is_imported_anew(tmp_path):
    name = f"helper_{uuid.uuid4().hex[:8]}"
    path = tmp_path / f"{name}.py"
    second = _first_version(path, 'MARK = "old"\n')
    sys.path.insert(0, str(tmp_path))
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = False  # the import caches its .pyc, as it does for a user by default
    try:
        assert importlib.import_module(name).MARK == "old"
        assert os.path.exists(importlib.util.cache_from_source(str(path)))
        forget_edited_modules()  # first seen: remembered, not dropped
        _same_second_edit(path, 'MARK = "new"\n', second)
        assert name in forget_edited_modules()
        assert importlib.import_module(name).MARK == "new"
    finally:
        sys.dont_write_bytecode = dont_write
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)
