"""coffea's candidate behaviours on hpckit's events, checked against numpy on the raw branches."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import vector

from hpckit.events import CoffeaMethodMissing, NanoEventsFactory
from hpckit.events.methods import candidate

DATA = Path(__file__).resolve().parent.parent / "data"
V15 = DATA / "nano_tt_v15.root"


@pytest.fixture(scope="module")
def events():
    return NanoEventsFactory.from_root(V15).events()


@pytest.fixture(scope="module")
def raw():
    with uproot.open(V15) as f:
        return f["Events"].arrays(
            [f"{c}_{v}" for c in ("Jet", "Muon", "Electron") for v in ("pt", "eta", "phi", "mass")]
            + ["Muon_charge", "Electron_charge"]
        )


def p4(raw, coll):
    """(px, py, pz, E) of a collection from its branches, plain numpy/awkward."""
    pt, eta, phi, m = (ak.values_astype(raw[f"{coll}_{v}"], np.float64) for v in ("pt", "eta", "phi", "mass"))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + m**2)


def inv_mass(*vectors):
    px, py, pz, e = (sum(v[i] for v in vectors) for i in range(4))
    return np.sqrt(np.maximum(e**2 - px**2 - py**2 - pz**2, 0))


def close(a, b, rtol=1e-3, atol=0.05):  # float32 inputs: sums of large energies lose ~1e-4 relative
    a, b = ak.flatten(a, axis=None), ak.flatten(b, axis=None)
    assert len(a) == len(b)
    assert np.allclose(ak.to_numpy(a), ak.to_numpy(b), rtol=rtol, atol=atol)


def test_trijet_mass_chained_sum(events, raw):
    tri = ak.combinations(events.Jet, 3, fields=["j1", "j2", "j3"])
    mass = ((tri.j1 + tri.j2) + tri.j3).mass
    px, py, pz, e = p4(raw, "Jet")
    idx = ak.argcombinations(raw["Jet_pt"], 3, fields=["a", "b", "c"])
    expect = inv_mass(*[(px[idx[k]], py[idx[k]], pz[idx[k]], e[idx[k]]) for k in "abc"])
    assert ak.sum(ak.num(mass)) > 1000
    close(mass, expect)


def test_sum_of_two_collections_adds_charge(events, raw):
    pairs = ak.cartesian([events.Muon, events.Electron])
    s = pairs["0"] + pairs["1"]
    idx = ak.argcartesian([raw["Muon_pt"], raw["Electron_pt"]])
    mu, el = p4(raw, "Muon"), p4(raw, "Electron")
    expect = inv_mass(tuple(c[idx["0"]] for c in mu), tuple(c[idx["1"]] for c in el))
    assert ak.sum(ak.num(s)) > 0
    close(s.mass, expect)
    assert ak.all(s.charge == raw["Muon_charge"][idx["0"]] + raw["Electron_charge"][idx["1"]])
    d = pairs["0"] - pairs["1"]
    close(d.pt, np.hypot(mu[0][idx["0"]] - el[0][idx["1"]], mu[1][idx["0"]] - el[1][idx["1"]]))


@pytest.mark.parametrize("name,fields", [
    ("PtEtaPhiMCandidate", ("pt", "eta", "phi", "mass")),
    ("PtEtaPhiMLorentzVector", ("pt", "eta", "phi", "mass")),
    ("Momentum4D", ("pt", "eta", "phi", "mass")),
    ("PtEtaPhiECandidate", ("pt", "eta", "phi", "energy")),
    ("LorentzVector", ("x", "y", "z", "t")),
    ("Candidate", ("x", "y", "z", "t")),
])
def test_zipped_coffea_records_add_to_collections(events, raw, name, fields):
    """ak.zip(..., with_name=<coffea or vector name>) records sum with a NanoAOD collection and with each other."""
    jets = events.Jet[ak.num(events.Jet) > 0][:, 0]
    px, py, pz, e = (c[ak.num(raw["Jet_pt"]) > 0][:, 0] for c in p4(raw, "Jet"))
    values = {"pt": jets.pt, "eta": jets.eta, "phi": jets.phi, "mass": jets.mass, "energy": e,
              "x": px, "y": py, "z": pz, "t": e}
    zipped = ak.zip({f: values[f] for f in fields} | ({"charge": ak.zeros_like(px)} if "Candidate" in name else {}),
                    with_name=name, behavior=candidate.behavior)
    close((zipped + jets).mass, 2 * jets.mass, atol=0.05)
    close((jets + zipped).pt, 2 * jets.pt, atol=0.05)
    close((zipped + zipped).mass, 2 * jets.mass, atol=0.05)
    assert "charge" in ak.fields(zipped + zipped) if "Candidate" in name else True


def test_vector_momentum4d_plus_collection(events):
    vector.register_awkward()
    mu = events.Muon[ak.num(events.Muon) > 0][:, 0]
    v = ak.zip({"pt": mu.pt, "eta": mu.eta, "phi": mu.phi, "mass": mu.mass}, with_name="Momentum4D")
    close((v + mu).pt, 2 * mu.pt)


def test_delta_r_phi_nearest_metric_table(events, raw):
    jets, muons = events.Jet, events.Muon
    table = jets.metric_table(muons)
    dphi = (raw["Jet_phi"][:, :, None] - raw["Muon_phi"][:, None, :] + np.pi) % (2 * np.pi) - np.pi
    deta = raw["Jet_eta"][:, :, None] - raw["Muon_eta"][:, None, :]
    close(table, np.hypot(deta, dphi))
    pairs = ak.cartesian([jets, muons])
    close(pairs["0"].delta_phi(pairs["1"]), ak.flatten(dphi, axis=2))
    close(pairs["0"].delta_r(pairs["1"]), ak.flatten(np.hypot(deta, dphi), axis=2))

    near, metric = jets.nearest(muons, return_metric=True)
    dr = ak.to_list(np.hypot(deta, dphi))
    mu_pt = ak.to_list(raw["Muon_pt"])
    expect_pt, expect_dr = [], []
    for ev_dr, ev_pt in zip(dr, mu_pt):
        best = [int(np.argmin(row)) if row else None for row in ev_dr]
        expect_pt.append([None if b is None else ev_pt[b] for b in best])
        expect_dr.append([None if b is None else row[b] for b, row in zip(best, ev_dr)])
    got_pt = ak.to_list(near.pt)
    assert [[x is None for x in r] for r in got_pt] == [[x is None for x in r] for r in expect_pt]
    assert np.allclose([x for r in got_pt for x in r if x is not None], [x for r in expect_pt for x in r if x is not None])
    assert np.allclose([x for r in ak.to_list(metric) for x in r if x is not None],
                       [x for r in expect_dr for x in r if x is not None], atol=1e-4)
    within = ak.to_list(jets.nearest(muons, threshold=0.4).pt)
    for got_row, pt_row, dr_row in zip(within, expect_pt, expect_dr):
        for g, p, d in zip(got_row, pt_row, dr_row):
            assert (g is None) == (p is None or d > 0.4)


def test_sum_along_axis(events, raw):
    total = events.Jet.sum(axis=1)
    close(total.mass, inv_mass(tuple(ak.sum(c, axis=1) for c in p4(raw, "Jet"))))
    assert ak.all(events.Muon.sum(axis=1).charge == ak.sum(raw["Muon_charge"], axis=1))


def test_coffea_only_method_names_itself(events):
    with pytest.raises(CoffeaMethodMissing, match=r"Jet\.constituents .*hpckit does not provide") as err:
        events.Jet.constituents
    assert isinstance(err.value, AttributeError)
    with pytest.raises(AttributeError, match="no field named 'not_a_thing'"):
        events.Jet.not_a_thing


def test_collections_pickle_with_their_behaviour(events):
    """Arrays of events cross process boundaries (executors): the behaviour pickles as its recipe."""
    import pickle

    muons = pickle.loads(pickle.dumps(events.Muon[ak.num(events.Muon) >= 2]))
    assert "@events" not in muons.attrs
    close((muons[:, 0] + muons[:, 1]).mass,
          (events.Muon[ak.num(events.Muon) >= 2][:, 0] + events.Muon[ak.num(events.Muon) >= 2][:, 1]).mass)


@pytest.mark.parametrize("name", ["nano_tt_v15.root", "nano_tt_v12.root", "nano_dy.root", "nano_dimuon.root"])
def test_every_field_builds(name):
    """SV has x, y, z and pt, eta, phi: vector refuses both spellings, so it is no Lorentz vector (as in coffea),
    and no field of the bundled files fails to build."""
    events = NanoEventsFactory.from_root(DATA / name).events()
    for field in events.fields:
        events[field]
    if "SV" in events.fields:
        with pytest.raises(CoffeaMethodMissing, match=r"SV\.p4"):
            events.SV.p4


def test_scalar_products_keep_coffeas_coordinates(events, raw):
    """coffea's polar Lorentz vectors times a scalar: k >= 0 keeps (pt, eta, phi, mass) with pt and mass
    scaled; a negative k gives a cartesian LorentzVector; (pt, eta, phi, energy) stays one, reversed for
    k < 0 (eta negated, phi moved by pi). Checked against the raw branches."""
    half = events.Muon * 0.5
    assert half.layout.content.parameter("__record__") == "PtEtaPhiMLorentzVector"
    assert ak.fields(half) == ["pt", "eta", "phi", "mass"]
    assert ak.all(half.pt == raw["Muon_pt"] * np.float32(0.5)) and ak.all(half.eta == raw["Muon_eta"])
    assert ak.all(half.mass == raw["Muon_mass"] * np.float32(0.5))
    assert ak.fields(events.Muon / 2) == ["pt", "eta", "phi", "mass"]
    flipped = -events.Muon
    assert ak.fields(flipped) == ["x", "y", "z", "t"]
    x = raw["Muon_pt"] * np.cos(raw["Muon_phi"])
    assert np.allclose(ak.flatten(flipped.x), -ak.flatten(x), rtol=1e-5)
    e = ak.zip({"pt": [[2.0]], "eta": [[0.5]], "phi": [[0.3]], "energy": [[5.0]]}, with_name="PtEtaPhiELorentzVector",
               behavior=candidate.behavior)
    back = e * -2
    assert ak.fields(back) == ["pt", "eta", "phi", "energy"]
    assert back.tolist() == [[{"pt": 4.0, "eta": -0.5, "phi": pytest.approx(0.3 - np.pi), "energy": -10.0}]]
