"""coffea's candidate behaviours on top of ``vector``: every record name with pt/eta/phi/mass (a NanoAOD
collection or one of coffea's names such as ``PtEtaPhiMCandidate``) is a Lorentz vector, and every pair
of such names has the binary operations, so ``Muon + Electron`` or ``(j1 + j2) + j3`` works.

vector registers ``numpy.add`` and friends for pairs of *its* names only; awkward looks up
``behavior[ufunc, left_name, right_name]`` by exact names, so the pairs are registered here for every
name once, generally (not case by case), from vector's own table.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import awkward as ak
import numpy as np
import vector.backends.awkward as vba

from hpckit.events import fast_slice, fast_ufunc, lorentz, shared_behavior
from hpckit.events.fast_num import FastNum
from hpckit.events.crossref import class_members
from hpckit.events.missing import COFFEA_ONLY, CoffeaMethodMissing, missing_method  # noqa: F401 (re-exported)

# coffea's record names and the vector kind that computes them
COFFEA_NAMES_4D = (
    "LorentzVector", "PtEtaPhiMLorentzVector", "PtEtaPhiELorentzVector",
    "Candidate", "PtEtaPhiMCandidate", "PtEtaPhiECandidate", "PtEtaPhiMCollection",
)
COFFEA_NAMES_3D = ("ThreeVector", "SphericalThreeVector")
COFFEA_NAMES_2D = ("TwoVector", "PolarTwoVector", "MissingET")
_BASES = {"Momentum4D": (vba.MomentumArray4D, vba.MomentumRecord4D),
          "Momentum3D": (vba.MomentumArray3D, vba.MomentumRecord3D),
          "Momentum2D": (vba.MomentumArray2D, vba.MomentumRecord2D)}

def _name_of(self) -> str:
    layout = self.layout if isinstance(self, (ak.Array, ak.Record)) else None
    try:
        return ak.parameters(self).get("__record__") or (layout.purelist_parameter("__record__") if layout is not None else "?")
    except Exception:  # noqa: BLE001
        return type(self).__name__


class NamesMissing:
    """Touching a coffea-only method raises an error that names it, not awkward's "no field named"."""

    def __getattr__(self, where):
        try:
            return super().__getattr__(where)
        except AttributeError:
            why = COFFEA_ONLY.get(where)
            if why is not None:
                raise missing_method(_name_of(self), where, why) from None
            raise


class CoffeaMethods(NamesMissing):
    """coffea's spellings on top of vector's: delta_r, delta_phi, nearest, metric_table, sum, ..."""

    def __add__(self, other):
        out = lorentz.flat_binary(np.add, self, other)
        return super().__add__(other) if out is None else out

    def __sub__(self, other):
        out = lorentz.flat_binary(np.subtract, self, other)
        return super().__sub__(other) if out is None else out

    def delta_r(self, other):
        return self.deltaR(other)

    @property
    def r(self):
        """coffea's length: rho of a 2-vector, the magnitude of a 3-vector."""
        return self.mag if hasattr(self, "z") or hasattr(self, "eta") or hasattr(self, "theta") else self.rho

    @property
    def r2(self):
        return self.mag2 if hasattr(self, "z") or hasattr(self, "eta") or hasattr(self, "theta") else self.rho2

    @property
    def pvec(self):
        """The 3-momentum (a ThreeVector), as coffea's."""
        return self.to_Vector3D()

    @property
    def boostvec(self):
        """The velocity p/E (a ThreeVector), as coffea's."""
        return self.to_beta3()

    def delta_r2(self, other):
        return self.deltaR2(other)

    def delta_phi(self, other):
        return self.deltaphi(other)

    def delta_eta(self, other):
        return self.deltaeta(other)

    def metric_table(self, other, axis=1, metric=lambda a, b: a.delta_r(b), return_combinations=False):
        """``metric(a, b)`` for every pair of this and ``other`` (nested: one list of ``other`` per element)."""
        if axis is None:
            a, b = self, other
        else:
            a, b = ak.unzip(ak.cartesian([self, other], axis=axis, nested=True))
        mval = metric(a, b)
        if return_combinations:
            return mval, (a, b)
        return mval

    def nearest(self, other, axis=1, metric=lambda a, b: a.delta_r(b), return_metric=False, threshold=None):
        """The element of ``other`` nearest each element of this (None where ``other`` is empty or beyond
        ``threshold``), as coffea's ``nearest``."""
        mval, (_, b) = self.metric_table(other, axis, metric, return_combinations=True)
        if axis is None:
            axis = other.layout.purelist_depth - 2
        mmin = ak.argmin(mval, axis=axis + 1, keepdims=True)
        out = ak.firsts(b[mmin], axis=axis + 1)
        best = ak.firsts(mval[mmin], axis=axis + 1)
        if threshold is not None:
            out = ak.mask(out, best <= threshold)
        if return_metric:
            return out, best
        return out

    def sum(self, axis=-1):
        """Vector sum along ``axis`` (charge summed too where there is one), as coffea's ``.sum``."""
        return vector_sum(self, axis)


