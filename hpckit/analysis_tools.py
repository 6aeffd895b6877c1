"""coffea's ``analysis_tools`` for hpckit processors: ``PackedSelection`` (named event selections packed
into bits, cutflows, N-1) and ``Weights`` (event weights with up/down variations), with coffea's names
and semantics (eager numpy arrays; coffea's dask mode, plotting and npz export are not provided).
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any, Iterable

import awkward as ak
import numpy as np

_SUPPORTED = {np.dtype("uint16"): 16, np.dtype("uint32"): 32, np.dtype("uint64"): 64}

NminusOneResult = namedtuple("NminusOneResult", ["labels", "nev", "masks"])
ExtendedNminusOneResult = namedtuple(
    "ExtendedNminusOneResult", ["labels", "nev", "masks", "commonmask", "wgtev", "weights", "weightsmodifier"]
)
CutflowResult = namedtuple("CutflowResult", ["labels", "nevonecut", "nevcutflow", "masksonecut", "maskscutflow"])
ExtendedCutflowResult = namedtuple(
    "ExtendedCutflowResult",
    ["labels", "nevonecut", "nevcutflow", "masksonecut", "maskscutflow", "commonmask", "wgtevonecut",
     "wgtevcutflow", "weights", "weightsmodifier"],
)


def _flat(array: Any, fill_value: Any = None) -> np.ndarray:
    """A flat numpy array from numpy/awkward input; None entries become ``fill_value`` (masked if None)."""
    if isinstance(array, np.ndarray) and not isinstance(array, np.ma.MaskedArray):
        if array.ndim != 1:
            raise ValueError(f"expected a flat (1-D) array, got shape {array.shape}")
        return array
    if isinstance(array, np.ma.MaskedArray):
        return array.filled(fill_value) if fill_value is not None else array
    arr = ak.Array(array) if not isinstance(array, ak.Array) else array
    if arr.ndim != 1:
        raise ValueError(f"expected a flat (1-D) array, got type {arr.type}")
    if fill_value is not None:
        arr = ak.fill_none(arr, fill_value)
    out = ak.to_numpy(arr, allow_missing=True)
    return out.filled(fill_value) if isinstance(out, np.ma.MaskedArray) and fill_value is not None else out


def _scale_check(scale: Any) -> None:
    if scale is not None and not isinstance(scale, (int, float)):
        raise ValueError(f"The scale must be an integer or a float, {scale} (type {type(scale)}) was provided.")


def _yield_hist(name: str, label: str | None, values: list, weighted: bool, scale: Any):
    import hist

    axes = [hist.axis.Integer(0, len(values), name=name, label=label or name)]
    h = hist.Hist(*axes, storage=hist.storage.Weight()) if weighted else hist.Hist(*axes)
    w = [v * scale for v in values] if scale is not None else values
    h.fill(np.arange(len(values), dtype=int), weight=w)
    return h


def _step_hist(leading: list, step: str, steps: list, fill: dict, weighted: bool, categorical: dict | None):
    """A histogram over ``leading`` axes + a step axis (+ categorical axis), filled once per step with the
    arrays of ``fill`` (event-wise, possibly jagged) under that step's mask (None: all events)."""
    import hist

    axes = [*leading, hist.axis.Integer(0, len(steps), name=step)]
    fill = dict(fill)
    if categorical is not None:
        axes.append(categorical["axis"])
        fill[categorical["axis"].name] = categorical["values"]
    h = hist.Hist(*axes, storage=hist.storage.Weight()) if weighted else hist.Hist(*axes)
    for i, mask in enumerate(steps):
        picked = {k: (v if mask is None else v[mask]) for k, v in fill.items()}
        arrays = ak.broadcast_arrays(*[ak.Array(v) if isinstance(v, np.ndarray) else v for v in picked.values()])
        flat = {k: ak.to_numpy(ak.flatten(a, axis=None)) for k, a in zip(picked, arrays)}
        h.fill(**{step: np.full(len(flat["weight"]), i, dtype=int)}, **flat)
    return h


def _event_weights(owner, weighted: bool, scale: Any, n: int) -> np.ndarray:
    w = owner._weights.weight(owner._weightsmodifier) if weighted else np.ones(n, dtype=np.float32)
    return w * scale if scale is not None else w


