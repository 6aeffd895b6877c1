"""NanoAOD cross-references (``Muon.matched_jet``, ``GenPart.parent``, ``Jet.matched_muons``, ...).

As in coffea, a local index branch (``Muon_jetIdx``: the jet's position in its event, -1 for none) becomes
a *global* index field (``Muon.jetIdxG``: the jet's position in the chunk's flat list of jets), so the
reference survives any slicing of the events or the muons. The global index is a buffer computed when
first touched; the reference itself is a view (an option-type index over the target collection's
records), so ``Muon.matched_jet.pt`` reads ``Muon_jetIdx``, ``nMuon``, ``nJet`` and ``Jet_pt`` only.
"""

from __future__ import annotations

import warnings
from typing import Any

import awkward as ak
import numpy as np

from hpckit.events.missing import CoffeaMethodMissing, missing_method
from hpckit.events.plan import BufferSource

# local index branch -> target collection (coffea's NanoAODSchema.all_cross_references)
CROSS_REFERENCES = {
    "Electron_genPartIdx": "GenPart", "Electron_jetIdx": "Jet", "Electron_photonIdx": "Photon",
    "LowPtElectron_electronIdx": "Electron", "LowPtElectron_genPartIdx": "GenPart", "LowPtElectron_photonIdx": "Photon",
    "FatJet_genJetAK8Idx": "GenJetAK8", "FatJet_subJetIdx1": "SubJet", "FatJet_subJetIdx2": "SubJet",
    "FsrPhoton_muonIdx": "Muon", "GenPart_genPartIdxMother": "GenPart", "GenVisTau_genPartIdxMother": "GenPart",
    "Jet_electronIdx1": "Electron", "Jet_electronIdx2": "Electron", "Jet_genJetIdx": "GenJet",
    "Jet_muonIdx1": "Muon", "Jet_muonIdx2": "Muon", "Muon_fsrPhotonIdx": "FsrPhoton", "Muon_genPartIdx": "GenPart",
    "Muon_jetIdx": "Jet", "Photon_electronIdx": "Electron", "Photon_genPartIdx": "GenPart", "Photon_jetIdx": "Jet",
    "Tau_genPartIdx": "GenPart", "Tau_jetIdx": "Jet",
    # PFNano (coffea's PFNanoAODSchema): they only apply where a file has these branches
    "FatJetPFCands_jetIdx": "FatJet", "FatJetPFCands_pFCandsIdx": "PFCands", "FatJetSVs_jetIdx": "FatJet",
    "FatJetSVs_sVIdx": "SV", "FatJet_electronIdx3SJ": "Electron", "FatJet_muonIdx3SJ": "Muon",
    "GenFatJetCands_jetIdx": "GenJetAK8", "GenFatJetCands_pFCandsIdx": "GenCands", "GenFatJetSVs_jetIdx": "GenJetAK8",
    "GenFatJetSVs_sVIdx": "SV", "GenJetCands_jetIdx": "GenJet", "GenJetCands_pFCandsIdx": "GenCands",
    "GenJetSVs_jetIdx": "GenJet", "GenJetSVs_sVIdx": "SV", "JetPFCands_jetIdx": "Jet",
    "JetPFCands_pFCandsIdx": "PFCands", "JetSVs_jetIdx": "Jet", "JetSVs_sVIdx": "SV",
    "SubJet_subGenJetAK8Idx": "SubGenJetAK8",
}
# fixed-length lists of references made from Idx1, Idx2 (padded with None, as coffea)
NESTED = {
    "FatJet_subJetIdxG": ("FatJet_subJetIdx1", "FatJet_subJetIdx2"),
    "Jet_muonIdxG": ("Jet_muonIdx1", "Jet_muonIdx2"),
    "Jet_electronIdxG": ("Jet_electronIdx1", "Jet_electronIdx2"),
}
# a jet's PF candidates (coffea's nested_index_items): the association table lists them jet after jet, so
# jet j's are the next Jet_nConstituents[j] entries of it
CONSTITUENTS = {
    "Jet_pFCandsIdxG": ("Jet_nConstituents", "JetPFCands"),
    "FatJet_pFCandsIdxG": ("FatJet_nConstituents", "FatJetPFCands"),
    "GenJet_pFCandsIdxG": ("GenJet_nConstituents", "GenJetCands"),
}
# fields coffea fills with zeros so that the collection is a Lorentz vector / candidate
ZERO_FILLED = {
    "Photon": ("mass", "charge"), "Jet": ("charge",), "FatJet": ("charge",), "TrigObj": ("mass",),
    "FsrPhoton": ("mass", "charge"), "IsoTrack": ("mass",), "SoftActivityJet": ("mass",),
    # ScoutingNano (coffea's ScoutingNanoAODSchema)
    "ScoutingJet": ("charge",), "ScoutingFatJet": ("charge",), "ScoutingPhoton": ("m", "charge"),
}