_SUM_NAMES = {2: "TwoVector", 3: "ThreeVector", 4: "LorentzVector"}


def vector_sum(arr: Any, axis: int = -1, mask_identity: bool = False) -> Any:
    """coffea's sum of vectors: x, y (z, t) summed in that order and named by dimension (Candidate with the
    summed charge where the records have one)."""
    coords = ["x", "y"]
    if any(hasattr(arr, c) for c in ("z", "eta", "theta")):
        coords.append("z")
    if any(f in arr.fields for f in ("t", "mass", "energy", "m", "tau", "E", "e")):
        coords.append("t")
    fields = {c: ak.sum(getattr(arr, c), axis=axis, mask_identity=mask_identity) for c in coords}
    name = _SUM_NAMES[len(coords)]
    if "charge" in arr.fields and len(coords) == 4:
        fields["charge"] = ak.sum(arr["charge"], axis=axis, mask_identity=mask_identity)
        name = "Candidate"
    return ak.zip(fields, with_name=name, behavior=arr.behavior, attrs=arr.attrs)


def _reduce_sum(array: Any, mask_identity: bool) -> Any:
    """``ak.sum(vectors, axis=1)`` as coffea's (awkward's reducer hook)."""
    return vector_sum(array, axis=1, mask_identity=mask_identity)


def _add_with_charge(vector_add: Callable) -> Callable:
    """coffea's candidates: the sum of two records that both have a charge has the summed charge."""

    def add(a, b):
        out = vector_add(a, b)
        if "charge" in ak.fields(a) and "charge" in ak.fields(b):
            out = ak.with_field(out, a["charge"] + b["charge"], "charge")
        return out

    return add


def _pair_functions() -> dict[tuple, Callable]:
    """vector's binary entries by (ufunc, left kind, right kind); ``add`` also sums charges, and two
    4-vectors add and subtract as coffea's (``Candidate`` / ``LorentzVector``, see hpckit.events.lorentz)."""
    out: dict = {}
    for key, fn in vba.behavior.items():
        if isinstance(key, tuple) and len(key) == 3 and isinstance(key[0], np.ufunc):
            if isinstance(key[1], str) and isinstance(key[2], str):
                out[key] = _add_with_charge(fn) if key[0] is np.add else fn
    for ufunc, sign in ((np.add, 1), (np.subtract, -1)):
        key = (ufunc, "Momentum4D", "Momentum4D")
        if key in out:
            out[key] = lorentz.combine(sign, vba.behavior[key])
    return out


_PAIRS = _pair_functions()


