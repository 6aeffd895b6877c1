"""hpckit.events.fast_ufunc gives what awkward's own ufunc path gives, and steps aside where that path
has something to do (jagged or record inputs, other lengths, keyword arguments, named axes, arrays
that are not hpckit's)."""

from __future__ import annotations

import math
from pathlib import Path

import awkward as ak
import awkward._connect.numpy as ak_numpy
import numpy as np
import pytest

from hpckit.events import NanoEventsFactory, fast_ufunc

V15 = Path(__file__).resolve().parent.parent / "data" / "nano_tt_v15.root"


@pytest.fixture(scope="module")
def cols():
    ev = NanoEventsFactory.from_root({str(V15): "Events"}, entry_stop=50).events()
    two = ev[ak.num(ev.Muon) >= 2]
    lead = two.Muon[:, :2]
    return {
        "n": ak.num(ev.Muon),  # int64 NumpyArray
        "run": ev.run,  # uint32 branch
        "met": ev.PFMET.pt,  # float32 branch
        "q0": lead[:, 0].charge,  # int32 IndexedArray (a lazily carried column)
        "q1": lead[:, 1].charge,
        "pt0": lead[:, 0].pt,
        "pt1": lead[:, 1].pt,
        "flag": ev.PFMET.pt > 30,  # bool
        "muons": ev.Muon.pt,  # jagged: awkward's path
    }


def _slow(ufunc, *inputs, **kwargs):
    return ak_numpy.array_ufunc.__wrapped__(ufunc, "__call__", inputs, kwargs)


def _same(fast, slow):
    assert type(fast) is type(slow)
    assert fast.layout.form == slow.layout.form  # same dtype, same (absent) parameters
    assert fast.behavior is slow.behavior
    assert dict(fast.attrs) == dict(slow.attrs)
    for a, b in zip(fast.tolist(), slow.tolist()):
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


CASES = [
    (np.greater_equal, ("n", 2)),
    (np.not_equal, ("q0", "q1")),
    (np.add, ("pt0", "pt1")),
    (np.multiply, ("met", 0.5)),  # float32 times a Python float: float32 (NEP 50)
    (np.multiply, ("met", np.float64(0.5))),  # a numpy float64 scalar promotes
    (np.add, ("q0", 3_000_000_000)),  # int32 plus a Python int that does not fit: awkward's rule, either way
    (np.true_divide, ("n", "q0")),  # 1/0 and 0/0: inf and nan, as numpy
    (np.floor_divide, ("run", 7)),
    (np.logical_and, ("flag", True)),
    (np.sqrt, ("met",)),
    (np.negative, ("q1",)),
    (np.power, (2, "n")),
]


@pytest.mark.parametrize("ufunc,args", CASES, ids=[f"{u.__name__}-{'-'.join(map(str, a))}" for u, a in CASES])
def test_fast_path_equals_awkwards_own(cols, ufunc, args):
    inputs = tuple(cols[a] if isinstance(a, str) else a for a in args)
    with np.errstate(all="ignore"):
        try:
            slow = _slow(ufunc, *inputs)
        except Exception as err:  # noqa: BLE001 - then the fast path must fail alike
            with pytest.raises(type(err)):
                ufunc(*inputs)
            return
        fast = fast_ufunc._fast(ufunc, "__call__", inputs, {})
        assert fast is not None, "this case should take the fast path"
        _same(fast, slow)
        _same(ufunc(*inputs), slow)  # what a user's `a >= 2` calls


def test_cases_with_work_for_awkward_step_aside(cols):
    short = cols["n"][:1]  # length 1 against another length: awkward's rules, not numpy's
    named = ak.with_named_axis(cols["n"], ("events",))
    plain = ak.Array(np.arange(len(cols["n"])))  # not hpckit's: awkward's path, untouched
    for ufunc, inputs, kwargs in [
        (np.add, (cols["n"], short), {}),
        (np.add, (cols["muons"], 1.0), {}),  # jagged
        (np.add, (named, 1), {}),
        (np.add, (cols["n"], 1), {"dtype": np.float64}),
        (np.divmod, (cols["n"], 3), {}),
        (np.add, (plain, 1), {}),
        (np.add, (cols["n"], plain), {}),  # another behaviour
    ]:
        assert fast_ufunc._fast(ufunc, "__call__", inputs, kwargs) is None, (ufunc, kwargs)
    _same(cols["n"] + short, _slow(np.add, cols["n"], short))
    _same(cols["muons"] * 2.0, _slow(np.multiply, cols["muons"], 2.0))