def _var_axes(vars: dict, axes, bins, start, stop, edges, transform) -> list:
    """coffea's plot_vars axes: given ones, or Regular(bins or 20) over the variable's range, or Variable(edges)."""
    import hist

    if axes is not None:
        if len(axes) != len(vars):
            raise ValueError("vars, axes, bins, start, stop, edges, and transform must be the same length")
        return list(axes)
    n = len(vars)
    opts = [[None] * n if x is None else list(x) for x in (bins, start, stop, edges, transform)]
    if any(len(o) != n for o in opts):
        raise ValueError("vars, axes, bins, start, stop, edges, and transform must be the same length")
    out = []
    for (name, var), b, lo, hi, e, t in zip(vars.items(), *opts):
        if e is not None:
            out.append(hist.axis.Variable(edges=e, name=name))
            continue
        lo = ak.min(var) - 1e-6 if lo is None else lo
        hi = ak.max(var) + 1e-6 if hi is None else hi
        out.append(hist.axis.Regular(bins=20 if b is None else b, start=lo, stop=hi, name=name, transform=t))
    return out


def _check_lengths(vars: dict, n: int) -> None:
    for name, var in vars.items():
        if len(var) != n:
            raise ValueError(f"The variable '{name}' has length '{len(var)}', but the masks have length '{n}'")


class _NpzWriter:
    """Writes a result to ``.npz`` when ``compute()`` is called (coffea's NminusOneToNpz / CutflowToNpz)."""

    def __init__(self, file, data: dict, compressed: bool):
        self.file, self.data, self.compressed = file, data, compressed

    def __repr__(self) -> str:
        return f"{type(self).__name__}(file={self.file}, fields={list(self.data)})"

    def compute(self) -> None:
        (np.savez_compressed if self.compressed else np.savez)(self.file, **self.data)


def _to_npz(result, weighted: bool, file, compressed: bool, compute: bool, include: bool):
    data = {k: v for k, v in result._asdict().items() if k not in ("weights", "weightsmodifier", "commonmask")
            and not (k.startswith("wgtev") and not weighted)}
    if getattr(result, "commonmask", None) is not None:
        data["commonmask"] = result.commonmask
    if include and getattr(result, "weights", None) is not None:
        data["weights"] = result.weights.weight(result.weightsmodifier)
    out = _NpzWriter(file, data, compressed)
    if compute:
        out.compute()
        return None
    return out


class NminusOne:
    """What ``PackedSelection.nminusone`` returns."""

    def __init__(self, names, nev, masks, commonmask=None, wgtev=None, weights=None, weightsmodifier=None):
        self._names, self._nev, self._masks = list(names), nev, masks
        self._commonmask, self._wgtev = commonmask, wgtev
        self._weights, self._weightsmodifier = weights, weightsmodifier

    def __repr__(self) -> str:
        return (f"NminusOne(selections={self._names}, commonmasked={self._commonmask is not None}, "
                f"weighted={self._weights is not None}, weightsmodifier={self._weightsmodifier})")

    @property
    def labels(self) -> list[str]:
        return ["initial"] + [f"N - {n}" for n in self._names] + ["N"]

    def result(self, includeweights=None):
        include = (self._weights is not None) if includeweights is None else includeweights
        if self._weights is not None or self._commonmask is not None:
            return ExtendedNminusOneResult(self.labels, self._nev, self._masks, self._commonmask, self._wgtev,
                                           self._weights if include else None,
                                           self._weightsmodifier if include else None)
        return NminusOneResult(self.labels, self._nev, self._masks)

    def to_npz(self, file, compressed=False, compute=False, includeweights=None):
        """Save labels, counts and masks (and weights) to ``file``; returns a writer unless ``compute``."""
        include = (self._weights is not None) if includeweights is None else includeweights
        return _to_npz(self.result(includeweights), self._weights is not None, file, compressed, compute, include)

    def print(self, weighted=None, scale=None) -> None:
        _scale_check(scale)
        weighted = (self._weights is not None) if weighted is None else weighted
        xev = list(self._wgtev if weighted else self._nev)
        if scale is not None:
            xev = [x * scale for x in xev]
        print("\nN-1 selection stats:" + (" (weighted)" if weighted else "") + (f" (scaled by {scale})" if scale else ""))
        for i, name in enumerate(self._names):
            print(f"Ignoring {name:<20}pass = {xev[i + 1]:<20}all = {xev[0]:<20}-- eff = {xev[i + 1] * 100 / xev[0]:.1f} %")
        print(f"All cuts {'':<20}pass = {xev[-1]:<20}all = {xev[0]:<20}-- eff = {xev[-1] * 100 / xev[0]:.1f} %")

    def yieldhist(self, weighted=None, scale=None, categorical=None):
        """(histogram of the N-1 yields, bin labels), as coffea's (``categorical`` is not supported)."""
        _scale_check(scale)
        weighted = (self._weights is not None) if weighted is None else weighted
        if categorical is None:
            return _yield_hist("nminusone", "N-1", self._wgtev if weighted else self._nev, weighted, scale), self.labels
        n = len(self._masks[0])
        h = _step_hist([], "nminusone", [self._commonmask, *self._masks],
                       {"weight": _event_weights(self, weighted, scale, n)}, weighted, categorical)
        return h, self.labels, categorical.get("labels")

    def plot_vars(self, vars, axes=None, bins=None, start=None, stop=None, edges=None, transform=None,
                  weighted=None, scale=None, categorical=None):
        """Histograms of ``vars`` ({name: event-wise array}) at each N-1 step: (hists, labels[, catlabels])."""
        _scale_check(scale)
        weighted = (self._weights is not None) if weighted is None else weighted
        n = len(self._masks[0])
        _check_lengths(vars, n)
        w = _event_weights(self, weighted, scale, n)
        hists = [_step_hist([axis], "nminusone", [self._commonmask, *self._masks], {name: var, "weight": w},
                            weighted, categorical)
                 for (name, var), axis in zip(vars.items(), _var_axes(vars, axes, bins, start, stop, edges, transform))]
        return (hists, self.labels) if categorical is None else (hists, self.labels, categorical.get("labels"))