# record name -> {property: (target collection, global index field)} (coffea's methods/nanoaod.py)
REFERENCES: dict[str, dict[str, tuple[str, str]]] = {
    "Electron": {"matched_gen": ("GenPart", "genPartIdxG"), "matched_jet": ("Jet", "jetIdxG"),
                 "matched_photon": ("Photon", "photonIdxG")},
    "LowPtElectron": {"matched_gen": ("GenPart", "genPartIdxG"), "matched_electron": ("Electron", "electronIdxG"),
                      "matched_photon": ("Photon", "photonIdxG")},
    "Muon": {"matched_fsrPhoton": ("FsrPhoton", "fsrPhotonIdxG"), "matched_gen": ("GenPart", "genPartIdxG"),
             "matched_jet": ("Jet", "jetIdxG")},
    "Tau": {"matched_gen": ("GenPart", "genPartIdxG"), "matched_jet": ("Jet", "jetIdxG")},
    "Photon": {"matched_electron": ("Electron", "electronIdxG"), "matched_gen": ("GenPart", "genPartIdxG"),
               "matched_jet": ("Jet", "jetIdxG")},
    "FsrPhoton": {"matched_muon": ("Muon", "muonIdxG")},
    "Jet": {"matched_electrons": ("Electron", "electronIdxG"), "matched_muons": ("Muon", "muonIdxG"),
            "matched_gen": ("GenJet", "genJetIdxG"), "constituents": ("JetPFCands", "pFCandsIdxG")},
    "FatJet": {"subjets": ("SubJet", "subJetIdxG"), "matched_gen": ("GenJetAK8", "genJetAK8IdxG"),
               "constituents": ("FatJetPFCands", "pFCandsIdxG")},
    "GenJet": {"constituents": ("GenJetCands", "pFCandsIdxG")},
    "GenPart": {"parent": ("GenPart", "genPartIdxMotherG"), "distinctParent": ("GenPart", "distinctParentIdxG"),
                "children": ("GenPart", "childrenIdxG"), "distinctChildren": ("GenPart", "distinctChildrenIdxG"),
                "distinctChildrenDeep": ("GenPart", "distinctChildrenDeepIdxG")},
    "GenVisTau": {"parent": ("GenPart", "genPartIdxMotherG")},
    # PFNano's association tables (coffea's AssociatedPFCand / AssociatedSV)
    **{name: {"jet": (jet, "jetIdxG"), "pf": (cands, "pFCandsIdxG")}
       for name, jet, cands in (("JetPFCands", "Jet", "PFCands"), ("FatJetPFCands", "FatJet", "PFCands"),
                                ("GenJetCands", "GenJet", "GenCands"), ("GenFatJetCands", "GenJetAK8", "GenCands"))},
    **{name: {"jet": (jet, "jetIdxG"), "sv": ("SV", "sVIdxG")}
       for name, jet in (("JetSVs", "Jet"), ("FatJetSVs", "FatJet"), ("GenJetSVs", "GenJet"), ("GenFatJetSVs", "GenJetAK8"))},
}
# references whose use warns, as coffea's
WARNS = {("GenPart", "distinctChildrenDeep"): "distinctChildrenDeep may not give correct answers for all generators!"}

GEN_FLAGS = [
    "isPrompt", "isDecayedLeptonHadron", "isTauDecayProduct", "isPromptTauDecayProduct", "isDirectTauDecayProduct",
    "isDirectPromptTauDecayProduct", "isDirectHadronDecayProduct", "isHardProcess", "fromHardProcess",
    "isHardProcessTauDecayProduct", "isDirectHardProcessTauDecayProduct", "fromHardProcessBeforeFSR",
    "isFirstCopy", "isLastCopy", "isLastCopyBeforeFSR",
]


