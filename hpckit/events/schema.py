"""Schemas turn a tree's flat branches into an awkward form whose buffers are read on first touch.

A schema's ``plan(branches)`` returns the form and, for every buffer key of that form, which branch
feeds it and how (``data``: the values; ``offsets``: the offsets of a jagged branch;
``counts``: offsets built from an ``nX`` counter branch). Nothing is read while planning.
"""

from __future__ import annotations

from typing import ClassVar

import awkward as ak

from hpckit.events.behavior import vector_kind
from hpckit.events.crossref import extra_fields
from hpckit.events.plan import BufferSource
from hpckit.events.reader import BranchInfo


__all__ = ["BaseSchema", "NanoAODSchema", "PFNanoAODSchema", "ScoutingNanoAODSchema"]

Plan = tuple[ak.forms.Form, dict[str, BufferSource]]


def _primitive(info: BranchInfo) -> str:
    return ak.types.numpytype.dtype_to_primitive(info.dtype)


class BaseSchema:
    """The raw branches as top-level fields (jagged branches keep their own offsets)."""

    name: ClassVar[str] = "BaseSchema"

    @classmethod
    def behavior(cls) -> dict:
        """coffea's ``schema.behavior()``: the behaviour of coffea's record names (a file's own collection
        names are added when its events are made)."""
        from hpckit.events.behavior import base_behavior  # noqa: PLC0415

        return base_behavior()

    @classmethod
    def uproot_writeable(cls, events) -> dict:
        """coffea's ``uproot_writeable``: the events as a dict ``uproot`` can write back (``mktree``)."""
        return {name: _packed(events[name]) for name in events.fields if _writeable(events[name])}

    @classmethod
    def plan(cls, branches: dict[str, BranchInfo]) -> Plan:
        fields, contents, sources = [], [], {}
        for name, info in branches.items():
            fields.append(name)
            contents.append(_branch_form(info, sources))
        return ak.forms.RecordForm(contents, fields, parameters={"__record__": "NanoEvents"}), sources


def _writeable(arr) -> bool:
    """A flat column or a list of numbers per event (what a TTree branch holds)."""
    t = arr.type.content
    return isinstance(t, ak.types.NumpyType) or (
        isinstance(t, ak.types.ListType) and isinstance(t.content, ak.types.NumpyType))


def _packed(arr):
    return ak.to_packed(ak.without_parameters(arr))


def _branch_form(info: BranchInfo, sources: dict[str, BufferSource]) -> ak.forms.Form:
    data = ak.forms.NumpyForm(_primitive(info), form_key=info.name)
    sources[f"{info.name}-data"] = BufferSource(info.name, "data")
    if info.kind == "flat":
        return data
    sources[f"{info.name}-offsets"] = BufferSource(info.name, "offsets")
    return ak.forms.ListOffsetForm("i64", data, form_key=info.name)


