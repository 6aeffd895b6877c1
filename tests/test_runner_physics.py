"""The dimuon example through every local executor and several chunk sizes, against plain uproot."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import awkward as ak
import hist
import pytest
from conftest import DATASETS, assert_matches_reference
from dimuon import DimuonProcessor

from hpckit import processor
from hpckit.events import BaseSchema, NanoAODSchema

EXECUTORS = {
    "iterative": lambda: processor.IterativeExecutor(status=False),
    "futures-process": lambda: processor.FuturesExecutor(workers=2, status=False),
    "futures-thread": lambda: processor.FuturesExecutor(workers=2, pool=ThreadPoolExecutor, status=False),
    "futures-merging": lambda: processor.FuturesExecutor(workers=2, merging=(2, 2, 4), status=False),
    "futures-raw": lambda: processor.FuturesExecutor(workers=2, compression=None, status=False),
}


@pytest.mark.parametrize("chunksize", [7, 40, 100_000])
@pytest.mark.parametrize("executor", sorted(EXECUTORS))
def test_dimuon_matches_uproot(executor, chunksize, fileset_path, reference):
    runner = processor.Runner(EXECUTORS[executor](), schema=NanoAODSchema, chunksize=chunksize)
    out = runner(str(fileset_path), processor_instance=DimuonProcessor())
    assert_matches_reference(out, reference)


def test_known_muon_counts(fileset_path):
    """The data README's numbers: nano_dy 40 events / 18 muons, nano_dimuon 40 events / 84 muons."""
    out = processor.Runner(processor.IterativeExecutor(status=False))(str(fileset_path), processor_instance=DimuonProcessor())
    assert out["cutflow"]["DYJetsToLL"]["muons"] == 18
    assert out["cutflow"]["DoubleMuon"]["muons"] == 84
    assert out["cutflow"]["DoubleMuon"]["all events"] == 40


class CoffeaStyle(processor.ProcessorABC):
    """Written as for coffea: metadata, a hist.Hist, counters, a set, a list."""

    def process(self, events):
        ds = events.metadata["dataset"]
        h = hist.Hist.new.Reg(10, 0, 100, name="pt").Double()
        h.fill(ak.flatten(events.Muon.pt))
        return {
            ds: {"pt": h, "nevents": len(events), "years": {events.metadata.get("year")}},
            "files": [events.metadata["filename"]],
            "ranges": {(events.metadata["entrystart"], events.metadata["entrystop"])},
        }

    def postprocess(self, accumulator):
        accumulator["postprocessed"] = True
        return accumulator


@pytest.mark.parametrize("form", ["list+treename", "files-dict", "files-list+treename-key", "json"])
def test_fileset_forms_and_metadata(form, fileset_path):
    dy = str(DATASETS["DYJetsToLL"])
    kwargs = {}
    if form == "list+treename":
        fileset, kwargs = {"DY": [dy]}, {"treename": "Events"}
    elif form == "files-dict":
        fileset = {"DY": {"files": {dy: "Events"}, "metadata": {"year": 2018}}}
    elif form == "files-list+treename-key":
        fileset = {"DY": {"files": [dy], "treename": "Events", "metadata": {"year": 2018}}}
    else:
        fileset = str(fileset_path)
    runner = processor.Runner(processor.IterativeExecutor(status=False), chunksize=15)
    out = runner(fileset, processor_instance=CoffeaStyle(), **kwargs)
    ds = "DYJetsToLL" if form == "json" else "DY"
    assert out[ds]["nevents"] == 40
    assert out[ds]["pt"].sum() == 18  # every muon of nano_dy has pt < 100
    assert out["postprocessed"] is True
    assert out["ranges"] >= {(0, 14), (14, 28), (28, 40)}
    assert out[ds]["years"] == ({None} if form == "list+treename" else {2018})


def test_plain_callable_processor(fileset_path):
    def count(events):
        return {events.metadata["dataset"]: len(events)}

    out = processor.Runner(processor.IterativeExecutor(status=False), chunksize=7)(str(fileset_path), processor_instance=count)
    assert out == {"DYJetsToLL": 40, "DoubleMuon": 40}


class PtOnly(processor.ProcessorABC):
    def process(self, events):
        return {"sumpt": float(ak.sum(events.Muon.pt))}