# -- planning: which extra fields a collection gets ------------------------------------------------------
def extra_fields(prefix: str, branches: dict, sources: dict[str, BufferSource]) -> tuple[list[str], list[Any]]:
    """Global-index and zero-filled fields of collection ``prefix`` (names, forms); nothing is read."""
    names: list[str] = []
    forms: list[Any] = []
    counter = f"n{prefix}"

    def numpy_field(name: str, key: str, source: BufferSource, primitive: str = "int64") -> None:
        names.append(name)
        forms.append(ak.forms.NumpyForm(primitive, form_key=key))
        sources[f"{key}-data"] = source

    def list_field(name: str, key: str, source: BufferSource) -> None:
        names.append(name)
        forms.append(ak.forms.ListOffsetForm("i64", ak.forms.NumpyForm("int64", form_key=key), form_key=key))
        sources[f"{key}-data"] = source
        sources[f"{key}-offsets"] = BufferSource(source.branch, source.part + "-offsets", source.args)

    def usable(idx_branch: str) -> bool:
        target = CROSS_REFERENCES[idx_branch]
        info, tcount = branches.get(idx_branch), branches.get(f"n{target}")
        return info is not None and info.kind == "jagged" and tcount is not None and tcount.kind == "flat"

    for field in ZERO_FILLED.get(prefix, ()):  # replaces a branch of that name, as coffea does
        numpy_field(field, f"{prefix}_{field}:zeros", BufferSource(counter, "zeros"), "float32")
    for idx_branch, target in CROSS_REFERENCES.items():
        if idx_branch.startswith(prefix + "_") and usable(idx_branch):
            numpy_field(idx_branch[len(prefix) + 1 :] + "G", f"{idx_branch}G", BufferSource(idx_branch, "global", (target,)))
    for name, (idx1, idx2) in NESTED.items():
        if name.startswith(prefix + "_") and usable(idx1) and usable(idx2):
            list_field(name[len(prefix) + 1 :], name, BufferSource(idx1, "nested", (idx2, CROSS_REFERENCES[idx1])))
    for name, (counts, target) in CONSTITUENTS.items():
        info, tcount = branches.get(counts), branches.get(f"n{target}")
        if name.startswith(prefix + "_") and info is not None and info.kind == "jagged" and tcount is not None \
                and tcount.kind == "flat":
            list_field(name[len(prefix) + 1 :], name, BufferSource(counts, "constituents", (target,)))
    if prefix == "GenPart" and usable("GenPart_genPartIdxMother") and "GenPart_pdgId" in branches:
        numpy_field("distinctParentIdxG", "GenPart_distinctParentIdxG", BufferSource("GenPart_genPartIdxMother", "distinct-parent"))
        list_field("childrenIdxG", "GenPart_childrenIdxG", BufferSource("GenPart_genPartIdxMother", "children"))
        list_field("distinctChildrenIdxG", "GenPart_distinctChildrenIdxG",
                   BufferSource("GenPart_genPartIdxMother", "distinct-children"))
        list_field("distinctChildrenDeepIdxG", "GenPart_distinctChildrenDeepIdxG",
                   BufferSource("GenPart_genPartIdxMother", "distinct-children-deep"))
    return names, forms


# -- reading: the derived buffers -----------------------------------------------------------------------
def derive(reader: Any, source: BufferSource) -> np.ndarray:
    """The buffer of a derived field (global indices, children lists, zeros), computed once per chunk."""
    memo = reader.derived
    key = (source.branch, source.part, source.args)
    out = memo.get(key)
    if out is None:
        out = memo[key] = _DERIVE[source.part](reader, source)
    return out


def _global(reader, branch: str, target: str) -> np.ndarray:
    offsets, local = reader.jagged(branch)
    target_offsets = reader.counter_offsets(f"n{target}")
    counts = np.diff(offsets)
    starts = np.repeat(target_offsets[:-1], counts)
    ends = np.repeat(target_offsets[1:], counts)
    out = local.astype(np.int64) + starts
    return np.where((local >= 0) & (out < ends), out, -1)  # beyond the event's targets: None, as coffea


def _nested(reader, source: BufferSource) -> np.ndarray:
    idx2, target = source.args
    a, b = _global(reader, source.branch, target), _global(reader, idx2, target)
    out = np.empty(2 * len(a), dtype=np.int64)
    out[0::2], out[1::2] = a, b
    return out


