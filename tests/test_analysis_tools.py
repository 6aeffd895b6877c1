"""hpckit.analysis_tools against plain numpy on the same selections and weights."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from hpckit.analysis_tools import PackedSelection, Weights
from hpckit.events import NanoEventsFactory

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture(scope="module")
def cuts():
    rng = np.random.default_rng(7)
    return {name: rng.random(1000) < p for name, p in [("a", 0.8), ("b", 0.5), ("c", 0.3), ("d", 0.9)]}


@pytest.fixture()
def sel(cuts):
    s = PackedSelection()
    s.add("a", cuts["a"])
    s.add_multiple({k: cuts[k] for k in "bcd"})
    return s


def test_require_all_any(sel, cuts):
    a, b, c, d = (cuts[k] for k in "abcd")
    assert sel.names == ["a", "b", "c", "d"]
    assert np.array_equal(sel.all("a", "c"), a & c)
    assert np.array_equal(sel.all(), a & b & c & d)
    assert np.array_equal(sel.require(a=True, b=False), a & ~b)
    assert np.array_equal(sel.any("b", "c"), b | c)
    assert np.array_equal(sel.allfalse("a", "d"), ~a & ~d)


def test_cutflow_and_nminusone(sel, cuts):
    a, b, c, d = (cuts[k] for k in "abcd")
    flow = sel.cutflow("a", "b", "c").result()
    assert flow.labels == ["initial", "a", "b", "c"]
    assert flow.nevonecut == [1000, a.sum(), b.sum(), c.sum()]
    assert flow.nevcutflow == [1000, a.sum(), (a & b).sum(), (a & b & c).sum()]
    assert np.array_equal(flow.maskscutflow[-1], a & b & c)
    n1 = sel.nminusone("a", "b", "c").result()
    assert n1.labels == ["initial", "N - a", "N - b", "N - c", "N"]
    assert n1.nev == [1000, (b & c).sum(), (a & c).sum(), (a & b).sum(), (a & b & c).sum()]
    h, labels = sel.nminusone("a", "b", "c").yieldhist()
    assert list(h.values()) == n1.nev and labels == n1.labels
    honecut, hflow, _ = sel.cutflow("a", "b", "c").yieldhist()
    assert list(hflow.values()) == flow.nevcutflow and list(honecut.values()) == flow.nevonecut


def test_weighted_cutflow_with_common_mask(sel, cuts):
    a, b, d = cuts["a"], cuts["b"], cuts["d"]
    w = Weights(1000)
    w.add("x", np.linspace(0.5, 1.5, 1000))
    res = sel.cutflow("a", "b", commonmask=d, weights=w).result()
    assert res.nevcutflow == [d.sum(), (a & d).sum(), (a & b & d).sum()]
    assert np.allclose(res.wgtevcutflow, [w.weight()[d].sum(), w.weight()[a & d].sum(), w.weight()[a & b & d].sum()])
    h, _, _ = sel.cutflow("a", "b", commonmask=d, weights=w).yieldhist()
    assert np.allclose(h.values(), res.wgtevonecut)


def test_selection_errors_and_option_input(cuts):
    s = PackedSelection("uint16")
    s.add("opt", ak.Array([True, None, False]), fill_value=True)
    assert s.all("opt").tolist() == [True, True, False]
    with pytest.raises(ValueError, match="already exists"):
        s.add("opt", np.ones(3, bool))
    with pytest.raises(ValueError, match="boolean"):
        s.add("ints", np.ones(3))
    with pytest.raises(ValueError, match="different shape"):
        s.add("short", np.ones(2, bool))
    for i in range(15):
        s.add(f"c{i}", np.ones(3, bool))
    with pytest.raises(RuntimeError, match="Exhausted"):
        s.add("one_too_many", np.ones(3, bool))
    with pytest.raises(ValueError, match="existing selections"):
        s.all("nope")


def test_weights_variations_and_partials():
    rng = np.random.default_rng(3)
    n = 500
    w1, w2, w3 = rng.uniform(0.5, 1.5, n), rng.uniform(0.8, 1.2, n), rng.uniform(0.9, 1.1, n)
    up1, down1, up2, delta3 = w1 * 1.1, w1 * 0.95, w2 * 1.05, rng.uniform(0, 0.1, n)
    w = Weights(n, storeIndividual=True)
    w.add("one", w1, weightUp=up1.copy(), weightDown=down1.copy())
    w.add("two", w2, weightUp=up2.copy())
    w.add("three", w3, weightUp=delta3.copy(), weightDown=delta3.copy(), shift=True)
    w.add_multivariation("four", np.ones(n), ["s1", "s2"], [np.full(n, 1.2), np.full(n, 1.3)], [np.full(n, 0.8), np.full(n, 0.7)])
    nominal = w1 * w2 * w3
    assert np.allclose(w.weight(), nominal)
    assert np.allclose(w.weight("oneUp"), up1 * w2 * w3)
    assert np.allclose(w.weight("oneDown"), down1 * w2 * w3)
    assert np.allclose(w.weight("twoDown"), nominal / (up2 / w2))  # no down given: 1 / up
    assert np.allclose(w.weight("threeUp"), w1 * w2 * (w3 + delta3))
    assert np.allclose(w.weight("threeDown"), w1 * w2 * (w3 - delta3))
    assert np.allclose(w.weight("four_s2Down"), nominal * 0.7)
    assert w.variations == {"oneUp", "oneDown", "twoUp", "twoDown", "threeUp", "threeDown",
                            "four_s1Up", "four_s1Down", "four_s2Up", "four_s2Down"}
    assert np.allclose(w.partial_weight(include=["one", "three"]), w1 * w3)
    assert np.allclose(w.partial_weight(exclude=["one"]), w2 * w3)
    assert np.allclose(w.partial_weight(include=["one"], modifier="oneUp"), up1)
    with pytest.raises(ValueError, match="not in the list"):
        w.partial_weight(include=["two"], modifier="oneUp")
    with pytest.raises(ValueError, match="exactly one"):
        w.partial_weight(include=["one"], exclude=["two"])
    stats = w.weightStatistics["one"]
    assert stats.n == n and np.isclose(stats.sumw, w1.sum()) and np.isclose(stats.sumw2, (w1**2).sum())
    assert stats.minw == w1.min() and stats.maxw == w1.max()
    with pytest.raises(ValueError, match="already exists"):
        w.add("one", w1)
    with pytest.raises(ValueError, match="Up"):
        w.add("fooUp", w1)
    with pytest.raises(ValueError, match="storeIndividual"):
        Weights(n).partial_weight(include=["one"])


def test_tools_on_real_events():
    """A selection and a weight built from NanoAOD events, as a processor does."""
    events = NanoEventsFactory.from_root(DATA / "nano_dy.root").events()
    sel = PackedSelection()
    sel.add("twomu", ak.num(events.Muon) >= 2)
    sel.add("lead20", ak.fill_none(ak.firsts(events.Muon.pt) > 20, False))
    w = Weights(len(events))
    w.add("gen", events.genWeight)
    expect = (ak.to_numpy(ak.num(events.Muon)) >= 2).sum()
    assert sel.cutflow("twomu", "lead20").result().nevonecut[1] == expect == 6
    assert np.allclose(w.weight()[sel.all()].sum(), ak.to_numpy(events.genWeight)[sel.all()].sum())
