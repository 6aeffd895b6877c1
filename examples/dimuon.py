"""Opposite-sign dimuon mass spectrum with a cutflow.

Run it with ``hpckit run examples/dimuon.py --fileset examples/fileset.json``. The processor is plain
coffea style: swap ``from hpckit import processor`` for ``from coffea import processor`` and it runs
under coffea too.
"""

import awkward as ak
import hist

from hpckit import processor


class DimuonProcessor(processor.ProcessorABC):
    def process(self, events):
        dataset = events.metadata["dataset"]
        muons = events.Muon
        h_mass = hist.Hist.new.StrCat([], name="dataset", growth=True).Reg(
            60, 0, 120, name="mass", label=r"$m_{\mu\mu}$ [GeV]"
        ).Double()

        two = events[ak.num(muons) >= 2]
        leading = two.Muon[:, :2]
        opposite = leading[:, 0].charge != leading[:, 1].charge
        pairs = leading[opposite]
        mass = (pairs[:, 0] + pairs[:, 1]).mass
        h_mass.fill(dataset=dataset, mass=ak.to_numpy(mass))

        return {
            "mass": h_mass,
            "cutflow": {
                dataset: {
                    "all events": len(events),
                    "muons": int(ak.sum(ak.num(muons))),
                    ">=2 muons": len(two),
                    "opposite-sign leading pair": int(ak.sum(opposite)),
                }
            },
        }

    def postprocess(self, accumulator):
        return accumulator