def _constituent_offsets(reader, source: BufferSource) -> np.ndarray:
    """Where each jet's candidates start in the chunk's association table (``nConstituents`` summed)."""
    _, counts = reader.jagged(source.branch)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    (target,) = source.args
    have = int(reader.counter_offsets(f"n{target}")[-1])
    if offsets[-1] != have:
        raise CoffeaMethodMissing(
            f"{source.branch} adds up to {int(offsets[-1])} candidates but entries {reader.start}-{reader.stop} of "
            f"{reader.tree.filename} have {have} {target}: the constituents need {target} listed jet after jet, "
            f"as PFNano writes it; use {target}.jetIdx instead")
    return offsets


def _distinct_parent(reader, source: BufferSource) -> np.ndarray:
    parents = derive(reader, BufferSource(source.branch, "global", ("GenPart",)))
    _, pdg = reader.jagged("GenPart_pdgId")
    out = parents.copy()
    todo = np.flatnonzero(out >= 0)
    while len(todo):  # climb while the ancestor has the particle's own pdgId
        same = pdg[out[todo]] == pdg[todo]
        todo = todo[same]
        out[todo] = parents[out[todo]]
        todo = todo[out[todo] >= 0]
    return out


def _children(parents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and content of each particle's children (particles whose parent it is, later in the list)."""
    n = len(parents)
    valid = (parents >= 0) & (parents <= np.arange(n))
    order = np.argsort(np.where(valid, parents, n), kind="stable")[: int(np.count_nonzero(valid))]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(parents[valid], minlength=n), out=offsets[1:])
    return offsets, order.astype(np.int64)


def _children_of(reader, source: BufferSource, distinct: bool) -> tuple[np.ndarray, np.ndarray]:
    part = "distinct-parent" if distinct else "global"
    parents = derive(reader, BufferSource(source.branch, part, () if distinct else ("GenPart",)))
    return _children(parents)


def _children_deep(reader, source: BufferSource) -> tuple[np.ndarray, np.ndarray]:
    """coffea's distinctChildrenDeep: for the first particle of a chain of same-pdgId copies, the children
    of the chain with another pdgId, and the chain's copies that have no child (coffea's kernel, in
    Python: computed only when touched)."""
    key = (source.branch, "distinct-children-deep:both", ())
    memo = reader.derived.get(key)
    if memo is not None:
        return memo
    parents = derive(reader, BufferSource(source.branch, "global", ("GenPart",)))
    offsets = reader.counter_offsets("nGenPart")
    _, pdg = reader.jagged("GenPart_pdgId")
    parent_list, pdg_list = parents.tolist(), pdg.tolist()
    out_offsets, content = [0], []
    for event in range(len(offsets) - 1):
        stop = int(offsets[event + 1])
        for i in range(int(offsets[event]), stop):
            mother = parent_list[i]
            if mother >= 0 and pdg_list[i] != pdg_list[mother]:
                chain, in_chain, with_children = [i], {i}, set()
                for child in range(i, stop):
                    if parent_list[child] in in_chain:
                        with_children.add(parent_list[child])
                        if pdg_list[child] == pdg_list[i]:
                            chain.append(child)
                            in_chain.add(child)
                        else:
                            content.append(child)
                content.extend(c for c in chain[1:] if c not in with_children)
            out_offsets.append(len(content))
    memo = reader.derived[key] = (np.asarray(out_offsets, dtype=np.int64), np.asarray(content, dtype=np.int64))
    return memo


_DERIVE = {
    "global": lambda r, s: _global(r, s.branch, s.args[0]),
    "nested": _nested,
    "nested-offsets": lambda r, s: np.arange(0, 2 * len(r.jagged(s.branch)[1]) + 1, 2, dtype=np.int64),
    "distinct-parent": _distinct_parent,
    "children": lambda r, s: _children_of(r, s, False)[1],
    "children-offsets": lambda r, s: _children_of(r, s, False)[0],
    "distinct-children": lambda r, s: _children_of(r, s, True)[1],
    "distinct-children-offsets": lambda r, s: _children_of(r, s, True)[0],
    "distinct-children-deep": lambda r, s: _children_deep(r, s)[1],
    "distinct-children-deep-offsets": lambda r, s: _children_deep(r, s)[0],
    "constituents": lambda r, s: np.arange(_constituent_offsets(r, s)[-1], dtype=np.int64),
    "constituents-offsets": _constituent_offsets,
    "zeros": lambda r, s: np.zeros(int(r.counter_offsets(s.branch)[-1]), dtype=np.float32),
}