def test_only_touched_columns_are_read(fileset_path):
    runner = processor.Runner(processor.IterativeExecutor(status=False), savemetrics=True)
    out, metrics = runner(str(fileset_path), processor_instance=PtOnly())
    assert metrics["columns"] == ["Muon_pt", "nMuon"]
    assert out["sumpt"] > 0


def test_pair_mass_uses_vector_behaviour():
    from hpckit.events import make_events
    from hpckit.events.reader import open_tree

    events, _ = make_events(open_tree(str(DATASETS["DoubleMuon"]), "Events"), 0, 40, NanoAODSchema, {})
    two = events[ak.num(events.Muon) >= 2]
    m = (two.Muon[:, 0] + two.Muon[:, 1]).mass
    assert len(m) == 33 and ak.all(m >= 0)
    assert ak.all(abs(two.Muon.pt - two.Muon.rho) < 1e-4)  # vector's names for the same thing
    assert events.MET.pt.ndim == 1  # flat X_* branches become a record


def test_base_schema_gives_raw_branches(fileset_path):
    def raw(events):
        return {"n": int(ak.sum(ak.num(events.Muon_pt))), "has_nMuon": "nMuon" in events.fields}

    runner = processor.Runner(processor.IterativeExecutor(status=False), schema=BaseSchema, savemetrics=True)
    out, metrics = runner(str(fileset_path), processor_instance=raw)
    assert out == {"n": 102, "has_nMuon": 2}
    assert metrics["columns"] == ["Muon_pt"]


def test_metrics_keys_and_values(fileset_path):
    runner = processor.Runner(processor.FuturesExecutor(workers=2, status=False), chunksize=7, savemetrics=True)
    _, m = runner(str(fileset_path), processor_instance=DimuonProcessor())
    for key in ("bytesread", "columns", "entries", "chunks", "processtime", "walltime", "events_per_second"):
        assert key in m
    assert m["entries"] == 80 and m["chunks"] == 12
    assert m["bytesread"] > 0 and m["processtime"] > 0
    assert m["events_per_second"] == pytest.approx(80 / m["walltime"])
    assert "Muon_charge" in m["columns"] and "Jet_pt" not in m["columns"]
    assert len(m["workers"]) >= 1


def test_maxchunks_and_preprocess(fileset_path):
    runner = processor.Runner(processor.IterativeExecutor(status=False), chunksize=7, maxchunks=2)
    items = list(runner.preprocess(str(fileset_path)))
    assert [(i.dataset, i.entrystart, i.entrystop) for i in items] == [
        ("DYJetsToLL", 0, 7), ("DYJetsToLL", 7, 14), ("DoubleMuon", 0, 7), ("DoubleMuon", 7, 14)
    ]
    full = list(processor.Runner(processor.IterativeExecutor(), chunksize=7).preprocess(str(fileset_path)))
    assert len(full) == 12 and full[5].entrystop == 40
    out = processor.Runner(processor.IterativeExecutor(status=False))(items, processor_instance=DimuonProcessor())
    assert out["cutflow"]["DYJetsToLL"]["all events"] == 14


@pytest.mark.parametrize("status", [True, False])
def test_status_flag_really_turns_off_progress(status, fileset_path, capfd):
    for ex in (processor.IterativeExecutor(status=status), processor.FuturesExecutor(workers=2, status=status)):
        processor.Runner(ex, chunksize=20)(str(fileset_path), processor_instance=DimuonProcessor())
    captured = capfd.readouterr()
    text = captured.out + captured.err
    assert ("Processing" in text) is status


def test_branch_description_shared_by_files_of_one_layout(tmp_path):
    """Two copies of one file share the (costly) branch description; a file of another layout does not."""
    import shutil

    from hpckit.events.reader import open_tree

    a, b = tmp_path / "a.root", tmp_path / "b.root"
    shutil.copy(DATASETS["DYJetsToLL"], a)
    shutil.copy(DATASETS["DYJetsToLL"], b)
    ta, tb = open_tree(str(a), "Events"), open_tree(str(b), "Events")
    tc = open_tree(str(DATASETS["DoubleMuon"]), "Events")  # 1601 branches, not 1499
    assert ta.branches is tb.branches
    assert tc.branches is not ta.branches and len(tc.branches) != len(ta.branches)
    assert ta.branches["Muon_pt"].kind == "jagged" and ta.branches["nMuon"].kind == "flat"
