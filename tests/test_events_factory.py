"""coffea's NanoEventsFactory spellings on real files: a closed file is never reused, eager mode, access_log,
from_parquet, pickling, the event-ID check, and coffea's record names after arithmetic and the behaviour
mapping staying small (checked against plain uproot/awkward/numpy where there are numbers)."""

from __future__ import annotations

import pickle
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hpckit.events import NanoAODSchema, NanoEventsFactory

DATA = Path(__file__).resolve().parent.parent / "data"
DY = DATA / "nano_dy.root"


def _muon_counts(path: Path) -> np.ndarray:
    with uproot.open(path) as f:
        return f["Events"]["nMuon"].array(library="np")


def test_closed_handle_is_not_reused():
    """A user closing the factory's file (coffea's file_handle) must not break later readers of that file:
    on main the next from_root got the cached, closed memmap ("memmap is closed")."""
    first = NanoEventsFactory.from_root(f"{DY}:Events")
    old_events = first.events()
    first.file_handle.close()
    again = NanoEventsFactory.from_root(f"{DY}:Events").events()
    expect = _muon_counts(DY)
    np.testing.assert_array_equal(ak.to_numpy(ak.num(again.Muon.pt)), expect)
    # events made before the close read through a reopened handle too
    np.testing.assert_array_equal(ak.to_numpy(ak.num(old_events.Muon.eta)), expect)


def test_closed_by_with_block_then_runner(tmp_path):
    """``with uproot.open(f)``-style closing of the handle between two Runner runs of the same file."""
    from hpckit import processor

    class Count(processor.ProcessorABC):
        def process(self, events):
            return {"muons": int(ak.sum(ak.num(events.Muon.pt)))}

        def postprocess(self, accumulator):
            return accumulator

    runner = processor.Runner(executor=processor.IterativeExecutor(status=False), schema=NanoAODSchema)
    fileset = {"dy": {"files": {str(DY): "Events"}}}
    first = runner(fileset, processor_instance=Count())
    factory = NanoEventsFactory.from_root(f"{DY}:Events")  # the same cached handle the runner used
    with factory.file_handle:
        pass
    second = runner(fileset, processor_instance=Count())
    assert first["muons"] == second["muons"] == int(_muon_counts(DY).sum())


def test_eager_mode_reads_everything_and_logs_it():
    log: list = []
    events = NanoEventsFactory.from_root({str(DY): "Events"}, mode="eager", access_log=log).events()
    assert events.layout.is_all_materialized
    with uproot.open(DY) as f:
        assert {entry.branch for entry in log} <= set(f["Events"].keys())
        assert len(log) > 1000


def test_virtual_mode_logs_only_what_is_touched():
    log: list = []
    factory = NanoEventsFactory.from_root(f"{DY}:Events", access_log=log)
    events = factory.events()
    assert not events.layout.is_any_materialized and log == []
    ak.materialize(events.Muon.pt)
    assert {entry.branch for entry in log} == {"nMuon", "Muon_pt"}
    assert factory.access_log is log
    assert NanoEventsFactory.from_root(f"{DY}:Events").access_log is None


def test_from_parquet_matches_root():
    root = NanoEventsFactory.from_root(f"{DY}:Events").events()
    parquet = NanoEventsFactory.from_parquet(DATA / "nano_dy.parquet", mode="eager").events()
    assert ak.all(parquet.Muon.pt == root.Muon.pt)
    assert ak.all(parquet.Jet.matched_muons.pt == root.Jet.matched_muons.pt)


@pytest.mark.parametrize("mode", ["eager", "virtual"])
def test_factory_pickles_with_its_mode(mode):
    factory = pickle.loads(pickle.dumps(NanoEventsFactory.from_root(f"{DY}:Events", mode=mode)))
    assert factory._mode == mode
    np.testing.assert_array_equal(ak.to_numpy(ak.num(factory.events().Muon.pt)), _muon_counts(DY))


def test_missing_event_ids(tmp_path, monkeypatch):
    with uproot.open(DY) as f:
        arrays = f["Events"].arrays(["run", "event", "nMuon", "Muon_pt"], library="np")
    path = tmp_path / "no_lumi.root"
    with uproot.recreate(path) as out:
        out["Events"] = {"run": arrays["run"], "event": arrays["event"],
                         "Muon": ak.zip({"pt": ak.Array(list(arrays["Muon_pt"]))})}
    with pytest.raises(RuntimeError, match="luminosityBlock"):
        NanoEventsFactory.from_root(f"{path}:Events")
    monkeypatch.setattr(NanoAODSchema, "error_missing_event_ids", False)
    with pytest.warns(RuntimeWarning, match=r"Missing event_ids \: \['luminosityBlock'\]"):
        NanoEventsFactory.from_root(f"{path}:Events")