def _scaled(v: Any, k: Any) -> Any:
    """``v * k`` for a scalar ``k``, as coffea's polar Lorentz vectors do it: a (pt, eta, phi, mass) record
    times k >= 0 keeps its coordinates (pt and mass scaled; a PtEtaPhiMLorentzVector), times anything else
    is a cartesian LorentzVector (t < 0 has no mass form); a (pt, eta, phi, energy) record stays one, the
    direction reversed for k < 0. Other records: vector's ``scale``."""
    fields = set(ak.fields(v))
    behavior = v.behavior
    if {"pt", "eta", "phi", "mass"} <= fields:
        if isinstance(k, (int, float, np.integer, np.floating)) and k >= 0:
            return ak.zip({"pt": v.pt * k, "eta": v.eta, "phi": v.phi, "mass": v.mass * k},
                          with_name="PtEtaPhiMLorentzVector", behavior=behavior)
        return ak.zip({"x": v.x * k, "y": v.y * k, "z": v.z * k, "t": v.t * k}, with_name="LorentzVector",
                      behavior=behavior)
    if {"pt", "eta", "phi", "energy"} <= fields:
        return ak.zip({"pt": v.pt * abs(k), "eta": v.eta * np.sign(k),
                       "phi": v.phi % (2 * np.pi) - np.pi * (k < 0), "energy": v.energy * k},
                      with_name="PtEtaPhiELorentzVector", behavior=behavior)
    return v.scale(k)


def _polar_arithmetic(name: str) -> dict:
    """The scalar products of a 4-vector name, coffea's way (:func:`_scaled`)."""
    import numbers

    return {(np.multiply, name, numbers.Real): _scaled,
            (np.multiply, numbers.Real, name): lambda k, v: _scaled(v, k),
            (np.negative, name): lambda v: _scaled(v, -1),
            (np.true_divide, name, numbers.Real): lambda v, k: _scaled(v, 1 / k)}


def _single_behaviors(kind: str, name: str) -> dict:
    """vector's entries that name one record (``abs``, ``ak.sum``, ``*``, casts...) for ``name``; ``ak.sum``
    is coffea's (its field order and names, the charge of candidates)."""
    out = {}
    for key, fn in vba.behavior.items():
        if key == kind:
            continue
        if isinstance(key, tuple) and kind in key and not (len(key) == 3 and isinstance(key[1], str) and isinstance(key[2], str)):
            out[tuple(name if k == kind else k for k in key)] = _reduce_sum if key == (ak.sum, kind) else fn
    return out


class Behavior(dict):
    """A behaviour dict that pickles as the recipe that built it (its values hold vector's lambdas, which
    do not pickle), so arrays of events can cross process boundaries.

    The binary operations of two record names (``behavior[numpy.add, "Muon", "Electron"]``) are not
    stored but made when awkward first looks one up (``__missing__``): stored, they would be one entry
    per pair of names and ufunc (16,000 on a 2,600-branch NanoAOD), and awkward copies the whole mapping
    on every operation of two arrays.
    """

    def __init__(self, items: dict, recipe: tuple, kinds: dict[str, str] | None = None):
        super().__init__(items)
        self.recipe = recipe
        self.kinds: dict[str, str] = dict(kinds or getattr(items, "kinds", {}))

    def __reduce__(self):
        return (_rebuild, self.recipe)

    def _pair(self, key: Any) -> Callable | None:
        if not (isinstance(key, tuple) and len(key) == 3 and isinstance(key[0], np.ufunc)):
            return None
        ufunc, left, right = key
        if not (isinstance(left, str) and isinstance(right, str)):
            return None
        if left not in self.kinds and right not in self.kinds:
            return None  # vector's own names: vector's entries (already in the mapping) or nothing
        fn = _PAIRS.get((ufunc, self.kinds.get(left, left), self.kinds.get(right, right)))
        if fn is not None:
            self[key] = fn
        return fn

    def __missing__(self, key: Any) -> Any:
        fn = self._pair(key)
        if fn is None:
            raise KeyError(key)
        return fn

    def __contains__(self, key: Any) -> bool:
        return dict.__contains__(self, key) or self._pair(key) is not None

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except (KeyError, TypeError):
            return default


shared_behavior.install(Behavior)
fast_ufunc.install(Behavior)
fast_slice.install(Behavior)


@functools.lru_cache(maxsize=None)
def _fast(base: type) -> dict[str, property]:
    """pt, eta, phi, mass of a vector class: the record's own field when it has one (no vector call)."""
    return {n: lorentz.fast_property(n, getattr(base, n)) for n in ("pt", "eta", "phi", "mass") if hasattr(base, n)}


def _rebuild(module: str, name: str, *args: Any) -> dict:
    import importlib

    return getattr(importlib.import_module(module), name)(*args)


