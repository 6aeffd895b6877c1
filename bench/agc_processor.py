"""An AGC-style ttbar processor (single lepton, >=4 jets, b-tags, HT and trijet mass, PackedSelection,
Weights with variations), written once for either kit: ``AGCProcessor("hpckit")`` or ``("coffea")``."""

from __future__ import annotations

import importlib

import awkward as ak
import hist
import numpy as np

BTAG = 0.3  # Jet_btagDeepFlavB working point (loose enough for the 200-event sample to fill 4j2b)


def _kit(name: str):
    processor = importlib.import_module(f"{name}.processor" if name == "coffea" else "hpckit.processor")
    tools = importlib.import_module(f"{name}.analysis_tools")
    return processor, tools


def make_processor(kit: str):
    processor, tools = _kit(kit)

    class AGCProcessor(processor.ProcessorABC):
        def process(self, events):
            dataset = events.metadata["dataset"]
            h = (hist.Hist.new.Reg(25, 50, 550, name="observable")
                 .StrCat(["4j1b", "4j2b"], name="region").StrCat([], name="variation", growth=True).Weight())
            el, mu, jet = events.Electron, events.Muon, events.Jet
            # AGC's cuts, loosened so that the 200-event sample (replicated) fills every region
            elecs = el[(el.pt > 20) & (abs(el.eta) < 2.4) & (el.cutBased >= 0) & (el.sip3d < 100)]
            muons = mu[(mu.pt > 20) & (abs(mu.eta) < 2.4) & mu.looseId & (mu.pfRelIso04_all < 10)]
            jets = jet[(jet.pt > 25) & (abs(jet.eta) < 2.4)]
            nb = ak.sum(jets.btagDeepFlavB > BTAG, axis=1)

            sel = tools.PackedSelection()
            sel.add("lepton", ak.to_numpy((ak.num(elecs) + ak.num(muons)) == 1))
            sel.add("4j", ak.to_numpy(ak.num(jets) >= 4))
            sel.add("1b", ak.to_numpy(nb == 1))
            sel.add("2b", ak.to_numpy(nb >= 2))

            n = len(events)
            weights = tools.Weights(n)
            weights.add("gen", np.sign(ak.to_numpy(events.genWeight)))
            nbn = ak.to_numpy(nb).astype(np.float64)
            weights.add("btag", np.ones(n), weightUp=1 + 0.075 * nbn, weightDown=1 - 0.075 * nbn)
            weights.add("scale", np.ones(n), weightUp=np.full(n, 1.025), weightDown=np.full(n, 0.975))

            for region, mask in (("4j1b", sel.all("lepton", "4j", "1b")), ("4j2b", sel.all("lepton", "4j", "2b"))):
                sj = jets[mask]
                if region == "4j1b":
                    observable = ak.sum(sj.pt, axis=-1)
                else:
                    tri = ak.combinations(sj, 3, fields=["j1", "j2", "j3"])
                    p4 = (tri.j1 + tri.j2) + tri.j3
                    maxb = np.maximum(tri.j1.btagDeepFlavB, np.maximum(tri.j2.btagDeepFlavB, tri.j3.btagDeepFlavB))
                    p4 = p4[maxb > BTAG]
                    best = ak.argmax(p4.pt, axis=1, keepdims=True)
                    observable = ak.flatten(p4[best].mass)
                observable = ak.to_numpy(observable)
                for variation in ["nominal", *sorted(weights.variations)]:
                    w = weights.weight(None if variation == "nominal" else variation)[mask]
                    h.fill(observable=observable, region=region, variation=variation, weight=w)
            flow = sel.cutflow("lepton", "4j", "2b").result()
            return {"hist": h, "cutflow": {dataset: dict(zip(flow.labels, map(int, flow.nevcutflow)))}}

        def postprocess(self, accumulator):
            return accumulator

    return AGCProcessor()