class Cutflow:
    """What ``PackedSelection.cutflow`` returns."""

    def __init__(self, names, nevonecut, nevcutflow, masksonecut, maskscutflow, commonmask=None,
                 wgtevonecut=None, wgtevcutflow=None, weights=None, weightsmodifier=None):
        self._names = list(names)
        self._nevonecut, self._nevcutflow = nevonecut, nevcutflow
        self._masksonecut, self._maskscutflow = masksonecut, maskscutflow
        self._commonmask, self._wgtevonecut, self._wgtevcutflow = commonmask, wgtevonecut, wgtevcutflow
        self._weights, self._weightsmodifier = weights, weightsmodifier

    def __repr__(self) -> str:
        return (f"Cutflow(selections={self._names}, commonmasked={self._commonmask is not None}, "
                f"weighted={self._weights is not None}, weightsmodifier={self._weightsmodifier})")

    @property
    def labels(self) -> list[str]:
        return ["initial"] + self._names

    def result(self, includeweights=None):
        include = (self._weights is not None) if includeweights is None else includeweights
        base = (self.labels, self._nevonecut, self._nevcutflow, self._masksonecut, self._maskscutflow)
        if self._weights is not None or self._commonmask is not None:
            return ExtendedCutflowResult(*base, self._commonmask, self._wgtevonecut, self._wgtevcutflow,
                                         self._weights if include else None,
                                         self._weightsmodifier if include else None)
        return CutflowResult(*base)

    def to_npz(self, file, compressed=False, compute=False, includeweights=None):
        """Save labels, counts and masks (and weights) to ``file``; returns a writer unless ``compute``."""
        include = (self._weights is not None) if includeweights is None else includeweights
        return _to_npz(self.result(includeweights), self._weights is not None, file, compressed, compute, include)

    def print(self, weighted=None, scale=None) -> None:
        _scale_check(scale)
        weighted = (self._weights is not None) if weighted is None else weighted
        one = list(self._wgtevonecut if weighted else self._nevonecut)
        flow = list(self._wgtevcutflow if weighted else self._nevcutflow)
        if scale is not None:
            one, flow = [x * scale for x in one], [x * scale for x in flow]
        print("\nCutflow selection stats:" + (" (weighted)" if weighted else "") + (f" (scaled by {scale})" if scale else ""))
        for i, name in enumerate(self._names):
            print(f"Cut {name:<20}:pass = {one[i + 1]:<20}cumulative pass = {flow[i + 1]:<20}all = {one[0]:<20}"
                  f"-- eff = {one[i + 1] * 100 / one[0]:.1f} %{'':<20}-- cumulative eff = {flow[i + 1] * 100 / flow[0]:.1f} %")

    def yieldhist(self, weighted=None, scale=None, categorical=None):
        """(one-cut histogram, cutflow histogram, bin labels), as coffea's."""
        _scale_check(scale)
        weighted = (self._weights is not None) if weighted is None else weighted
        if categorical is None:
            one = self._wgtevonecut if weighted else self._nevonecut
            flow = self._wgtevcutflow if weighted else self._nevcutflow
            return (_yield_hist("onecut", None, one, weighted, scale),
                    _yield_hist("cutflow", None, flow, weighted, scale), self.labels)
        w = {"weight": _event_weights(self, weighted, scale, len(self._masksonecut[0]))}
        honecut = _step_hist([], "onecut", [self._commonmask, *self._masksonecut], w, weighted, categorical)
        hcutflow = _step_hist([], "cutflow", [self._commonmask, *self._maskscutflow], w, weighted, categorical)
        return honecut, hcutflow, self.labels, categorical.get("labels")

    def plot_vars(self, vars, axes=None, bins=None, start=None, stop=None, edges=None, transform=None,
                  weighted=None, scale=None, categorical=None):
        """Histograms of ``vars`` after each cut alone and cumulatively: (onecut hists, cutflow hists, labels[, catlabels])."""
        _scale_check(scale)
        weighted = (self._weights is not None) if weighted is None else weighted
        n = len(self._masksonecut[0])
        _check_lengths(vars, n)
        w = _event_weights(self, weighted, scale, n)
        onecut, flow = [], []
        for (name, var), axis in zip(vars.items(), _var_axes(vars, axes, bins, start, stop, edges, transform)):
            fill = {name: var, "weight": w}
            onecut.append(_step_hist([axis], "onecut", [self._commonmask, *self._masksonecut], fill, weighted, categorical))
            flow.append(_step_hist([axis], "cutflow", [self._commonmask, *self._maskscutflow], fill, weighted, categorical))
        if categorical is None:
            return onecut, flow, self.labels
        return onecut, flow, self.labels, categorical.get("labels")


