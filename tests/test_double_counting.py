"""No chunk is ever counted twice, whatever the processor keeps on itself and whichever executor runs it.

Old tutorials make the accumulator in ``__init__`` and fill and return ``self.output`` in ``process()``.
coffea unpickles a fresh processor per chunk, so that is right there; hpckit gives every chunk its own
copy of the processor (hpckit.processor.isolate). Each executor runs the 4-chunk file and must give the
one-chunk totals, which must equal plain uproot + numpy. A shared accumulator no copy can isolate (a class
attribute, a module global) stops the run with an error naming the processor and the fix.
"""

from __future__ import annotations

import concurrent.futures as cf

import awkward as ak
import hist
import numpy as np
import pytest
import uproot
from conftest import DATA
from test_executors_taskvine import WHY, needs_vine, workers  # noqa: F401 - the vine_worker fixture

from hpckit import processor
from hpckit.core.errors import HpckitError, ProcessorError
from hpckit.events import NanoAODSchema
from hpckit.processor.isolate import ProcessorCopies

pytestmark = pytest.mark.timeout(300)

FILE = DATA / "nano_dy.root"  # 40 events, 18 muons
FILESET = {"DY": {"files": {str(FILE): "Events"}}}
EDGES = np.linspace(0, 200, 21)


def _pt_hist() -> hist.Hist:
    return hist.Hist.new.Reg(20, 0, 200, name="pt").Double()


class FillSelfOutput(processor.ProcessorABC):
    """The tutorial pattern: one accumulator made in __init__, filled and returned by every process()."""

    def __init__(self):
        self.output = {"events": 0, "muons": 0, "pt": _pt_hist(), "cutflow": {"all": 0, ">=1 muon": 0}}

    def process(self, events):
        n = ak.num(events.Muon.pt)
        self.output["events"] += len(events)
        self.output["muons"] += int(ak.sum(n))
        self.output["pt"].fill(ak.flatten(events.Muon.pt))
        self.output["cutflow"]["all"] += len(events)
        self.output["cutflow"][">=1 muon"] += int(ak.sum(n >= 1))
        return self.output


class SharedHistAttribute(processor.ProcessorABC):
    """A fresh dict every chunk, but holding the one hist.Hist made in __init__."""

    def __init__(self):
        self.h = _pt_hist()

    def process(self, events):
        self.h.fill(ak.flatten(events.Muon.pt))
        return {"pt": self.h, "events": len(events)}


class ClassAttributeHist(processor.ProcessorABC):
    """A class attribute: every copy of the processor shares it, so no copy can isolate it."""

    h = _pt_hist()

    def process(self, events):
        self.h.fill(ak.flatten(events.Muon.pt))
        return {"pt": self.h}


@pytest.fixture(scope="module")
def truth() -> dict:
    """Plain uproot + numpy: the numbers every run must give."""
    with uproot.open(FILE) as f:
        pt = f["Events"]["Muon_pt"].array()
    flat = ak.to_numpy(ak.flatten(pt)).astype(np.float64)
    return {"events": len(pt), "muons": len(flat), "pt": np.histogram(flat, bins=EDGES)[0],
            "cutflow": {"all": len(pt), ">=1 muon": int(ak.sum(ak.num(pt) >= 1))}}


def _run(executor, proc, chunksize):
    return processor.Runner(executor, schema=NanoAODSchema, chunksize=chunksize)(FILESET, processor_instance=proc)


def _check(out: dict, truth: dict, one_chunk: dict) -> None:
    for key in ("events", "muons", "cutflow"):
        if key in out:
            assert out[key] == truth[key] == one_chunk[key], key
    np.testing.assert_array_equal(out["pt"].values(), truth["pt"])
    np.testing.assert_array_equal(out["pt"].values(flow=True), one_chunk["pt"].values(flow=True))


@pytest.fixture(scope="module")
def one_chunk() -> dict:
    return {cls: _run(processor.IterativeExecutor(status=False), cls(), 100_000)
            for cls in (FillSelfOutput, SharedHistAttribute)}


