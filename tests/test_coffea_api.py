"""coffea 2026.9.0's Runner and executor API, accepted with the same meaning (results checked against
plain uproot + awkward through the shared reference), and processors/schemas from coffea itself when
coffea is installed."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import subprocess
import sys
import warnings

import awkward as ak
import pytest
import uproot
from conftest import DATASETS, REPO, assert_matches_reference
from dimuon import DimuonProcessor

from hpckit import processor
from hpckit.core.errors import ChunkError, FileNotFound
from hpckit.processor import Err, Ok
from hpckit.processor.executor import ExecutorBase, FileMeta, UprootMissTreeError, WorkItem

pytestmark = pytest.mark.timeout(300)

GOOD = {ds: {"treename": "Events", "files": [str(p)]} for ds, p in DATASETS.items()}


def _runner(**kwargs):
    kwargs.setdefault("executor", processor.IterativeExecutor(status=False))
    return processor.Runner(**kwargs)


def _count(events):
    return {events.metadata["dataset"]: len(events)}


def test_argument_checks_at_construction():
    with pytest.raises(ValueError, match="format must be 'root' or 'parquet'"):
        _runner(format="csv")
    with pytest.raises(ValueError, match="align_clusters is only supported for ROOT"):
        _runner(format="parquet", align_clusters=True)
    with pytest.raises(ValueError, match="requires skipbadfiles"):
        _runner(use_result_type=True)
    _runner(use_result_type=True, skipbadfiles=(FileNotFoundError,), cachestrategy=dict)
    fields = [f.name for f in dataclasses.fields(processor.Runner)]
    coffea_order = ["executor", "pre_executor", "chunksize", "maxchunks", "metadata_cache", "skipbadfiles",
                    "xrootdtimeout", "align_clusters", "savemetrics", "use_result_type", "schema",
                    "processor_compression", "format", "checkpointer", "cachestrategy"]
    assert fields[: len(coffea_order)] == coffea_order


@pytest.mark.parametrize("executor", [processor.IterativeExecutor, processor.FuturesExecutor])
def test_use_result_type_ok_and_err(executor, reference, tmp_path):
    run = _runner(executor=executor(status=False), use_result_type=True, skipbadfiles=True)
    result = run(GOOD, processor_instance=DimuonProcessor())
    assert isinstance(result, Ok) and result.is_ok()
    assert_matches_reference(result.unwrap(), reference)
    raw = run.run(GOOD, processor_instance=DimuonProcessor())
    assert isinstance(raw, Ok) and raw.unwrap()["exception"] == 0 and "processed" in raw.unwrap()

    missing = {"Missing": {"treename": "Events", "files": [str(tmp_path / "nope.root")]}}
    err = run(missing, processor_instance=DimuonProcessor())
    assert isinstance(err, Err) and err.is_err()
    assert isinstance(err.exception, FileNotFoundError) and "nope.root" in str(err.exception)
    with pytest.raises(FileNotFoundError):
        err.unwrap()


def test_use_result_type_non_matching_error_is_raised(tmp_path):
    run = _runner(use_result_type=True, skipbadfiles=(FileNotFoundError,))
    fileset = {"DY": {"files": {str(DATASETS["DYJetsToLL"]): "NotEvents"}}}
    with pytest.raises(UprootMissTreeError):  # not named by skipbadfiles: raised, not an Err
        run(fileset, processor_instance=DimuonProcessor())


def test_run_returns_raw_dict_and_takes_a_generator_of_chunks(reference):
    run = _runner(chunksize=7)
    gen = run.preprocess(GOOD, treename="Events")
    wrapped = run.run(gen, processor_instance=DimuonProcessor())
    assert set(wrapped) >= {"out", "processed", "metrics", "exception"} and wrapped["exception"] == 0
    assert len(wrapped["processed"]) == 12
    assert_matches_reference(wrapped["out"], reference)


def test_preprocess_send_changes_chunksize():
    fileset = {"A": [str(DATASETS["DYJetsToLL"])], "B": [str(DATASETS["DoubleMuon"])]}
    gen = _runner(chunksize=20).preprocess(fileset, treename="Events")
    first = next(gen)
    second = gen.send(10)  # applies from the next file on, as in coffea
    rest = list(gen)
    assert [(i.dataset, len(i)) for i in [first, second, *rest]] == [("A", 20), ("A", 20)] + [("B", 10)] * 4


def test_dataset_treename_wins_over_the_argument_and_missing_tree_is_a_keyerror():
    """coffea: "treename can also be defined in fileset, which will override the passed treename"."""
    fileset = {"DY": {"treename": "NotEvents", "files": [str(DATASETS["DYJetsToLL"])]}}
    with pytest.raises(UprootMissTreeError, match="tree 'NotEvents' not found") as info:
        _runner()(fileset, processor_instance=_count, treename="Events")
    assert isinstance(info.value, KeyError) and isinstance(info.value, uproot.KeyInFileError)
    with pytest.raises(UprootMissTreeError):  # skipbadfiles=True means OSError, as in coffea
        _runner(skipbadfiles=True)(fileset, processor_instance=_count)
    both = {**fileset, "DM": {"treename": "Events", "files": [str(DATASETS["DoubleMuon"])]}}
    with pytest.warns(UserWarning, match="skipping"):
        out = _runner(skipbadfiles=(UprootMissTreeError,))(both, processor_instance=_count, treename="Other")
    assert out == {"DM": 40}


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFound) as info:
        _runner()({"X": [str(tmp_path / "gone.root")]}, processor_instance=_count, treename="Events")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, OSError)


def test_automatic_retries():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise OSError("transient")
        return "ok"

    with pytest.warns(UserWarning, match="Performed attempt 1 out of 4"):
        assert processor.Runner.automatic_retries(3, False, flaky) == "ok"
    assert len(calls) == 3

    def broken():
        raise OSError("gone")

    with pytest.warns(UserWarning, match="Skipping bad file after 2 attempts"):
        assert processor.Runner.automatic_retries(1, True, broken) is None
    with pytest.raises(OSError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        processor.Runner.automatic_retries(1, True, broken, use_result_type=True)


def _one(_):
    return {"n": 1}


@pytest.mark.parametrize("form", ["int", "class", "instance", "bool"])
def test_futures_executor_called_coffea_way_with_mergepool(form):
    mp = {"int": 2, "class": cf.ProcessPoolExecutor, "instance": cf.ThreadPoolExecutor(2), "bool": True}[form]
    try:
        ex = processor.FuturesExecutor(workers=2, merging=True, mergepool=mp, compression=None, status=False)
        out, code = ex(list(range(6)), _one, None)
        assert (out, code) == ({"n": 6}, 0)
        assert ex.mergepool is mp
        if form == "instance":
            assert mp.submit(abs, -1).result() == 1  # not shut down
    finally:
        if isinstance(mp, cf.Executor):
            mp.shutdown()


def test_tailtimeout_warns_once():
    with pytest.warns(DeprecationWarning) as record:
        processor.FuturesExecutor(tailtimeout=5).copy(unit="chunk")
    assert sum(issubclass(w.category, DeprecationWarning) for w in record) == 1


def test_executor_fields_match_coffea():
    def names(cls):
        return {f.name for f in dataclasses.fields(cls)}

    common = {"status", "unit", "desc", "compression", "function_name", "retries"}
    assert common <= names(processor.IterativeExecutor) and "workers" in names(processor.IterativeExecutor)
    assert common | {"pool", "mergepool", "recoverable", "merging", "workers", "tailtimeout"} <= names(
        processor.FuturesExecutor
    )
    assert common | {"client", "treereduction", "priority", "heavy_input", "use_dataframes", "worker_affinity"} <= names(
        processor.DaskExecutor
    )
    assert common | {"tailtimeout", "config", "recoverable", "merging", "jobs_executors", "merges_executors"} <= names(
        processor.ParslExecutor
    )
    vine = {"port", "manager_name", "status_display_interval", "ssl", "filepath", "extra_input_files", "x509_proxy",
            "environment_file", "verbose", "print_stdout", "password_file", "treereduction", "cores", "memory",
            "disk", "gpus", "replicas", "disable_worker_transfers", "resource_monitor", "resources_mode",
            "fast_terminate_workers", "split_on_exhaustion", "checkpoint_proportion", "concurrent_reads",
            "custom_init"}
    assert common | vine <= names(processor.TaskVineExecutor)


class _RecoverableExecutor(ExecutorBase):
    """An executor written coffea's way: in order, and the partial accumulator with the first error."""

    def __call__(self, items, function, accumulator):
        for item in items:
            try:
                accumulator = processor.accumulate([function(item)], accumulator)
            except Exception as e:  # noqa: BLE001
                return accumulator, e
        return accumulator, 0