class PackedSelection:
    """Several boolean event selections stored as bits of one integer array (16, 32 or 64 of them)."""

    def __init__(self, dtype="uint32"):
        self._dtype = np.dtype(dtype)
        if self._dtype not in _SUPPORTED:
            raise ValueError(f"dtype {dtype} is not supported")
        self._names: list[str] = []
        self._data: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"PackedSelection(selections={tuple(self._names)}, delayed_mode=False, items={len(self._names)}, maxitems={self.maxitems})"

    @property
    def names(self) -> list[str]:
        return self._names

    @property
    def delayed_mode(self) -> bool:
        return False

    @property
    def maxitems(self) -> int:
        return _SUPPORTED[self._dtype]

    def add(self, name: str, selection: Any, fill_value: bool = False) -> None:
        """Add a flat boolean array (None entries become ``fill_value``)."""
        if name in self._names:
            raise ValueError(f"Selection '{name}' already exists")
        selection = _flat(selection, fill_value)
        if selection.dtype != bool:
            raise ValueError(f"Expected a boolean array, received {selection.dtype}")
        if self._data is None:
            self._data = np.zeros(len(selection), dtype=self._dtype)
        elif len(self._names) == self.maxitems:
            raise RuntimeError(f"Exhausted all slots in PackedSelection: {self}, consider a larger dtype or fewer selections")
        elif self._data.shape != selection.shape:
            raise ValueError(f"New selection '{name}' has a different shape than existing selections "
                             f"({selection.shape} vs. {self._data.shape})")
        np.bitwise_or(self._data, self._dtype.type(1 << len(self._names)), where=selection, out=self._data)
        self._names.append(name)

    def add_multiple(self, selections: dict, fill_value: bool = False) -> None:
        for name, selection in selections.items():
            self.add(name, selection, fill_value)

    def _bits(self, names: Iterable[str]) -> int:
        bits = 0
        for name in names:
            if not isinstance(name, str) or name not in self._names:
                raise ValueError("All arguments must be strings that refer to the names of existing selections")
            bits |= 1 << self._names.index(name)
        return bits

    def require(self, **names: bool) -> np.ndarray:
        """True where each named selection has the given value (the others arbitrary)."""
        consider = self._bits(names)
        require = sum(int(bool(v)) << self._names.index(n) for n, v in names.items())
        return (self._data & self._dtype.type(consider)) == require

    def all(self, *names: str) -> np.ndarray:
        """True where all named selections (all of them if none named) are True."""
        return self.require(**{n: True for n in (names or self._names)})

    def allfalse(self, *names: str) -> np.ndarray:
        return self.require(**{n: False for n in (names or self._names)})

    def any(self, *names: str) -> np.ndarray:
        """True where at least one named selection is True."""
        return (self._data & self._dtype.type(self._bits(names))) != 0

    def _weighted_sums(self, weights, modifier, commonmask, masks):
        if weights is None:
            return None
        w = weights.weight(modifier)
        first = np.sum(w[commonmask]) if commonmask is not None else np.sum(w)
        return [first] + [np.sum(w[m]) for m in masks]

    def nminusone(self, *names: str, commonmask=None, weights=None, weightsmodifier=None) -> NminusOne:
        """Events passing all but one of ``names`` (for each), then all of them."""
        self._bits(names)
        masks = [self.all(*(names[:i] + names[i + 1 :])) for i in range(len(names))] + [self.all(*names)]
        if commonmask is not None:
            commonmask = _flat(commonmask, False)
            masks = [m & commonmask for m in masks]
        first = int(np.sum(commonmask)) if commonmask is not None else len(self._data)
        nev = [first] + [int(np.sum(m)) for m in masks]
        return NminusOne(names, nev, masks, commonmask, self._weighted_sums(weights, weightsmodifier, commonmask, masks),
                         weights, weightsmodifier)

    def cutflow(self, *names: str, commonmask=None, weights=None, weightsmodifier=None) -> Cutflow:
        """Events passing each of ``names`` alone, and all of them up to each one."""
        self._bits(names)
        onecut = [self.any(n) for n in names]
        flow = [self.all(*names[: i + 1]) for i in range(len(names))]
        if commonmask is not None:
            commonmask = _flat(commonmask, False)
            onecut = [m & commonmask for m in onecut]
            flow = [m & commonmask for m in flow]
        first = int(np.sum(commonmask)) if commonmask is not None else len(self._data)
        return Cutflow(names, [first] + [int(np.sum(m)) for m in onecut], [first] + [int(np.sum(m)) for m in flow],
                       onecut, flow, commonmask,
                       self._weighted_sums(weights, weightsmodifier, commonmask, onecut),
                       self._weighted_sums(weights, weightsmodifier, commonmask, flow), weights, weightsmodifier)


