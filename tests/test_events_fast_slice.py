"""hpckit.events.fast_slice gives what awkward's own slicing gives (same values, same layout nodes, same
parameters, class and behaviour), raises awkward's own errors, and steps aside for every other slice."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from hpckit.events import NanoEventsFactory, fast_slice

V15 = Path(__file__).resolve().parent.parent / "data" / "nano_tt_v15.root"


def _slow(array, where):
    return ak.Array.__getitem__.__wrapped__(array, where)


@pytest.fixture(scope="module")
def ev():
    return NanoEventsFactory.from_root({str(V15): "Events"}, entry_stop=60).events()


def _same(fast, slow):
    assert type(fast) is type(slow)
    assert fast.behavior is slow.behavior
    assert dict(fast.attrs) == dict(slow.attrs)
    assert str(fast.type) == str(slow.type)
    assert type(fast.layout) is type(slow.layout)
    assert fast.layout.form.is_equal_to(slow.layout.form, all_parameters=True, form_key=False)
    assert fast.tolist() == slow.tolist()


def _arrays(ev):
    two = ev[ak.num(ev.Muon) >= 2]
    return {
        "muons": ev.Muon,  # list of records
        "pt": ev.Muon.pt,  # list of numbers
        "lead": two.Muon[:, :2],  # sliced list of records
        "jets": ev.Jet,
        "met": ev.PFMET.pt,  # flat numbers
        "metrec": ev.PFMET,  # flat records
    }


MASK_SEED = 7


def _wheres(n):
    rng = np.random.default_rng(MASK_SEED)
    mask = rng.random(n) > 0.4
    return {
        "[:, 0]": (slice(None), 0),
        "[:, 1]": (slice(None), np.int64(1)),
        "[:, -1]": (slice(None), -1),
        "[:, :2]": (slice(None), slice(None, 2)),
        "[:, 1:3]": (slice(None), slice(1, 3)),
        "[:, 2:]": (slice(None), slice(2, None)),
        "[:, 3:1]": (slice(None), slice(3, 1)),
        "[:, 0:100]": (slice(None), slice(0, 100)),
        "numpy mask": mask,
        "ak mask": ak.Array(mask),
        "numpy index": rng.integers(0, n, 25),
        "negative index": -rng.integers(1, n + 1, 10),
        "empty index": np.zeros(0, dtype=np.int64),
        "pt": "pt",
        "charge": "charge",
    }


@pytest.mark.parametrize("name", ["muons", "pt", "lead", "jets", "met", "metrec"])
def test_fast_slices_equal_awkwards_own(ev, name):
    array = _arrays(ev)[name]
    taken = 0
    for label, where in _wheres(len(array)).items():
        try:
            slow = _slow(array, where)
        except Exception as err:  # noqa: BLE001 - the fast path must fail alike (it steps aside)
            with pytest.raises(type(err)):
                array[where]
            continue
        fast = fast_slice._fast(array, where)
        if fast is not None:
            taken += 1
            _same(fast, slow)
        _same(array[where], slow)
    assert taken >= 3, "these shapes should take the fast path"


def test_chains_of_fast_slices_equal_awkwards_own(ev):
    """The dimuon processor's slices, one after the other, and the same on awkward's path alone."""
    two = ev[ak.num(ev.Muon) >= 2]
    lead = two.Muon[:, :2]
    opp = lead[:, 0].charge != lead[:, 1].charge
    pairs = lead[opp]
    mass = (pairs[:, 0] + pairs[:, 1]).mass
    slow_lead = _slow(_slow(ev.Muon, ak.to_numpy(ak.num(ev.Muon) >= 2)), (slice(None), slice(None, 2)))
    slow_opp = _slow(_slow(slow_lead, (slice(None), 0)), "charge") != _slow(_slow(slow_lead, (slice(None), 1)), "charge")
    slow_pairs = _slow(slow_lead, slow_opp)
    assert opp.tolist() == slow_opp.tolist()
    assert mass.tolist() == pytest.approx((_slow(slow_pairs, (slice(None), 0)) + _slow(slow_pairs, (slice(None), 1))).mass.tolist())
    assert len(mass) > 0
    # the cross-references still find their targets through fast slices
    assert ak.flatten(lead.matched_jet.pt, axis=None).tolist() == \
        ak.flatten(_slow(two.Muon, (slice(None), slice(None, 2))).matched_jet.pt, axis=None).tolist()


def test_out_of_range_and_other_slices_are_awkwards(ev):
    muons = ev.Muon
    with pytest.raises(IndexError):
        muons[:, 5]  # some events have fewer muons: awkward's error, naming the entry
    with pytest.raises(IndexError):
        muons[np.array([0, len(muons)])]
    for where in [(slice(None), slice(-2, None)), (slice(None), slice(None, None, 2)), (0, 0), 3, slice(1, 5),
                  (slice(None), "pt"), np.array([[True]]), np.array([0.5])]:
        assert fast_slice._fast(muons, where) is None, where
    plain = ak.Array([[1, 2], [3]])  # not hpckit's: awkward's path untouched
    assert plain[:, 0].tolist() == [1, 3]
    named = ak.with_named_axis(muons.pt, ("events", "muons"))
    assert fast_slice._fast(named, (slice(None), 0)) is None


@pytest.mark.parametrize("name", ["muons", "pt", "lead", "jets", "met", "metrec"])
def test_num_equals_awkwards_own(ev, name):
    """``ak.num`` through the collections' hook; every other call and function is awkward's own."""
    from hpckit.events import fast_num

    array = _arrays(ev)[name]
    for args, kwargs in [((array,), {}), ((array, 1), {}), ((array,), {"axis": 1}), ((array, 0), {}),
                         ((array,), {"axis": -1}), ((array,), {"axis": 1, "highlevel": False})]:
        try:
            slow = fast_num._awkwards_own(ak.num, args, kwargs)
        except Exception as err:  # noqa: BLE001 - the hook must fail alike
            with pytest.raises(type(err)):
                ak.num(*args, **kwargs)
            continue
        got = ak.num(*args, **kwargs)
        if isinstance(slow, ak.Array):
            _same(got, slow)
        else:
            assert got == slow if not isinstance(slow, ak.contents.Content) else got.to_list() == slow.to_list()
    lists = type(array._layout) in (ak.contents.ListOffsetArray, ak.contents.ListArray)
    assert (fast_num.fast_num((array,), {}) is not None) == lists
    # other functions on the collections are awkward's, through the same hook
    assert ak.sum(ak.num(ev.Muon)) == sum(len(m) for m in ev.Muon.pt.tolist())
    assert ak.flatten(ev.Muon.pt).tolist() == [x for m in ev.Muon.pt.tolist() for x in m]