def test_sum_and_difference_have_coffeas_names():
    """Muon + Muon is coffea's Candidate (x, y, z, t, charge), a difference a LorentzVector; masses as
    numpy computes them from the branches."""
    events = NanoEventsFactory.from_root(f"{DY}:Events").events()
    two = events[ak.num(events.Muon) >= 2].Muon
    total, diff = two[:, 0] + two[:, 1], two[:, 0] - two[:, 1]
    assert type(total).__name__ == "CandidateArray" and total.fields == ["x", "y", "z", "t", "charge"]
    assert type(diff).__name__ == "LorentzVectorArray" and diff.fields == ["x", "y", "z", "t"]
    with uproot.open(DY) as f:
        raw = f["Events"].arrays(["Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge"])
    raw = raw[ak.num(raw.Muon_pt) >= 2]
    pt, eta, phi, m = (ak.to_numpy(raw[f"Muon_{v}"][:, :2]).astype(np.float64) for v in ("pt", "eta", "phi", "mass"))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    e = np.sqrt(px**2 + py**2 + pz**2 + m**2)
    mass = np.sqrt(np.maximum(e.sum(1) ** 2 - px.sum(1) ** 2 - py.sum(1) ** 2 - pz.sum(1) ** 2, 0))
    np.testing.assert_allclose(ak.to_numpy(total.mass), mass, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(ak.to_numpy(total.charge), ak.to_numpy(raw.Muon_charge[:, 0] + raw.Muon_charge[:, 1]))
    chained = (total + two[:, 0]).mass  # a sum of a sum still adds
    assert len(chained) == len(total)


def test_behaviour_mapping_does_not_grow_with_pairs_of_names():
    """Binary operations of two record names are made on first use: the mapping of a 2,656-branch file
    stays about the size of vector's own, and awkward does not copy it for ``a + b`` of one file."""
    events = NanoEventsFactory.from_root(f"{DATA / 'nano_tt_v15.root'}:Events").events()
    behavior = events.Muon.behavior
    names = sum(1 for k in behavior if isinstance(k, str))
    assert names > 40  # one per collection and coffea name
    assert len(behavior) < 60 * names  # pairs stored would be ~6 per pair of names: > 16,000
    mu, el = events.Muon, events.Electron
    pairs = ak.cartesian([mu, el])
    total = pairs["0"] + pairs["1"]
    assert total.behavior is behavior  # not a copy
    assert ak.all(total.charge == pairs["0"].charge + pairs["1"].charge)


def test_pfnano_associations_match_the_index_branches():
    """coffea's PFNano references (JetPFCands.jet/.pf, JetSVs.jet/.sv) against the index branches read
    with uproot."""
    from hpckit.events import PFNanoAODSchema

    path = DATA / "pfnano.root"
    events = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="eager").events()
    with uproot.open(path) as f:
        raw = f["Events"].arrays(["JetPFCands_pFCandsIdx", "PFCands_pt", "JetSVs_sVIdx", "SV_pt",
                                  "JetPFCands_jetIdx", "Jet_pt"])
    assert ak.sum(ak.num(raw.JetPFCands_pFCandsIdx)) > 100
    assert ak.all(events.JetPFCands.pf.pt == raw.PFCands_pt[raw.JetPFCands_pFCandsIdx])
    assert ak.all(events.JetPFCands.jet.pt == raw.Jet_pt[raw.JetPFCands_jetIdx])
    assert ak.all(events.JetSVs.sv.pt == raw.SV_pt[raw.JetSVs_sVIdx])
    written = PFNanoAODSchema.uproot_writeable(events)
    assert "JetPFCands" in written and not any(f.endswith("IdxG") for f in written["JetPFCands"].fields)


def test_scouting_collections_and_round_trip(tmp_path):
    from hpckit.events import ScoutingNanoAODSchema

    path = DATA / "scouting_nano.root"
    events = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=ScoutingNanoAODSchema, mode="eager").events()
    with uproot.open(path) as f:
        pt = f["Events"]["ScoutingJet_pt"].array()
    assert ak.all(events.ScoutingJet.pt == pt) and ak.all(events.ScoutingJet.charge == 0)
    out = tmp_path / "scouting.root"
    with uproot.recreate(out) as f:
        f.mktree("Events", ScoutingNanoAODSchema.uproot_writeable(events))
    back = NanoEventsFactory.from_root({str(out): "Events"}, schemaclass=ScoutingNanoAODSchema, mode="eager").events()
    assert ak.all(back.ScoutingFatJet.pt == events.ScoutingFatJet.pt)


