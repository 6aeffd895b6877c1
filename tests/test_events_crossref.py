"""NanoAOD cross-references against plain loops over the raw *Idx branches (v12 and v15 naming)."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import pytest
import uproot

from hpckit.events import CoffeaMethodMissing, NanoEventsFactory
from hpckit.events.crossref import GEN_FLAGS

DATA = Path(__file__).resolve().parent.parent / "data"
FILES = [DATA / "nano_tt_v15.root", DATA / "nano_tt_v12.root"]


_TREES: dict = {}


def _tree(path):
    if path not in _TREES:
        _TREES[path] = uproot.open(path)["Events"]
    return _TREES[path]


def raw(path, *branches):
    """Branches as Python lists, straight from uproot (each file opened once per test session)."""
    return [ak.to_list(_tree(path)[b].array(library="ak")) for b in branches]


def matched(idx_lists, target_lists):
    """The target value each local index points at, None for -1 (or beyond the event's targets), event by event."""
    return [[None if i < 0 or i >= len(tgt) else tgt[i] for i in row] for row, tgt in zip(idx_lists, target_lists)]


@pytest.mark.parametrize("path", [*FILES, DATA / "nano_dy.root"], ids=lambda p: p.stem)
@pytest.mark.parametrize("source,prop,idx,target,field", [
    ("Muon", "matched_jet", "Muon_jetIdx", "Jet", "pt"),
    ("Electron", "matched_jet", "Electron_jetIdx", "Jet", "pt"),
    ("Muon", "matched_gen", "Muon_genPartIdx", "GenPart", "pdgId"),
    ("Electron", "matched_gen", "Electron_genPartIdx", "GenPart", "pdgId"),
    ("Jet", "matched_gen", "Jet_genJetIdx", "GenJet", "pt"),
    ("FatJet", "matched_gen", "FatJet_genJetAK8Idx", "GenJetAK8", "pt"),
    ("GenPart", "parent", "GenPart_genPartIdxMother", "GenPart", "pdgId"),
])
def test_single_references(path, source, prop, idx, target, field):
    events = NanoEventsFactory.from_root(path).events()
    if idx not in _tree(path).keys():  # the file lacks the index branch: the reference says so by name
        with pytest.raises(CoffeaMethodMissing, match=prop):
            getattr(getattr(events, source), prop)
        return
    local, values = raw(path, idx, f"{target}_{field}")
    got = ak.to_list(getattr(getattr(events, source), prop)[field])
    assert got == matched(local, values)
    assert any(x is not None for row in got for x in row)


def test_index_beyond_the_event_is_none():
    """nano_dy.root event 17: Jet_genJetIdx = [0, -1, -1, 1, -1] with nGenJet = 1: the 1 points at nothing."""
    events = NanoEventsFactory.from_root(DATA / "nano_dy.root").events()
    assert _tree(DATA / "nano_dy.root")["nGenJet"].array()[17] == 1
    assert ak.to_list(events.Jet[17].matched_gen.pt)[3] is None


def test_matched_jet_pt_reads_only_its_four_columns():
    factory = NanoEventsFactory.from_root(FILES[0])
    pt = factory.events().Muon.matched_jet.pt
    ak.to_list(pt)
    assert factory.columns == {"Muon_jetIdx", "nMuon", "Jet_pt", "nJet"}


def test_references_survive_slicing():
    events = NanoEventsFactory.from_root(FILES[0]).events()
    local, jet_pt, mu_pt = raw(FILES[0], "Muon_jetIdx", "Jet_pt", "Muon_pt")
    keep = [i for i, row in enumerate(mu_pt) if len(row) >= 2]
    got = ak.to_list(events[ak.num(events.Muon) >= 2].Muon[:, 1:].matched_jet.pt)
    assert got == [matched([local[i][1:]], [jet_pt[i]])[0] for i in keep]
    one = events.Muon[keep[0], 0].matched_jet  # a single record's reference
    assert (one is None) == (local[keep[0]][0] < 0)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
@pytest.mark.parametrize("prop,target,idx", [("matched_muons", "Muon", "Jet_muonIdx"),
                                             ("matched_electrons", "Electron", "Jet_electronIdx")])
def test_jet_lepton_lists(path, prop, target, idx):
    events = NanoEventsFactory.from_root(path).events()
    i1, i2, pt = raw(path, idx + "1", idx + "2", f"{target}_pt")
    expect = [[[None if i < 0 else p[i] for i in pair] for pair in zip(a, b)] for a, b, p in zip(i1, i2, pt)]
    assert ak.to_list(getattr(events.Jet, prop).pt) == expect


def test_fatjet_subjets_photon_electron_links():
    path = FILES[0]
    events = NanoEventsFactory.from_root(path).events()
    i1, i2, pt = raw(path, "FatJet_subJetIdx1", "FatJet_subJetIdx2", "SubJet_pt")
    assert ak.to_list(events.FatJet.subjets.pt) == [[[None if i < 0 else p[i] for i in pair] for pair in zip(a, b)]
                                                    for a, b, p in zip(i1, i2, pt)]
    for src, prop, idx, tgt in [("Photon", "matched_electron", "Photon_electronIdx", "Electron"),
                                ("Electron", "matched_photon", "Electron_photonIdx", "Photon"),
                                ("Tau", "matched_jet", "Tau_jetIdx", "Jet"),
                                ("FsrPhoton", "matched_muon", "FsrPhoton_muonIdx", "Muon")]:
        local, values = raw(path, idx, f"{tgt}_pt")
        assert ak.to_list(getattr(getattr(events, src), prop).pt) == matched(local, values), (src, prop)
    photons = events.Photon
    assert ak.all(ak.flatten(photons.mass) == 0) and ak.all(ak.flatten(events.Jet.charge) == 0)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_genpart_family(path):
    events = NanoEventsFactory.from_root(path).events()
    mothers, pdg, flags = raw(path, "GenPart_genPartIdxMother", "GenPart_pdgId", "GenPart_statusFlags")
    children, dparent, dchildren = [], [], []
    for mo, pd in zip(mothers, pdg):
        children.append([[pd[j] for j in range(i, len(mo)) if mo[j] == i] for i in range(len(mo))])
        dp = []
        for i in range(len(mo)):
            p = mo[i]
            while p >= 0 and pd[p] == pd[i]:
                p = mo[p]
            dp.append(p)
        dparent.append([None if p < 0 else pd[p] for p in dp])
        dchildren.append([[pd[j] for j in range(i, len(mo)) if dp[j] == i] for i in range(len(mo))])
    gen = events.GenPart
    assert ak.to_list(gen.children.pdgId) == children
    assert ak.to_list(gen.distinctParent.pdgId) == dparent
    assert ak.to_list(gen.distinctChildren.pdgId) == dchildren
    assert sum(len(c) for row in children for c in row) > 100
    bits = (1 << GEN_FLAGS.index("isPrompt")) | (1 << GEN_FLAGS.index("isLastCopy"))
    assert ak.to_list(gen.hasFlags("isPrompt", "isLastCopy")) == [[(f & bits) == bits for f in row] for row in flags]
    assert ak.to_list(gen.hasFlags(["isPrompt", "isLastCopy"])) == ak.to_list(gen.hasFlags("isPrompt", "isLastCopy"))


def test_missing_target_is_named():
    """nano_tt_v12.root has Electron_photonIdx but no Photon collection."""
    events = NanoEventsFactory.from_root(FILES[1]).events()
    with pytest.raises(CoffeaMethodMissing, match="matched_photon"):
        events.Electron.matched_photon


def test_jet_constituents_are_the_association_table_rows_of_that_jet():
    """coffea's Jet.constituents on PFNano: jet j's JetPFCands (and through .pf its PF candidates), checked
    against the table's own jetIdx and pFCandsIdx branches."""
    path = DATA / "pfnano.root"
    events = NanoEventsFactory.from_root({str(path): "Events"}).events()
    jets = events.Jet[:, 1:]  # a slice: the references are global, they survive it
    got = jets.constituents.pf.pt.tolist()
    jet_idx, pf_idx, pf_pt, njet = raw(path, "JetPFCands_jetIdx", "JetPFCands_pFCandsIdx", "PFCands_pt", "nJet")
    want = [[[pf_pt[e][k] for k, j in zip(pf_idx[e], jet_idx[e]) if j == jet] for jet in range(1, njet[e])]
            for e in range(len(njet))]
    assert got == want
    assert ak.all(ak.flatten(jets.constituents.jet.pt, axis=None)
                  == ak.flatten(ak.broadcast_arrays(jets.pt, jets.constituents.pt)[0], axis=None))


def test_constituents_without_the_branches_are_named():
    events = NanoEventsFactory.from_root({str(DATA / "pfnano.root"): "Events"}).events()
    with pytest.raises(CoffeaMethodMissing, match="FatJet.constituents"):
        events.FatJet.constituents  # noqa: B018 - this sample has no FatJet_nConstituents