class _RepeatsAChunk(ExecutorBase):
    """An executor written coffea's way with a bug a naive resubmit-after-timeout has: the first chunk is
    run and merged twice. The Runner must not return an output that counts its events twice."""

    def __call__(self, items, function, accumulator):
        items = list(items)
        for item in [items[0], *items]:
            accumulator = processor.accumulate([function(item)], accumulator)
        return accumulator, 0


def test_a_chunk_merged_twice_by_an_executor_stops_the_run_naming_it():
    fileset = {"DY": {"treename": "Events", "files": [str(DATASETS["DYJetsToLL"])]}}
    assert processor.Runner(_RecoverableExecutor(), chunksize=10)(fileset, processor_instance=_count) == {"DY": 40}
    with pytest.raises(ChunkError, match=r"chunk 0-10 of .*nano_dy.root.* more than once \(5 results for 4"):
        processor.Runner(_RepeatsAChunk(), chunksize=10)(fileset, processor_instance=_count)


def test_a_chunk_given_twice_stops_the_run_naming_it_not_the_executor():
    """Work items handed to the Runner (coffea's preprocess output, edited by hand) that hold a chunk twice: the
    executor returns one result per item, so the message blames the items, not the executor."""
    fileset = {"DY": {"treename": "Events", "files": [str(DATASETS["DYJetsToLL"])]}}
    runner = processor.Runner(processor.IterativeExecutor(status=False), chunksize=10)
    items = list(runner.preprocess(fileset))
    with pytest.raises(ChunkError, match=r"more than once \(5 results for 5 chunks\).*work items given to the Runner"):
        runner([*items, items[1]], processor_instance=_count)


