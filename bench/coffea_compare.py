"""hpckit's events against coffea's on the bundled files: cross-references, behaviours, zero-filled fields.

    PYTHONPATH=. /path/to/coffea-venv/bin/python bench/coffea_compare.py     # run from the repository root

A dev check (coffea is never a dependency): prints 'same' per item, or both answers where they differ;
'coffea fails' where the file lacks what coffea needs (e.g. no Photon collection in nano_tt_v12).
"""
import sys, warnings
from pathlib import Path

import awkward as ak
import numpy as np

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from coffea.nanoevents import NanoEventsFactory, NanoAODSchema as CS
from hpckit.events.reader import open_tree
from hpckit.events.factory import make_events
from hpckit.events import NanoAODSchema
for fn in [str(Path(__file__).resolve().parent.parent / f) for f in ["data/nano_tt_v15.root", "data/nano_tt_v12.root", "data/nano_dy.root"]]:
    ce = NanoEventsFactory.from_root({fn: "Events"}, schemaclass=CS, mode="eager").events()
    he, _ = make_events(open_tree(fn, "Events"), 0, len(ce), NanoAODSchema, {})
    def same(name, f):
        try:
            a = f(ce); 
        except Exception as e:
            print(f"  {name}: coffea fails {type(e).__name__}: {str(e)[:80]}"); return
        try:
            b = f(he)
        except Exception as e:
            print(f"  {name}: HPCKIT fails {type(e).__name__}: {str(e)[:200]}"); return
        ok = ak.to_list(a) == ak.to_list(b)
        if not ok:
            try:  # float32 rounding: coffea sums x/y/z/t, vector converts back to pt/eta/phi
                x, y = (np.asarray(ak.to_numpy(ak.fill_none(ak.flatten(v, axis=None), np.nan)), dtype=float) for v in (a, b))
                ok = bool(np.allclose(x, y, rtol=1e-4, atol=1e-3, equal_nan=True))
                rel = abs(x - y) / (abs(x) + 1e-9)
                print(f"  {name}: {'same within float32 rounding' if ok else 'DIFFERENT'}: max |diff| "
                      f"{np.nanmax(abs(x - y)):.2g} GeV, 99.9% of relative diffs < {np.nanquantile(rel, 0.999):.1e}")
                return
            except Exception as err:
                print(f"  {name}: (no tolerance check: {err})")
        print(f"  {name}: {'same' if ok else 'DIFFERENT'}")
        if not ok: print("     coffea", ak.to_list(a)[:3], "\n     hpckit", ak.to_list(b)[:3])
    print(fn)
    for coll, prop, fld in [("Muon","matched_jet","pt"),("Muon","matched_gen","pdgId"),("Electron","matched_jet","pt"),("Electron","matched_gen","pdgId"),("Electron","matched_photon","pt"),("Photon","matched_electron","pt"),("Photon","matched_jet","pt"),("Tau","matched_jet","pt"),("Tau","matched_gen","pdgId"),("Jet","matched_muons","pt"),("Jet","matched_electrons","pt"),("Jet","matched_gen","pt"),("FatJet","subjets","pt"),("FatJet","matched_gen","pt"),("GenPart","parent","pdgId"),("GenPart","children","pdgId"),("GenPart","distinctParent","pdgId"),("GenPart","distinctChildren","pdgId"),("FsrPhoton","matched_muon","pt"),("Muon","matched_fsrPhoton","pt"),("GenVisTau","parent","pdgId"),("LowPtElectron","matched_electron","pt")]:
        same(f"{coll}.{prop}.{fld}", lambda e: getattr(getattr(getattr(e, coll), prop), fld))
    same("hasFlags", lambda e: e.GenPart.hasFlags(["isPrompt", "isLastCopy"]))
    same("trijet mass", lambda e: (lambda t: (t.j1 + t.j2 + t.j3).mass)(ak.combinations(e.Jet, 3, fields=["j1","j2","j3"])))
    same("mu+el mass", lambda e: (lambda c: (c["0"] + c["1"]).mass)(ak.cartesian([e.Muon, e.Electron])))
    same("mu+el charge", lambda e: (lambda c: (c["0"] + c["1"]).charge)(ak.cartesian([e.Muon, e.Electron])))
    same("mu-el pt", lambda e: (lambda c: (c["0"] - c["1"]).pt)(ak.cartesian([e.Muon, e.Electron])))
    same("jet nearest muon pt", lambda e: e.Jet.nearest(e.Muon).pt)
    same("jet nearest muon metric", lambda e: e.Jet.nearest(e.Muon, return_metric=True)[1])
    same("jet nearest muon thr", lambda e: e.Jet.nearest(e.Muon, threshold=0.4).pt)
    same("metric_table", lambda e: e.Jet.metric_table(e.Electron))
    same("delta_r", lambda e: (lambda c: c["0"].delta_r(c["1"]))(ak.cartesian([e.Jet, e.Muon])))
    same("delta_phi", lambda e: (lambda c: c["0"].delta_phi(c["1"]))(ak.cartesian([e.Jet, e.Muon])))
    same("sum mass", lambda e: e.Jet.sum(axis=1).mass)
    same("sum charge", lambda e: e.Muon.sum(axis=1).charge)
    same("ak.sum jets mass", lambda e: ak.sum(e.Jet, axis=1).mass)
    same("photon mass", lambda e: e.Photon.mass)
    same("jet charge", lambda e: e.Jet.charge)
    same("jet isTight", lambda e: e.Jet.isTight)
    same("ele isMedium", lambda e: e.Electron.isMedium)
    same("sliced matched_jet", lambda e: e[ak.num(e.Muon) > 0].Muon[:, 1:].matched_jet.pt)
    same("fields Muon", lambda e: sorted(e.Muon.fields))
    same("fields Jet", lambda e: sorted(e.Jet.fields))
    same("fields GenPart (coffea also has distinctChildrenDeepIdxG)",
         lambda e: sorted(set(e.GenPart.fields) - {"distinctChildrenDeepIdxG"}))