class NanoAODSchema(BaseSchema):
    """CMS NanoAOD: ``X_field`` branches counted by ``nX`` become the collection ``events.X``;
    other ``X_field`` branches become the record ``events.X`` (``events.MET.pt``, ``events.HLT.IsoMu24``).

    Collections and records with pt, eta, phi and mass carry the Lorentz-vector behaviour of the
    ``vector`` library under their own name (``events.Muon`` records are ``Muon``), so
    ``(mu1 + mu2).mass`` works. As in coffea, ``*Idx`` branches also give global-index fields
    (``Muon.jetIdxG``) behind the cross-references (``Muon.matched_jet``), and missing vector
    components coffea fills with zeros (``Photon.mass``, ``Jet.charge``) are zeros here too.
    """

    name: ClassVar[str] = "NanoAODSchema"
    # coffea's switches, read by NanoEventsFactory (the Runner reads what the file has)
    event_ids: ClassVar[list[str]] = ["run", "luminosityBlock", "event"]
    error_missing_event_ids: ClassVar[bool] = True
    warn_missing_crossrefs: ClassVar[bool] = True

    @classmethod
    def plan(cls, branches: dict[str, BranchInfo]) -> Plan:
        sources: dict[str, BufferSource] = {}
        groups: dict[str, list[BranchInfo]] = {}
        top: list[BranchInfo] = []
        for name, info in branches.items():
            prefix, sep, _ = name.partition("_")
            if sep and prefix and prefix not in branches:
                groups.setdefault(prefix, []).append(info)
            else:
                top.append(info)

        fields, contents = [], []
        for info in top:
            fields.append(info.name)
            contents.append(_branch_form(info, sources))
        for prefix, members in groups.items():
            counter = branches.get(f"n{prefix}")
            jagged = [m for m in members if m.kind == "jagged"]
            flat = [m for m in members if m.kind == "flat"]
            if counter is not None and counter.kind == "flat" and jagged:
                fields.append(prefix)
                contents.append(_collection_form(prefix, counter, jagged, sources, branches))
                leftovers = flat
            elif flat and not jagged:
                fields.append(prefix)
                contents.append(_record_form(prefix, flat, sources))
                leftovers = []
            else:
                leftovers = members
            for info in leftovers:  # mixed groups: keep the branch under its full name
                fields.append(info.name)
                contents.append(_branch_form(info, sources))
        return ak.forms.RecordForm(contents, fields, parameters={"__record__": "NanoEvents"}), sources

    @classmethod
    def uproot_writeable(cls, events) -> dict:
        """coffea's: collections and records zipped back from their own columns (global indices and other
        derived fields left out), so ``uproot`` writes ``nMuon``, ``Muon_pt``, ... again."""
        out = {}
        for name in events.fields:
            arr = events[name]
            if arr.fields:
                out[name] = ak.zip({f: _packed(arr[f]) for f in arr.fields
                                    if not f.endswith("IdxG") and _writeable(arr[f])})
            else:
                out[name] = _packed(arr)
        return out


class PFNanoAODSchema(NanoAODSchema):
    """coffea's PFNano schema: NanoAOD plus the PF-candidate and secondary-vertex association tables
    (``events.JetPFCands.jet`` / ``.pf``, ``events.JetSVs.jet`` / ``.sv``). hpckit's NanoAODSchema builds
    the same references wherever a file has those branches; this name is coffea's."""

    name: ClassVar[str] = "PFNanoAODSchema"


class ScoutingNanoAODSchema(NanoAODSchema):
    """coffea's ScoutingNano schema: NanoAOD with the ``Scouting*`` collections (charge and photon mass
    filled with zeros as coffea does)."""

    name: ClassVar[str] = "ScoutingNanoAODSchema"


def _member_fields(prefix: str, members: list[BranchInfo], sources: dict[str, BufferSource]):
    names, forms = [], []
    for info in members:
        names.append(info.name[len(prefix) + 1 :])
        forms.append(ak.forms.NumpyForm(_primitive(info), form_key=info.name))
        sources[f"{info.name}-data"] = BufferSource(info.name, "data")
    return names, forms


def _record_parameters(prefix: str, names: list[str]) -> dict:
    return {"__record__": prefix, "collection_name": prefix}


def _collection_form(prefix, counter, members, sources, branches) -> ak.forms.Form:
    names, forms = _member_fields(prefix, members, sources)
    more_names, more_forms = extra_fields(prefix, branches, sources)
    kept = [i for i, n in enumerate(names) if n not in more_names]  # coffea replaces e.g. Photon_mass by zeros
    names = [names[i] for i in kept] + more_names
    forms = [forms[i] for i in kept] + more_forms
    record = ak.forms.RecordForm(forms, names, parameters=_record_parameters(prefix, names))
    key = f"n{prefix}:counts"
    sources[f"{key}-offsets"] = BufferSource(counter.name, "counts")
    return ak.forms.ListOffsetForm("i64", record, form_key=key)


def _record_form(prefix, members, sources) -> ak.forms.Form:
    names, forms = _member_fields(prefix, members, sources)
    return ak.forms.RecordForm(forms, names, parameters=_record_parameters(prefix, names))


def record_kind(form: ak.forms.RecordForm) -> str | None:
    """The vector kind (Momentum4D/3D/2D) of a record form, or None."""
    return vector_kind(form.fields)