def _fail_at_20(events):
    if events.metadata["entrystart"] == 20:
        raise RuntimeError("simulated chunk failure")
    return {"nevents": len(events)}


def test_custom_executor_coffea_way_partial_output():
    fileset = {"DY": {"treename": "Events", "files": [str(DATASETS["DYJetsToLL"])]}}
    out = processor.Runner(_RecoverableExecutor(), chunksize=10)(fileset, processor_instance=_count)
    assert out == {"DY": 40}
    with pytest.raises(Exception) as info:
        processor.Runner(_RecoverableExecutor(), chunksize=10)(fileset, processor_instance=_fail_at_20)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert info.value.partial_output == {"nevents": 20}
    run = processor.Runner(_RecoverableExecutor(), chunksize=10, use_result_type=True, skipbadfiles=(OSError,))
    with pytest.raises(Exception, match="simulated chunk failure"):
        run(fileset, processor_instance=_fail_at_20)


def test_filemeta_workitem_and_metadata_fetcher():
    meta = FileMeta("DY", str(DATASETS["DYJetsToLL"]), "Events")
    assert meta == FileMeta("DY", str(DATASETS["DYJetsToLL"]), "Events") and not meta.populated()
    (fetched,) = processor.Runner.metadata_fetcher_root(60, True, {"timeout": 30}, meta)
    assert fetched.metadata["numentries"] == 40 and fetched.populated(clusters=True)
    chunks = list(fetched.chunks(15, False))
    assert [(c.entrystart, c.entrystop) for c in chunks] == [(0, 14), (14, 28), (28, 40)]  # coffea: 14,14,12
    a = WorkItem("d", "f", "t", 0, 5, "u", {"x": 1})
    assert a == WorkItem("d", "f", "t", 0, 5, "u", {"y": 2}) and hash(a) == hash(WorkItem("d", "f", "t", 0, 5, "u"))
    assert len(a) == 5