@functools.lru_cache(maxsize=64)
def build_behavior(named: frozenset[tuple[str, str]]) -> Behavior:
    """Behaviour for the record names ``named`` ({(name, kind)}, kind Momentum4D/3D/2D, or None: not a
    vector) plus coffea's names."""
    behavior_plain: dict = {}
    kinds = {n: k for n, k in named if k is not None}
    for name in sorted(n for n, k in named if k is None):  # PV, HLT, ...: only the named-missing errors
        members = class_members(name)
        behavior_plain[name] = type(name, (NamesMissing, ak.Record), dict(members))
        behavior_plain["*", name] = type(f"{name}Array", (FastNum, NamesMissing, ak.Array), dict(members))
    for n in COFFEA_NAMES_4D:
        kinds.setdefault(n, "Momentum4D")
    for n in COFFEA_NAMES_3D:
        kinds.setdefault(n, "Momentum3D")
    for n in COFFEA_NAMES_2D:
        kinds.setdefault(n, "Momentum2D")
    behavior: dict = dict(vba.behavior)
    behavior.update(behavior_plain)
    for name, kind in kinds.items():
        behavior.update(_single_behaviors(kind, name))
        if kind == "Momentum4D":
            behavior.update(_polar_arithmetic(name))
        array_base, record_base = _BASES[kind]
        members = class_members(name)
        behavior[name] = type(name, (CoffeaMethods, record_base), {**_fast(record_base), **members})
        behavior["*", name] = type(f"{name}Array", (FastNum, CoffeaMethods, array_base),
                                  {**_fast(array_base), **members})
    _coffea_results(behavior, kinds)
    if not named:
        _importable(behavior)
    return Behavior(behavior, (__name__, "build_behavior", named), kinds)


def _importable(behavior: dict) -> None:
    """The base behaviour's classes live in hpckit.events.methods.base under their own names."""
    from hpckit.events.methods import base  # noqa: PLC0415 - an empty module the classes are put in

    for value in behavior.values():
        if isinstance(value, type) and issubclass(value, NamesMissing):  # made here (abc names some "abc")
            value.__module__ = base.__name__
            setattr(base, value.__qualname__, value)


_RESULT_NAMES = {2: "TwoVector", 3: "ThreeVector", 4: "LorentzVector"}
_DIMENSION = {"Momentum2D": 2, "Momentum3D": 3, "Momentum4D": 4}


def _coffea_results(behavior: dict, kinds: dict[str, str]) -> None:
    """vector names its results after the ``ProjectionClassND`` of the input's class: point them at
    coffea's names, so ``-a``, ``a * 2``, ``a.unit()`` of a TwoVector are TwoVectors (not Momentum2D) and
    4-vectors give LorentzVector, as in coffea."""
    results = {d: behavior["*", n] for d, n in _RESULT_NAMES.items()}
    for name, kind in kinds.items():
        own = _DIMENSION[kind]
        for cls in (behavior[name], behavior["*", name]):
            for d, target in results.items():
                setattr(cls, f"ProjectionClass{d}D", target)
            cls.GenericClass = cls.MomentumClass = results[own]


def vector_kind(fields: list[str] | tuple[str, ...]) -> str | None:
    """Which Lorentz-vector kind a record with these fields is (None: not a vector)."""
    have = set(fields)
    # vector refuses two spellings of one coordinate (SV has x, y, z and pt, eta, phi): not a vector then
    if ({"x", "y"} <= have or "z" in have or "t" in have or "energy" in have and "mass" in have) and "pt" in have:
        return None
    if len(have & {"mass", "m", "M", "tau"}) > 1:
        return None
    if {"pt", "phi"} <= have:
        if {"eta"} <= have and have & {"mass", "energy", "m"}:  # ScoutingNano spells the mass "m"
            return "Momentum4D"
        if "eta" in have and not have & {"m", "M", "E", "e", "t", "tau"}:  # a 4th coordinate vector cannot take
            return "Momentum3D"
        return "Momentum2D"
    return None


def base_behavior() -> dict:
    """coffea's record names alone (for ``ak.zip(..., with_name="PtEtaPhiMCandidate", behavior=...)``)."""
    return build_behavior(frozenset())