class WeightStatistics:
    """sum of weights, of squares, min, max and count of one weight (mergeable)."""

    def __init__(self, sumw=0.0, sumw2=0.0, minw=np.inf, maxw=-np.inf, n=0):
        self.sumw, self.sumw2, self.minw, self.maxw, self.n = sumw, sumw2, minw, maxw, n

    def __repr__(self) -> str:
        return f"WeightStatistics(sumw={self.sumw}, sumw2={self.sumw2}, minw={self.minw}, maxw={self.maxw}, n={self.n})"

    def identity(self) -> "WeightStatistics":
        return WeightStatistics()

    def add(self, other: "WeightStatistics") -> None:
        self.sumw += other.sumw
        self.sumw2 += other.sumw2
        self.minw = min(self.minw, other.minw)
        self.maxw = max(self.maxw, other.maxw)
        self.n += other.n

    def __add__(self, other):
        out = WeightStatistics(self.sumw, self.sumw2, self.minw, self.maxw, self.n)
        out.add(other)
        return out

    def __iadd__(self, other):
        self.add(other)
        return self


class Weights:
    """Event weights as a product of named corrections, each with optional up/down variations."""

    def __init__(self, size: int | None, storeIndividual: bool = False):
        if size is None:
            raise ValueError("hpckit's Weights is eager: give the number of events (coffea's size=None is dask mode)")
        self._weight = np.ones(size)
        self._weights: dict[str, np.ndarray] = {}
        self._modifiers: dict[str, np.ndarray] = {}
        self._weightStats: dict[str, WeightStatistics] = {}
        self._storeIndividual = storeIndividual
        self._names: list[str] = []

    @property
    def weightStatistics(self) -> dict[str, WeightStatistics]:
        return self._weightStats

    def _nominal(self, name: str, weight: Any) -> np.ndarray:
        if name in self._names:
            raise ValueError(f"Weight '{name}' already exists")
        if name.endswith("Up") or name.endswith("Down"):
            raise ValueError("Avoid using 'Up' and 'Down' in weight names, instead pass appropriate shifts to add() call")
        weight = _flat(weight, 1.0)
        if weight.shape != self._weight.shape:
            raise ValueError(f"Weight '{name}' has {len(weight)} entries, the events {len(self._weight)}")
        self._weight = self._weight * weight
        if self._storeIndividual:
            self._weights[name] = weight
        if weight.size:
            lo, hi = weight.min(), weight.max()
        elif np.issubdtype(weight.dtype, np.integer):
            lo, hi = np.iinfo(weight.dtype).max, np.iinfo(weight.dtype).min
        else:
            lo, hi = np.inf, -np.inf
        self._weightStats[name] = WeightStatistics(weight.sum(), (weight**2).sum(), lo, hi, weight.size)
        self._names.append(name)
        return weight

    def _variation(self, name: str, weight: np.ndarray, up: Any, down: Any, shift: bool) -> None:
        nonzero = weight != 0.0
        if up is not None:
            up = np.array(_flat(up, 1.0), dtype=np.float64)
            if shift:
                up += weight
            up[nonzero] /= weight[nonzero]
            self._modifiers[name + "Up"] = up
        if down is not None:
            down = np.array(_flat(down, 1.0), dtype=np.float64)
            if shift:
                down = weight - down
            down[nonzero] /= weight[nonzero]
            self._modifiers[name + "Down"] = down

    def add(self, name: str, weight: Any, weightUp: Any = None, weightDown: Any = None, shift: bool = False) -> None:
        """Multiply in correction ``name``; ``weightUp``/``weightDown`` are the varied weights (or, with
        ``shift=True``, the differences from nominal). Without ``weightDown`` the down variation is 1/up."""
        weight = self._nominal(name, weight)
        self._variation(name, weight, weightUp, weightDown, shift)

    def add_multivariation(self, name: str, weight: Any, modifierNames: list[str], weightsUp: list, weightsDown: list,
                           shift: bool = False) -> None:
        """One correction with several named variations (``name_modifier``Up/Down)."""
        weight = self._nominal(name, weight)
        if len(modifierNames) != len(weightsUp) or len(modifierNames) != len(weightsDown):
            raise ValueError("Provide the same number of modifier names related to the list of modified weights")
        for modifier, up, down in zip(modifierNames, weightsUp, weightsDown):
            self._variation(f"{name}_{modifier}", weight, up, down, shift)

    def weight(self, modifier: str | None = None) -> np.ndarray:
        """The total weight, or with variation ``modifier`` (``nameUp`` / ``nameDown``) applied."""
        if modifier is None:
            return self._weight
        if modifier.endswith("Down") and modifier not in self._modifiers:
            return self._weight / self._modifiers[modifier[:-4] + "Up"]
        return self._weight * self._modifiers[modifier]

    def partial_weight(self, include: Iterable[str] = (), exclude: Iterable[str] = (), modifier: str | None = None) -> np.ndarray:
        """The product of the included (or all but the excluded) corrections; needs ``storeIndividual=True``."""
        include, exclude = tuple(include), tuple(exclude)
        if not self._storeIndividual:
            raise ValueError("To be able to request weight exclusion, use storeIndividual=True when creating Weights object.")
        if (include and exclude) or not (include or exclude):
            raise ValueError("Need to specify exactly one of the 'exclude' or 'include' arguments.")
        names = set(self._weights) & set(include) if include else set(self._weights) - set(exclude)
        w = np.ones(self._weight.size)
        for name in names:
            w = w * self._weights[name]
        if modifier is None:
            return w
        base = modifier[:-4] if modifier.endswith("Down") else modifier[:-2] if modifier.endswith("Up") else modifier
        owner = max((n for n in self._weights if base == n or base.startswith(n + "_")), key=len, default=None)
        if owner not in names:
            raise ValueError(f"Modifier {modifier} is not in the list of included weights")
        if modifier.endswith("Down") and modifier not in self._modifiers:
            return w / self._modifiers[modifier[:-4] + "Up"]
        return w * self._modifiers[modifier]

    @property
    def variations(self) -> set[str]:
        """Every available modifier (a ``Down`` for each ``Up``)."""
        keys = set(self._modifiers)
        keys.update(k[:-2] + "Down" for k in self._modifiers if k.endswith("Up"))
        return keys