def test_distinct_children_deep_as_coffea():
    """The first event's chain heads, as coffea 2026.9.0 gives them on this file (and its warning)."""
    events = NanoEventsFactory.from_root(f"{DY}:Events").events()
    with pytest.warns(UserWarning, match="distinctChildrenDeep may not give correct answers"):
        deep = events.GenPart.distinctChildrenDeep
    assert deep.pdgId[0][:6].tolist() == [[], [], [-15, 15], [21] * 7, [], []]
    assert int(ak.sum(ak.num(deep, axis=2))) == 453


def test_vector_results_keep_coffeas_names():
    """-a, a * 2, a.unit() of coffea's TwoVector stay TwoVectors (vector alone names them Momentum2D), and
    coffea's r / r2 / pvec are there; values against numpy."""
    from hpckit.events.methods import vector

    x, y = [[1.0, 2.0], [], [3.0]], [[5.0, 6.0], [], [7.0]]
    a = ak.zip({"x": x, "y": y}, with_name="TwoVector", behavior=vector.behavior)
    for result in (-a, a * 2, a / 2, a.unit(), a + a):
        assert isinstance(result, vector.TwoVector)
        assert result.layout.purelist_parameter("__record__") == "TwoVector"
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(a.r)), np.hypot([1, 2, 3], [5, 6, 7]))
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(a.unit().r)), 1.0)
    lv = ak.zip({"x": [1.0], "y": [2.0], "z": [3.0], "t": [10.0]}, with_name="LorentzVector", behavior=vector.behavior)
    assert type(lv.pvec).__name__ == "ThreeVectorArray"
    np.testing.assert_allclose(ak.to_numpy(lv.pvec.r), np.sqrt(14.0))


def test_parquet_written_by_awkward_and_pyarrow(tmp_path):
    """Columns under awkward's Arrow extension type, and pyarrow's nullable int32-offset lists, read as
    the branches they hold (before: no branch found / an offsets dtype error)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hpckit.events import BaseSchema

    raw = ak.from_parquet(DATA / "nano_dy.parquet")
    ext = tmp_path / "ext.parquet"
    ak.to_parquet(raw, ext, extensionarray=True)
    events = NanoEventsFactory.from_parquet(ext, entry_start=5, entry_stop=15).events()
    assert ak.to_list(events.Muon.pt) == ak.to_list(raw.Muon_pt[5:15])
    jagged = [[float(i)] * (i % 3) for i in range(40)]
    plain = tmp_path / "int32.parquet"
    pq.write_table(pa.table({"jag": pa.array(jagged, type=pa.list_(pa.float32()))}), plain)
    sub = NanoEventsFactory.from_parquet(plain, schemaclass=BaseSchema, entry_start=5, entry_stop=15).events()
    assert ak.to_list(sub.jag) == jagged[5:15]


def test_a_chunks_events_are_freed_when_process_returns():
    """Each chunk's events (layouts, buffers) must be freed as soon as ``process`` is done, not when the cyclic
    garbage collector next runs: on main the cross-reference link in the arrays' attrs made a cycle, so every
    chunk's arrays waited for a collection (memory held across chunks, and ~1,000 objects a chunk for the
    collector to find on NanoAOD v15). Checked with the collector off: only reference counting frees anything."""
    import gc
    import weakref

    from hpckit import processor

    seen: list = []

    class Keep(processor.ProcessorABC):
        def process(self, events):
            muons = events.Muon
            seen.append(weakref.ref(events))
            seen.append(weakref.ref(events.__dict__["_source"]))
            pairs = muons[ak.num(muons) >= 2][:, :2]
            _ = (pairs[:, 0] + pairs[:, 1]).mass, muons.matched_jet.pt  # vectors and a cross-reference
            return {"n": len(events)}

        def postprocess(self, accumulator):
            return accumulator

    runner = processor.Runner(executor=processor.IterativeExecutor(status=False), schema=NanoAODSchema, chunksize=10)
    gc.collect()
    gc.disable()
    try:
        out = runner({"dy": {"files": {str(DY): "Events"}}}, processor_instance=Keep())
        alive = [ref for ref in seen if ref() is not None]
    finally:
        gc.enable()
    assert out["n"] == len(_muon_counts(DY))
    assert len(seen) >= 8  # several chunks, each with its events and its source
    assert alive == [], f"{len(alive)} of {len(seen)} chunk objects outlived their chunk"
