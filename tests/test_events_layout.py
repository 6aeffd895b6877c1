"""The per-chunk shortcuts of the events layer give exactly what awkward's own path gives.

hpckit builds a collection's virtual layout directly (hpckit.events.layout) instead of through
``ak.from_buffers``, and adds two flat arrays of 4-vectors on their columns (hpckit.events.lorentz) instead
of through awkward's broadcasting; both are only faster, so each is compared with the awkward path on the
bundled files: same form, same values, same branches read.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest

from hpckit.events import NanoAODSchema, layout
from hpckit.events.factory import _plan, make_events
from hpckit.events.reader import open_tree

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.mark.parametrize("name", ["nano_dy.root", "pfnano.root", "scouting_nano.root"])
def test_direct_layout_is_from_buffers_layout(name):
    tree = open_tree(str(DATA / name), "Events")
    form, _, _ = _plan(tree, NanoAODSchema)
    n = min(tree.num_entries, 30)
    events, _ = make_events(tree, 3, n, NanoAODSchema, {})  # one reader: each branch is read once
    container = events._source.container
    for field in form.fields:
        fast = layout.build(form.content(field), n - 3, container)
        assert fast is not None, field  # every form hpckit's schema makes takes the direct path
        slow = ak.from_buffers(form.content(field), n - 3, container, highlevel=False)
        assert fast.form == slow.form, field
        assert repr(ak.to_list(fast)) == repr(ak.to_list(slow)), field  # repr: NaN equals NaN


def test_direct_layout_reads_only_what_is_touched():
    tree = open_tree(str(DATA / "nano_tt_v15.root"), "Events")
    events, reader = make_events(tree, 0, 20, NanoAODSchema, {})
    muons = events.Muon
    assert reader.columns == set()
    assert ak.num(muons).tolist() == tree.tree["nMuon"].array(entry_stop=20, library="np").tolist()
    assert reader.columns == {"nMuon"}
    assert ak.flatten(muons.pt).tolist() == ak.flatten(tree.tree["Muon_pt"].array(entry_stop=20)).tolist()
    assert reader.columns == {"nMuon", "Muon_pt"}


@pytest.fixture(scope="module")
def v15():
    tree = open_tree(str(DATA / "nano_tt_v15.root"), "Events")
    return make_events(tree, 0, tree.num_entries, NanoAODSchema, {})[0]


def _first(collection):
    return collection[ak.num(collection) > 0][:, 0]


@pytest.mark.parametrize("left,right", [("Muon", "Muon"), ("Jet", "Muon"), ("Photon", "Electron"),
                                        ("Jet", "GenJet"), ("PuppiMET", "PuppiMET")])
def test_flat_sum_and_difference_as_awkward_computes_them(v15, left, right):
    a, b = _first(v15[left]) if v15[left].ndim > 1 else v15[left], _first(v15[right]) if v15[right].ndim > 1 else v15[right]
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    for operator, ufunc in ((lambda x, y: x + y, np.add), (lambda x, y: x - y, np.subtract)):
        direct, through_awkward = operator(a, b), ufunc(a, b)  # np.add goes through awkward's broadcasting
        assert str(direct.type) == str(through_awkward.type)
        assert ak.to_list(direct) == ak.to_list(through_awkward)
        assert type(direct) is type(through_awkward)


def test_sum_of_leading_muons_is_coffeas_candidate(v15):
    two = v15.Muon[ak.num(v15.Muon) >= 2]
    pair = two[:, 0] + two[:, 1]
    assert ak.parameters(pair)["__record__"] == "Candidate"
    mu0, mu1 = two[:, 0], two[:, 1]
    px = lambda m: ak.to_numpy(m.pt) * np.cos(ak.to_numpy(m.phi))
    np.testing.assert_allclose(ak.to_numpy(pair.x), px(mu0) + px(mu1), rtol=1e-6)
    assert ak.to_list(pair.charge) == ak.to_list(mu0.charge + mu1.charge)


@pytest.mark.parametrize("collection", ["Muon", "Jet"])
def test_list_sum_and_difference_as_awkward_computes_them(v15, collection):
    """Lists of pairs (``ak.combinations``) and lists sliced alike take the direct path too."""
    pairs = ak.combinations(v15[collection], 2)
    for a, b in ((pairs["0"], pairs["1"]), (v15[collection][:, :1], v15[collection][:, :1])):
        for operator, ufunc in ((lambda x, y: x + y, np.add), (lambda x, y: x - y, np.subtract)):
            direct, through_awkward = operator(a, b), ufunc(a, b)
            assert str(direct.type) == str(through_awkward.type)
            assert ak.to_list(direct) == ak.to_list(through_awkward)


def test_vectors_the_shortcut_cannot_take_still_add_under_coffeas_names():
    """Fields with missing values: awkward's path and vector's sum, named as coffea's (Candidate, LorentzVector)."""
    from hpckit.events.behavior import base_behavior

    kin = {"eta": [0.5, 0.1], "phi": [0.1, 0.2], "mass": [1.0, 2.0]}
    a = ak.zip({"pt": [10.0, None], **kin, "charge": [1, -1]}, with_name="PtEtaPhiMCandidate", behavior=base_behavior())
    b = ak.zip({"pt": [5.0, 3.0], **kin, "charge": [-1, -1]}, with_name="PtEtaPhiMCandidate", behavior=base_behavior())
    total, diff = a + b, a - b
    assert ak.parameters(total)["__record__"] == "Candidate" and ak.to_list(total.charge) == [0, -2]
    assert ak.parameters(diff)["__record__"] == "LorentzVector"
    assert ak.to_list(total.rho)[1] is None
    px = 10.0 * np.cos(0.1) + 5.0 * np.cos(0.1)
    assert abs(ak.to_list(total.x)[0] - px) < 1e-9
