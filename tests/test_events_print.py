"""Printing lazy events shows values (not awkward's ``[??, ??]``), as coffea's eager NanoEvents do, and
reads only the printed columns. Values are compared with what uproot reads from the file."""

from __future__ import annotations

import awkward as ak
import uproot
from conftest import DATA

from hpckit import processor
from hpckit.events import NanoAODSchema, NanoEventsFactory

WIDE = DATA / "nano_dy.root"  # 1,499 branches


def _first_nonempty(path, branch: str) -> tuple[int, list]:
    with uproot.open(path) as f:
        values = f["Events"][branch].array().tolist()
    i = next(i for i, v in enumerate(values) if v)
    return i, values[i]


def test_factory_prints_values_reading_only_those_columns():
    factory = NanoEventsFactory.from_root(WIDE, schemaclass=NanoAODSchema)
    events = factory.events()
    text = str(events.Muon.pt)
    assert "??" not in text
    i, pts = _first_nonempty(WIDE, "Muon_pt")
    assert f"[{pts[0]:.3g}" in text, text  # awkward prints 3 significant digits
    assert factory.columns == {"nMuon", "Muon_pt"}
    shown = repr(events.Muon)
    assert "??" not in shown and shown.startswith("<MuonArray [[], ")
    assert factory.columns == {"nMuon", "Muon_pt"}  # records shown as {...} need no column
    whole = str(events)
    with uproot.open(WIDE) as f:
        run = f["Events"]["run"].array(entry_stop=1)[0]
    assert whole.startswith(f"[{{run: {run}, ") and "??" not in whole
    assert len(factory.columns) < 10, factory.columns  # the few branches shown, not 1,499


def test_show_and_records():
    factory = NanoEventsFactory.from_root(DATA / "nano_dy.root")
    events = factory.events()
    i, etas = _first_nonempty(DATA / "nano_dy.root", "Muon_eta")
    assert "??" not in str(events.Muon[i])
    assert f"eta: {etas[0]:.3g}" in str(events.Muon[i, 0]) or f"eta: {etas[0]:.2g}" in str(events.Muon[i, 0])
    assert "??" not in str(ak.Array([1, 2]))  # other arrays print as before


class Printing(processor.ProcessorABC):
    def process(self, events):
        return {"printed": [str(events.Muon.pt), repr(events.Muon)]}


def test_printing_inside_process():
    runner = processor.Runner(processor.IterativeExecutor(status=False), schema=NanoAODSchema, savemetrics=True)
    out, metrics = runner({"DY": {"files": {str(DATA / "nano_dy.root"): "Events"}}}, processor_instance=Printing())
    pt_text, muon_text = out["printed"]
    assert "??" not in pt_text and "??" not in muon_text
    _, pts = _first_nonempty(DATA / "nano_dy.root", "Muon_pt")
    assert f"{pts[0]:.3g}" in pt_text
    assert set(metrics["columns"]) == {"nMuon", "Muon_pt"}
