"""Merge rules users rely on."""

from __future__ import annotations

from collections import defaultdict

import hist
import numpy as np
import pytest

from hpckit.processor import (
    accumulate,
    column_accumulator,
    defaultdict_accumulator,
    dict_accumulator,
    list_accumulator,
    set_accumulator,
    value_accumulator,
)


def test_numbers_dicts_sets_lists():
    a = {"n": 1, "x": 1.5, "s": {1}, "l": [1], "d": {"k": 1}}
    b = {"n": 2, "x": 0.5, "s": {2}, "l": [2], "d": {"k": 2, "j": 5}}
    out = accumulate([a, b])
    assert out == {"n": 3, "x": 2.0, "s": {1, 2}, "l": [1, 2], "d": {"k": 3, "j": 5}}
    assert a == {"n": 1, "x": 1.5, "s": {1}, "l": [1], "d": {"k": 1}}  # inputs untouched


def test_hist_adds_binwise():
    h1 = hist.Hist.new.Reg(4, 0, 4, name="x").Double()
    h2 = h1.copy()
    h1.fill([0.5, 1.5])
    h2.fill([1.5, 3.5, 3.5])
    out = accumulate([{"h": h1}, {"h": h2}, None])
    np.testing.assert_array_equal(out["h"].values(), [1, 2, 0, 2])
    np.testing.assert_array_equal(h1.values(), [1, 1, 0, 0])


def test_legacy_accumulators():
    out = accumulate([
        dict_accumulator({"v": value_accumulator(int, 2), "l": list_accumulator([1]), "s": set_accumulator({"a"})}),
        dict_accumulator({"v": value_accumulator(int, 3), "l": list_accumulator([2]), "s": set_accumulator({"b"})}),
    ])
    assert out["v"].value == 5 and out["l"] == [1, 2] and out["s"] == {"a", "b"}
    d = accumulate([defaultdict_accumulator(int, {"x": 1}), defaultdict_accumulator(int, {"x": 2, "y": 3})])
    assert dict(d) == {"x": 3, "y": 3}
    c = accumulate([column_accumulator(np.arange(3)), column_accumulator(np.arange(2))])
    np.testing.assert_array_equal(c.value, [0, 1, 2, 0, 1])
    s = set_accumulator({1})
    s.add(2)  # a non-set is inserted, as coffea does
    assert s == {1, 2}


def test_defaultdict_and_mapping_types():
    a = defaultdict(int, {"a": 1})
    out = accumulate([a, {"a": 1, "b": 2}])
    assert out == {"a": 2, "b": 2}


@pytest.mark.parametrize("a, b, names", [(1, "x", "(int, str)"), ({1}, [1], "(set, list)"), ({"k": 1}, 3, "(dict, int)")])
def test_incompatible_pairs_raise_naming_both(a, b, names):
    with pytest.raises(ValueError) as info:
        accumulate([a, b])
    assert names in str(info.value)


def test_incompatible_hists_raise():
    h1 = hist.Hist.new.Reg(4, 0, 4).Double()
    h2 = hist.Hist.new.Reg(5, 0, 4).Double()
    with pytest.raises(ValueError, match="Hist, Hist"):
        accumulate([h1, h2])