def _check_both(make_executor, truth, one_chunk, chunksize=10):
    """Both patterns on the file in 4 chunks; the user's own instance is left as it was (as in coffea)."""
    for cls in (FillSelfOutput, SharedHistAttribute):
        proc = cls()
        out = _run(make_executor(), proc, chunksize)
        _check(out, truth, one_chunk[cls])
        assert (proc.output["events"] if cls is FillSelfOutput else proc.h.sum()) == 0


LOCAL = {
    "iterative": lambda: processor.IterativeExecutor(status=False),
    "futures-process": lambda: processor.FuturesExecutor(workers=2, status=False),  # forked, job inherited
    "futures-process-pickled": lambda: processor.FuturesExecutor(workers=2, pool=cf.ProcessPoolExecutor, status=False),
    # threads: every chunk's copy is made from the user's one live processor object
    "futures-thread": lambda: processor.FuturesExecutor(workers=2, pool=cf.ThreadPoolExecutor, status=False),
}


@pytest.mark.parametrize("executor", sorted(LOCAL))
def test_local_executors_count_each_chunk_once(executor, truth, one_chunk):
    _check_both(LOCAL[executor], truth, one_chunk)


def test_dask_counts_each_chunk_once(truth, one_chunk):
    """Two worker processes with two threads each: chunks on one worker share its cached processor."""
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    with LocalCluster(processes=True, n_workers=2, threads_per_worker=2, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        _check_both(lambda: processor.DaskExecutor(client=client, status=False, treereduction=2), truth, one_chunk)


def test_parsl_counts_each_chunk_once(truth, one_chunk, tmp_path, parsl_tmp):
    pytest.importorskip("parsl")
    import parsl
    from test_executors_parsl import make_config

    config = make_config(tmp_path, parsl_tmp)
    dfk = parsl.load(config)
    try:
        _check_both(lambda: processor.ParslExecutor(config=config, status=False, treereduction=2), truth, one_chunk)
    finally:
        dfk.cleanup()


@needs_vine
def test_taskvine_counts_each_chunk_once(workers, truth, one_chunk, tmp_path):  # noqa: F811
    _check_both(lambda: processor.TaskVineExecutor(port=workers, status=False, filepath=str(tmp_path)),
                truth, one_chunk)


@pytest.mark.parametrize("executor", ["iterative", "futures-process"])
def test_shared_class_attribute_stops_the_run(executor):
    """What no copy can isolate is refused, with the processor's name and the fix, not merged 4 times."""
    with pytest.raises(ProcessorError) as info:
        _run(LOCAL[executor](), ClassAttributeHist(), 10)
    assert isinstance(info.value, HpckitError)
    text = str(info.value)
    assert "ClassAttributeHist.process() returned the output['pt']" in text
    assert "class attribute of ClassAttributeHist" in text
    assert "return a new accumulator from process()" in text


def test_copies_are_cheap_without_mutable_state():
    """A processor holding only immutable values is copied without unpickling anything."""

    class Plain(processor.ProcessorABC):
        def __init__(self):
            self.cuts, self.name, self.edges = (20.0, 2.4), "dimuon", (0, 120)

        def process(self, events):
            self.name = "changed"  # rebinding touches only this chunk's copy
            return {"n": len(events)}

    copies = ProcessorCopies(Plain())
    assert copies.cheap
    first, second = copies.fresh(), copies.fresh()
    first.process([1])
    assert first is not second and second.name == "dimuon" and second.cuts == (20.0, 2.4)
    assert not ProcessorCopies(FillSelfOutput()).cheap


def test_function_returning_what_it_closes_over_stops_the_run():
    """A plain function is not copied: returning an accumulator it closes over is refused by name."""
    total = {"events": 0}

    def count(events):
        total["events"] += len(events)
        return total

    with pytest.raises(ProcessorError, match=r"count\(\) returned the output, .*closes over.*"
                                             r"return a new accumulator from process\(\)"):
        _run(processor.IterativeExecutor(status=False), count, 10)
    assert _run(processor.IterativeExecutor(status=False), lambda events: {"events": len(events)}, 10) == {"events": 40}
