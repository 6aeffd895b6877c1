"""RNTuple and Parquet inputs give exactly the TTree results (checked against plain uproot + awkward on
the TTree files): lazy columns, chunking, metrics, checkpoints, and the local and distributed executors."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest
import uproot
from conftest import DATA, DATASETS, assert_matches_reference
from dimuon import DimuonProcessor

from hpckit import processor
from hpckit.core.errors import ChunkError, FileNotFound, NotATreeError

pytestmark = pytest.mark.timeout(300)

COFFEA_COPIES = {
    "rntuple": {"DYJetsToLL": DATA / "nano_dy_rntuple.root", "DoubleMuon": DATA / "nano_dimuon_rntuple.root"},
    "parquet": {"DYJetsToLL": DATA / "nano_dy.parquet", "DoubleMuon": DATA / "nano_dimuon.parquet"},
}
KEEP = ("run", "luminosityBlock", "event", "nMuon", "Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge")


def _fileset(files: dict) -> dict:
    return {ds: {"files": {str(path): "Events"}} for ds, path in files.items()}


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> dict:
    """The bundled TTree files written here as RNTuple (uproot's mkrntuple, two clusters) and Parquet
    (awkward, row groups of 15 events)."""
    out = tmp_path_factory.mktemp("converted")
    files: dict = {"rntuple": {}, "parquet": {}}
    for ds, path in DATASETS.items():
        with uproot.open(path) as f:
            arrays = f["Events"].arrays(list(KEEP))
        rn = out / f"{path.stem}_rntuple.root"
        with uproot.recreate(rn) as w:
            w.mkrntuple("Events", arrays[:25])
            w["Events"].extend(arrays[25:])
        pq = out / f"{path.stem}.parquet"
        ak.to_parquet(arrays, pq, row_group_size=15)
        files["rntuple"][ds], files["parquet"][ds] = rn, pq
    return files


def _run(files, executor=None, fmt="root", **kwargs):
    runner = processor.Runner(
        executor or processor.IterativeExecutor(status=False), chunksize=7, savemetrics=True, format=fmt, **kwargs
    )
    return runner(_fileset(files), processor_instance=DimuonProcessor())


@pytest.mark.parametrize("source", ["coffea-copies", "converted"])
@pytest.mark.parametrize("kind", ["rntuple", "parquet"])
def test_same_result_and_chunks_as_the_ttree(kind, source, converted, reference):
    files = COFFEA_COPIES[kind] if source == "coffea-copies" else converted[kind]
    out, metrics = _run(files, fmt="parquet" if kind == "parquet" else "root")
    assert_matches_reference(out, reference)
    _, ttree_metrics = _run(DATASETS)
    assert metrics["chunks"] == ttree_metrics["chunks"] == 12  # 40 entries at chunksize 7: 6 per file
    assert metrics["entries"] == 80
    # lazy: only the muon columns the processor touches are read, as from the TTree
    assert metrics["columns"] == ttree_metrics["columns"]
    assert metrics["bytesread"] > 0


def test_parquet_by_file_name_in_a_root_run(reference):
    out, _ = _run(COFFEA_COPIES["parquet"])  # format="root", but the files are named .parquet
    assert_matches_reference(out, reference)


def test_preprocessing_chunks_and_clusters(converted):
    fileset = _fileset({"DY": converted["rntuple"]["DYJetsToLL"]})
    items = list(processor.Runner(processor.IterativeExecutor(), chunksize=7).preprocess(fileset))
    assert [(i.entrystart, i.entrystop) for i in items] == [(0, 7), (7, 14), (14, 21), (21, 28), (28, 35), (35, 40)]
    aligned = list(processor.Runner(processor.IterativeExecutor(), chunksize=7, align_clusters=True).preprocess(fileset))
    assert [(i.entrystart, i.entrystop) for i in aligned] == [(0, 25), (25, 40)]  # the two RNTuple clusters
    pq = {"DY": {"files": {str(converted["parquet"]["DYJetsToLL"]): "Events"}}}
    with pytest.raises(ValueError, match="align_clusters is only supported for ROOT"):
        processor.Runner(processor.IterativeExecutor(), align_clusters=True, format="parquet")
    items = list(processor.Runner(processor.IterativeExecutor(), chunksize=20, format="parquet").preprocess(pq))
    assert [(i.entrystart, i.entrystop) for i in items] == [(0, 20), (20, 40)]


def test_chunk_across_row_groups_reads_exact_values(converted):
    """A chunk that starts and ends inside Parquet row groups / RNTuple clusters gets exactly its entries."""
    with uproot.open(DATASETS["DoubleMuon"]) as f:
        want = f["Events"]["Muon_pt"].array(entry_start=11, entry_stop=33)

    class Pt(processor.ProcessorABC):
        def process(self, events):
            return {"pt": processor.column_accumulator(ak.to_numpy(ak.flatten(events.Muon.pt)))}

    for kind, fmt in (("rntuple", "root"), ("parquet", "parquet")):
        path = converted[kind]["DoubleMuon"]
        item = processor.WorkItem("D", str(path), "Events", 11, 33, _uuid_of(path, fmt))
        runner = processor.Runner(processor.IterativeExecutor(status=False), format=fmt)
        out = runner([item], processor_instance=Pt())
        np.testing.assert_array_equal(out["pt"].value, ak.to_numpy(ak.flatten(want)), err_msg=kind)


def _uuid_of(path, fmt):
    meta = processor.Runner.metadata_fetcher_parquet(processor.FileMeta("D", str(path), "Events")) if fmt == "parquet" \
        else processor.Runner.metadata_fetcher_root(60, False, {}, processor.FileMeta("D", str(path), "Events"))
    (fm,) = meta
    return fm.metadata["uuid"]


@pytest.mark.parametrize("kind", ["rntuple", "parquet"])
def test_futures_and_checkpoints(kind, converted, reference, tmp_path):
    fmt = "parquet" if kind == "parquet" else "root"
    ckpt = processor.SimpleCheckpointer(str(tmp_path / "ckpt"))
    out, metrics = _run(converted[kind], processor.FuturesExecutor(workers=2, status=False), fmt, checkpointer=ckpt)
    assert_matches_reference(out, reference)
    again, metrics2 = _run(converted[kind], processor.IterativeExecutor(status=False), fmt, checkpointer=ckpt)
    assert_matches_reference(again, reference)
    assert metrics2["chunks_from_checkpoint"] == metrics["chunks"] == 12


def test_dask_executor(converted, reference):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        for kind in ("rntuple", "parquet"):
            out, _ = _run(converted[kind], processor.DaskExecutor(client=client, status=False),
                          "parquet" if kind == "parquet" else "root")
            assert_matches_reference(out, reference)


def test_object_that_is_not_a_tree_is_a_file_error(tmp_path, reference):
    """A file whose 'Events' is a histogram: a clear file error, and skipbadfiles skips it."""
    bad = tmp_path / "histogram.root"
    with uproot.recreate(bad) as w:
        w["Events"] = np.histogram([1.0, 2.0], bins=3)
    with pytest.raises(NotATreeError, match=r"'Events' in .*histogram.root is a TH1D, neither a TTree nor an RNTuple"):
        _run({"Bad": bad})
    files = {**DATASETS, "Bad": bad}
    with pytest.warns(UserWarning, match="neither a TTree nor an RNTuple"):
        out, metrics = _run(files, skipbadfiles=True)
    assert_matches_reference(out, reference)
    assert [s["file"] for s in metrics["skipped"]] == [str(bad)]


def test_bad_parquet_is_arrow_invalid_and_skipped_only_when_named(tmp_path, reference):
    import pyarrow

    bad = tmp_path / "broken.parquet"
    bad.write_bytes(b"PAR1 this is not a parquet file")
    missing = tmp_path / "missing.parquet"
    with pytest.raises(pyarrow.ArrowInvalid, match="broken.parquet is not a readable Parquet file"):
        _run({"Bad": bad}, fmt="parquet")
    with pytest.raises(pyarrow.ArrowInvalid):  # as in coffea, True means OSError only
        _run({"Bad": bad}, fmt="parquet", skipbadfiles=True)
    with pytest.raises(FileNotFound, match="missing.parquet"):
        _run({"Missing": missing}, fmt="parquet")
    files = {**COFFEA_COPIES["parquet"], "Bad": bad, "Missing": missing}
    with pytest.warns(UserWarning):
        out, metrics = _run(files, fmt="parquet", skipbadfiles=(FileNotFoundError, pyarrow.ArrowInvalid))
    assert_matches_reference(out, reference)
    assert sorted(s["file"] for s in metrics["skipped"]) == sorted([str(bad), str(missing)])


def test_file_replaced_by_another_format_is_caught(tmp_path, converted):
    """The chunk's uuid is checked at processing time for every format."""
    path = tmp_path / "x.parquet"
    path.write_bytes(converted["parquet"]["DYJetsToLL"].read_bytes())
    items = list(processor.Runner(processor.IterativeExecutor(), chunksize=100, format="parquet").preprocess(
        {"DY": {"files": {str(path): "Events"}}}))
    path.write_bytes(converted["parquet"]["DoubleMuon"].read_bytes())
    from hpckit.events.reader import close_all

    close_all()
    with pytest.raises(ChunkError, match="changed since it was chunked"):
        processor.Runner(processor.IterativeExecutor(status=False, retries=0), format="parquet")(
            items, processor_instance=DimuonProcessor()
        )


def test_json_fileset_with_parquet(tmp_path, reference):
    fs = tmp_path / "fs.json"
    fs.write_text(json.dumps({ds: [str(p)] for ds, p in COFFEA_COPIES["parquet"].items()}))
    out = processor.Runner(processor.IterativeExecutor(status=False), format="parquet")(
        str(fs), processor_instance=DimuonProcessor()
    )
    assert_matches_reference(out, reference)  # no tree name needed for Parquet


def test_parsl_executor(converted, reference, tmp_path, parsl_tmp):
    parsl = pytest.importorskip("parsl")
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    def config(kind):  # a Config (and its HTEX) serves one DataFlowKernel: one per run
        return Config(
            executors=[HighThroughputExecutor(label="formats", address="127.0.0.1", max_workers_per_node=2,
                                              provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1,
                                                                  worker_init=f"export TMPDIR={parsl_tmp}"))],
            run_dir=str(tmp_path / kind), retries=0, strategy="none",
        )

    try:
        for kind in ("parquet",):  # one DFK (~half a minute each on 2 cores); Dask runs both formats
            out, _ = _run(converted[kind], processor.ParslExecutor(config=config(kind), status=False),
                          "parquet" if kind == "parquet" else "root")
            assert_matches_reference(out, reference)
    finally:
        try:
            parsl.dfk().cleanup()
        except Exception:  # noqa: BLE001 - no DFK left: nothing to clean
            pass
