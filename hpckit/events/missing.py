"""The coffea NanoEvents methods hpckit does not provide, and the error that names one when it is touched
(instead of awkward's "no field named ...")."""

from __future__ import annotations

from hpckit.core.errors import HpckitError

# Methods and properties of coffea's NanoAOD collections that hpckit does not provide: touching one
# names it instead of awkward's "no field named ...".
COFFEA_ONLY = {
    "constituents": "needs PFNano's nConstituents branch and PF-candidate association table",
    "systematics": "systematics (add_systematic) are a coffea-only feature",
    "add_systematic": "systematics (add_systematic) are a coffea-only feature",
    "explodes_how": "systematics are a coffea-only feature",
    "pos": "build it with ak.zip({'x': ..., 'y': ..., 'z': ...}, with_name='ThreeVector')",
    "p4": "build it with ak.zip({'pt': ..., 'eta': ..., 'phi': ..., 'mass': ...}, with_name='PtEtaPhiMLorentzVector')",
    "_events": "hpckit's collections reach their events through attrs['@events'], not _events()",
    "_apply_global_index": "hpckit resolves cross-references itself (see hpckit.events.crossref)",
    "jet": "this file has no PFNano association branches (JetPFCands_jetIdx, ...)",
    "pf": "this file has no PFNano association branches (JetPFCands_pFCandsIdx, ...)",
    "sv": "this file has no PFNano association branches (JetSVs_sVIdx, ...)",
}


class CoffeaMethodMissing(HpckitError, AttributeError):
    """A coffea NanoEvents method or cross-reference that hpckit does not provide (or this file lacks)."""


def missing_method(owner: str, name: str, why: str) -> CoffeaMethodMissing:
    return CoffeaMethodMissing(
        f"{owner}.{name} is a coffea NanoEvents method that hpckit does not provide ({why}). Compute it from "
        f"the branches, or run the processor with coffea's own schema (schema=coffea.nanoevents.NanoAODSchema) "
        f"so coffea builds the events."
    )