# -- resolving: the properties on the collections ---------------------------------------------------------
def apply_global_index(content: ak.contents.Content, index: Any, behavior: dict, attrs: Any) -> Any:
    """``content[index]`` at the innermost level of ``index``, -1 giving None (coffea's _apply_global_index)."""
    if not isinstance(index, (ak.Array, ak.Record)):  # one record's reference
        return None if index < 0 else ak.Array(content, behavior=behavior, attrs=attrs)[int(index)]

    def leaf(layout, **kwargs):
        if layout.purelist_depth != 1:
            return None
        if isinstance(layout, ak.contents.NumpyArray):
            idx = np.asarray(ak.to_numpy(ak.Array(layout)), dtype=np.int64)
            return ak.contents.IndexedOptionArray(ak.index.Index64(idx), content)
        idx = ak.Array(layout)
        return ak.to_layout(ak.Array(content)[idx.mask[idx >= 0]])

    return ak.Array(ak.transform(leaf, index.layout, highlevel=False), behavior=behavior, attrs=attrs)


def _reference(owner: str, prop: str, target: str, field: str):
    warning = WARNS.get((owner, prop))

    def get(self):
        if warning is not None:
            warnings.warn(warning, stacklevel=2)
        if field not in self.fields:
            raise missing_method(owner, prop, f"this file has no branch for {owner}.{field[:-1]} or no n{target}")
        events = (self.attrs or {}).get("@events")
        if events is None:
            raise CoffeaMethodMissing(
                f"{owner}.{prop}: this array no longer knows the events it came from (it was rebuilt outside "
                f"hpckit.events, e.g. by ak.zip or ak.Array); take the reference before rebuilding it"
            )
        return apply_global_index(events.collection_content(target), self[field], self.behavior, self.attrs)

    get.__name__ = prop
    get.__doc__ = f"The {target} referenced by {owner}.{field} (None where the index is -1), as coffea's {prop}."
    return property(get)


def _has_flags(self, *flags):
    """True where every named status flag is set (coffea's GenParticle.hasFlags)."""
    if not flags:
        raise ValueError("No flags specified")
    if isinstance(flags[0], list):
        flags = flags[0]
    mask = 0
    for flag in flags:
        mask |= 1 << GEN_FLAGS.index(flag)
    return (self.statusFlags & mask) == mask


def _at_least(field: str, value: int):
    return property(lambda self: self[field] >= value)


def _bit(field: str, bit: int):
    return property(lambda self: (self[field] & (1 << bit)) != 0)


def _photon_id(level: int):
    def get(self):
        if "cutBased" in self.fields:
            return self.cutBased >= level
        return (self.cutBasedBitmap & (1 << (level - 1))) != 0

    return property(get)


_JET_IDS = {"isLoose": _bit("jetId", 0), "isTight": _bit("jetId", 1), "isTightLeptonVeto": _bit("jetId", 2),
            "LOOSE": 0, "TIGHT": 1, "TIGHTLEPVETO": 2}
_SIMPLE: dict[str, dict[str, Any]] = {
    "Electron": {"isVeto": _at_least("cutBased", 1), "isLoose": _at_least("cutBased", 2),
                 "isMedium": _at_least("cutBased", 3), "isTight": _at_least("cutBased", 4),
                 "FAIL": 0, "VETO": 1, "LOOSE": 2, "MEDIUM": 3, "TIGHT": 4},
    "Photon": {"isLoose": _photon_id(1), "isMedium": _photon_id(2), "isTight": _photon_id(3),
               "FAIL": 0, "LOOSE": 1, "MEDIUM": 2, "TIGHT": 3},
    "Jet": _JET_IDS,
    "FatJet": _JET_IDS,
    "GenPart": {"hasFlags": _has_flags, "FLAGS": GEN_FLAGS},
}


def class_members(name: str) -> dict[str, Any]:
    """Properties and methods of the record name's array and record classes."""
    members = dict(_SIMPLE.get(name, {}))
    for prop, (target, field) in REFERENCES.get(name, {}).items():
        members[prop] = _reference(name, prop, target, field)
    return members