def test_events_factory_attrs():
    seen = {}

    def probe(events):
        factory = events.attrs["@events_factory"]
        seen["before"] = list(factory.access_log)
        ak.sum(events.Muon.pt)
        seen["after"] = factory.access_log
        seen["handle"] = factory.file_handle is not None
        return {"n": len(events)}

    _runner()({"DY": [str(DATASETS["DYJetsToLL"])]}, processor_instance=probe, treename="Events")
    assert seen == {"before": [], "after": ["Muon_pt", "nMuon"], "handle": True}


def test_hpckit_never_imports_coffea():
    """Runs in a fresh interpreter where importing coffea fails."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'coffea' or name.startswith('coffea.'):\n"
        "            raise ImportError('coffea blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from hpckit import processor\n"
        "from hpckit.processor.executor import UprootMissTreeError\n"
        f"out = processor.Runner(processor.IterativeExecutor(status=False))({{'DY': [{str(DATASETS['DYJetsToLL'])!r}]}},"
        " processor_instance=lambda ev: {'n': len(ev.Muon.pt)}, treename='Events')\n"
        "assert out == {'n': 40}, out\n"
        "assert not any(m == 'coffea' or m.startswith('coffea.') for m in sys.modules)\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=240)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


# -- with coffea installed ----------------------------------------------------------------------------
def test_coffea_processor_and_schema(reference):
    """A processor deriving from coffea's ProcessorABC, with coffea's NanoAODSchema (coffea's behaviours
    and cross-references built over hpckit's open file), on TTree and Parquet."""
    pytest.importorskip("coffea", reason="coffea is not installed (.ci/run installs it: pip install coffea==2026.9.0)")
    from coffea import processor as coffea_processor
    from coffea.nanoevents import NanoAODSchema as CoffeaNanoAOD

    from conftest import DATA

    class CoffeaDimuon(coffea_processor.ProcessorABC):
        def process(self, events):
            mu = events.Muon
            pairs = ak.combinations(mu, 2)
            jet = mu.matched_jet  # a coffea cross-reference: -1 gives None
            return {
                events.metadata["dataset"]: {
                    "muons": int(ak.sum(ak.num(mu))),
                    "pairs": int(ak.sum(ak.num((pairs["0"] + pairs["1"]).mass))),
                    "matched": int(ak.sum(ak.num(jet.pt[~ak.is_none(jet.pt, axis=1)]))),
                }
            }

        def postprocess(self, accumulator):
            return accumulator

    expected = {}
    for ds, path in DATASETS.items():
        with uproot.open(path) as f:
            idx = f["Events"]["Muon_jetIdx"].array()
        n = ak.num(idx)
        expected[ds] = {"muons": int(ak.sum(n)), "pairs": int(ak.sum(n * (n - 1) // 2)),
                        "matched": int(ak.sum(idx >= 0))}
    assert expected["DoubleMuon"]["muons"] == reference["cutflow"]["DoubleMuon"]["muons"]

    # Not RNTuple here: coffea builds the form of the whole RNTuple for every chunk through uproot, which
    # takes ~77 s for one 1,900-field chunk on this machine (hpckit's own reader: test_formats.py)
    variants = {
        "root": ({ds: p for ds, p in DATASETS.items()}, 20),
        "parquet": ({"DYJetsToLL": DATA / "nano_dy.parquet", "DoubleMuon": DATA / "nano_dimuon.parquet"}, 40),
    }
    for kind, (files, chunksize) in variants.items():
        runner = processor.Runner(
            processor.IterativeExecutor(status=False), schema=CoffeaNanoAOD, chunksize=chunksize,
            format="parquet" if kind == "parquet" else "root", savemetrics=True,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # coffea's notes about absent cross-references
            out, metrics = runner({ds: {"files": {str(p): "Events"}} for ds, p in files.items()},
                                  processor_instance=CoffeaDimuon())
        assert out == {ds: expected[ds] for ds in files}, kind
        assert "Muon_jetIdx" in metrics["columns"] and "Electron_pt" not in metrics["columns"], kind
