"""The merged output is the same bytes whatever the engine, worker count or completion order: every
executor merges chunk results in one fixed tree over chunk indices (``MergeTree``), so float sums add in
the same order and growing category axes list datasets in fileset order.

Real engines on loopback: Iterative, Futures(2) and Futures(3) with random per-chunk delays, Dask
LocalCluster(2), Parsl HTEX(2), and TaskVine (2 ``vine_worker``s) where ndcctools imports.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from distributed_support import run
from hpckit import processor
from hpckit.core.errors import ProcessorError
from hpckit.processor.accumulate import MergeTree, accumulate, tree_accumulate

pytestmark = pytest.mark.timeout(300)

DATASETS = ["DYJetsToLL", "DoubleMuon"]  # the order of examples/fileset.json
CHUNKSIZE = 3  # 20 chunks: two 40-event files in chunks of 4 (split as coffea does)
EXAMPLE_FILESET = str(Path(__file__).resolve().parents[1] / "examples" / "fileset.json")


class WeightedMass(processor.ProcessorABC):
    """A weighted 3-axis histogram (dataset, leading-muon pt, eta) and float cutflow sums; optional random
    sleeps shuffle the completion order."""

    def __init__(self, jitter: float = 0.0):
        self.jitter = jitter

    def process(self, events):
        import random
        import time

        import awkward as ak
        import hist

        if self.jitter:
            time.sleep(random.uniform(0, self.jitter))
        ds = events.metadata["dataset"]
        mu = events.Muon[ak.num(events.Muon) >= 1]
        pt = ak.to_numpy(mu.pt[:, 0]).astype(np.float64)
        eta = ak.to_numpy(mu.eta[:, 0]).astype(np.float64)
        weight = 0.1 + np.abs(np.sin(pt * 1.7)) / 3.0  # non-trivial floats: sums depend on their order
        h = (
            hist.Hist.new.StrCat([], name="dataset", growth=True)
            .Reg(20, 0, 100, name="pt")
            .Reg(10, -2.5, 2.5, name="eta")
            .Weight()
        )
        h.fill(dataset=ds, pt=pt, eta=eta, weight=weight)
        return {"hist": h, "cutflow": {ds: {"events": len(events), "sumw": float(weight.sum()), "sumw_pt": float((weight * pt).sum())}}}

    def postprocess(self, accumulator):
        return accumulator


class FailsInAGroup(WeightedMass):
    """Fails on the second chunk of a file, events 4-8 (CHUNKSIZE 3 splits a 40-event file into 10 chunks of
    4, as coffea does): inside a merge group when chunks go a group a task."""

    def process(self, events):
        if events.metadata["entrystart"] == 4:
            raise ValueError("a chunk inside a merge group failed on purpose")
        return super().process(events)


def _independent(files: dict) -> dict:
    """Per dataset: sum of weights and number of events with a muon, with plain uproot + numpy."""
    import awkward as ak
    import uproot

    out = {}
    for ds, path in files.items():
        with uproot.open(path) as f:
            pt = f["Events"]["Muon_pt"].array()
        lead = ak.to_numpy(pt[ak.num(pt) >= 1][:, 0]).astype(np.float64)
        out[ds] = {"n": len(lead), "sumw": float((0.1 + np.abs(np.sin(lead * 1.7)) / 3.0).sum())}
    return out


def _pickled(executor, proc=None) -> bytes:
    out, _ = run(executor, CHUNKSIZE, proc=proc or WeightedMass())
    return pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)


@pytest.fixture(scope="module")
def baseline():
    return _pickled(processor.IterativeExecutor(status=False))


def test_tree_shape_matches_dask_reduction():
    """MergeTree groups exactly as the Dask graph (tree_reduce) does, whatever order results arrive in."""
    from hpckit.processor.executors._remote import tree_reduce

    rng = np.random.default_rng(1)
    for n in (1, 2, 19, 20, 21, 41, 400, 401):
        expected = tree_reduce(list(range(n)), lambda group, level: ("m", tuple(group)), 20)
        tree = MergeTree(n, 20)
        todo = [(0, i, i) for i in rng.permutation(n)]
        while todo:
            level, index, value = todo.pop(rng.integers(len(todo)))
            for (lv, ix), group in tree.put(level, index, value):
                todo.append((lv, ix, ("m", tuple(group))))
        assert tree.done and tree.root == expected, n


def test_float_sums_follow_chunk_order_not_arrival_order():
    values = [{"s": float(x)} for x in np.random.default_rng(2).normal(size=997) * 1e3]
    in_order = tree_accumulate(values, len(values))
    assert pickle.dumps(in_order) == pickle.dumps(tree_accumulate(list(values), len(values)))
    # a plain left fold in another order gives other bits: the tree is what makes results stable
    assert accumulate(values[::-1])["s"] != in_order["s"] or accumulate(values)["s"] != in_order["s"]


def test_physics_and_dataset_order(baseline):
    out = pickle.loads(baseline)
    assert list(out["hist"].axes["dataset"]) == DATASETS
    assert list(out["cutflow"]) == DATASETS
    data = Path(__file__).resolve().parents[1] / "data"
    ref = _independent({"DYJetsToLL": data / "nano_dy.root", "DoubleMuon": data / "nano_dimuon.root"})
    for ds in DATASETS:
        h = out["hist"][{"dataset": ds}]
        assert np.isclose(h.sum(flow=True).value, ref[ds]["sumw"], rtol=1e-12)
        assert np.isclose(out["cutflow"][ds]["sumw"], ref[ds]["sumw"], rtol=1e-12)


def test_iterative_twice(baseline):
    assert _pickled(processor.IterativeExecutor(status=False)) == baseline


@pytest.mark.parametrize("workers,merging", [(2, False), (3, True)])
def test_futures_random_completion_order(baseline, workers, merging):
    executor = processor.FuturesExecutor(workers=workers, status=False, merging=merging)
    assert _pickled(executor, WeightedMass(jitter=0.05)) == baseline


@pytest.mark.parametrize("pool,merging", [(None, False), (None, True), ("threads", False), ("pickled", False)])
def test_futures_merge_groups_run_whole_on_workers_give_the_same_bytes(pool, merging):
    """Tiny chunks sent a level-0 merge group a task (``group_chunks``), folded on the worker: the same
    bytes as Iterative with the same tree (width 4 here: 5 groups of the 20 chunks, finishing out of
    order with the random delays)."""
    import concurrent.futures as cf

    same_tree = _pickled(processor.IterativeExecutor(status=False, treereduction=4))
    pools = {None: None, "threads": cf.ThreadPoolExecutor, "pickled": cf.ProcessPoolExecutor}
    executor = processor.FuturesExecutor(workers=3, status=False, merging=merging, treereduction=4,
                                         group_chunks=True, pool=pools[pool])
    out, metrics = run(executor, CHUNKSIZE, proc=WeightedMass(jitter=0.02))
    assert pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL) == same_tree
    assert executor.stats["grouped_chunks"] == metrics["chunks"] == 20
    assert same_tree != _pickled(processor.IterativeExecutor(status=False))  # the tree is what fixes the bytes


def test_resumed_from_checkpoints_is_byte_identical(baseline, tmp_path):
    """A run that stopped after some chunks (here: every third one checkpointed) and is resumed gives
    the same bytes as one that never stopped: checkpointed chunks merge at their place in the tree."""
    ckpt = processor.SimpleCheckpointer(tmp_path / "ck")
    runner = processor.Runner(processor.IterativeExecutor(status=False), chunksize=CHUNKSIZE, checkpointer=ckpt)
    items = list(runner.preprocess(EXAMPLE_FILESET))
    runner(items[::3], processor_instance=WeightedMass())  # the interrupted run
    resumed = processor.Runner(processor.FuturesExecutor(workers=2, status=False), chunksize=CHUNKSIZE,
                               checkpointer=ckpt, savemetrics=True)
    out, metrics = resumed(EXAMPLE_FILESET, processor_instance=WeightedMass())
    assert metrics["chunks_from_checkpoint"] == len(items[::3]) and metrics["chunks"] == len(items)
    assert pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL) == baseline


class _SeenOnDriver(processor.SimpleCheckpointer):
    """Counts the loads and saves made through this very object: a worker's unpickled copy would count in
    its own process, so these counts are the driver's."""

    def __init__(self, path):
        super().__init__(path)
        self.saved, self.loaded = 0, 0

    def save(self, result, item, fingerprint):
        self.saved += 1
        super().save(result, item, fingerprint)

    def load(self, item, fingerprint):
        got = super().load(item, fingerprint)
        self.loaded += got is not None
        return got


def _checkpoints_on_the_driver(executor, tmp_path, baseline) -> None:
    """``shared_filesystem=False`` (workers that cannot see the checkpoint directory: a site without a shared
    file system): the driver saves every chunk as its result passes, and a resumed run (every third chunk
    saved) loads them there, sends only the others out and gives the uninterrupted run's bytes."""
    executor.shared_filesystem = False
    ckpt = _SeenOnDriver(tmp_path / "ck-driver")
    runner = processor.Runner(executor, chunksize=CHUNKSIZE, checkpointer=ckpt, savemetrics=True)
    items = list(runner.preprocess(EXAMPLE_FILESET))
    runner(items[::3], processor_instance=WeightedMass())  # the interrupted run
    assert ckpt.saved == len(items[::3]) and ckpt.loaded == 0
    assert len(list((tmp_path / "ck-driver").rglob("*.ckpt"))) == len(items[::3])
    out, metrics = runner(EXAMPLE_FILESET, processor_instance=WeightedMass())
    assert ckpt.loaded == metrics["chunks_from_checkpoint"] == len(items[::3]) and metrics["chunks"] == len(items)
    assert ckpt.saved == len(items)  # the rest saved on the second run, nothing twice
    assert pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL) == baseline


def test_checkpoints_on_the_driver_need_an_executor_that_can(tmp_path):
    """An executor without driver checkpoints, told its workers cannot see the directory, is refused in one
    line before any chunk runs (its workers would lose or fail every checkpoint)."""
    ex = processor.FuturesExecutor(workers=1, status=False, shared_filesystem=False)
    runner = processor.Runner(ex, chunksize=CHUNKSIZE, checkpointer=processor.SimpleCheckpointer(tmp_path / "ck"))
    with pytest.raises(ValueError, match="FuturesExecutor has workers that cannot see the checkpoint directory"):
        runner(EXAMPLE_FILESET, processor_instance=WeightedMass())
    assert not list((tmp_path / "ck").rglob("*.ckpt"))


WINDOW = 4  # chunks in flight at most, in the windowed runs below (28 chunks)


def _dask_chunks_in_flight_max(dask_scheduler=None, since: int = 0) -> int:  # runs on the scheduler
    """The most chunk tasks the scheduler held at once between submission and result, from its own
    transition log: a task enters when it first goes from ``released`` to be run, leaves at ``memory``."""
    entered, left, now, most = set(), set(), 0, 0
    for key, start, finish, *_ in list(dask_scheduler.transition_log)[since:]:
        if not (isinstance(key, str) and "-chunk-" in key):
            continue
        if start == "released" and finish != "forgotten" and key not in entered:
            entered.add(key)
            now += 1
        elif finish == "memory" and key not in left:
            left.add(key)
            now -= 1
        most = max(most, now)
    return most


def test_dask(baseline, tmp_path):
    """Byte-identical to Iterative; with a small window the scheduler never holds more chunk tasks than
    the window (observed in the scheduler's own transition log), and the bytes are the same; the files were
    planned by tasks on the workers; checkpoints kept on the driver resume to the same bytes."""
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None) as cl:
        with Client(cl) as client:
            assert _pickled(processor.DaskExecutor(client=client, status=False), WeightedMass(jitter=0.05)) == baseline
            since = client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.transition_log))
            windowed = processor.DaskExecutor(client=client, status=False, window=WINDOW)
            assert _pickled(windowed, WeightedMass(jitter=0.05)) == baseline
            seen = client.run_on_scheduler(_dask_chunks_in_flight_max, since=since)
            planned_on = client.run_on_scheduler(_dask_planning_tasks)
            # tiny chunks a merge group a task (width 4: 5 group tasks), folded on the workers: the same bytes
            same_tree = _pickled(processor.IterativeExecutor(status=False, treereduction=4))
            grouped = processor.DaskExecutor(client=client, status=False, treereduction=4, group_chunks=True)
            out, metrics = run(grouped, CHUNKSIZE, proc=WeightedMass(jitter=0.02))
            assert pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL) == same_tree
            assert grouped.stats["grouped_chunks"] == metrics["chunks"] == 20
            _checkpoints_on_the_driver(processor.DaskExecutor(client=client, status=False), tmp_path, baseline)
    assert 2 <= seen <= WINDOW and windowed.stats["in_flight_max"] <= WINDOW
    assert planned_on  # the files' metadata was read by planning tasks on the workers, not in the driver


def _dask_planning_tasks(dask_scheduler=None) -> set:  # runs on the scheduler
    """Planning tasks (``hpckit-...-meta-N``) that a worker ran (processing -> memory)."""
    return {key for key, start, finish, *_ in dask_scheduler.transition_log
            if isinstance(key, str) and "-meta-" in key and (start, finish) == ("processing", "memory")}


def test_parsl(baseline, tmp_path, parsl_tmp):
    parsl = pytest.importorskip("parsl")
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    config = Config(
        executors=[HighThroughputExecutor(label="det", address="127.0.0.1", max_workers_per_node=2,
                                          provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1,
                                                                worker_init=f"export TMPDIR={parsl_tmp}"))],
        run_dir=str(tmp_path), retries=0, strategy="none",
    )
    dfk = parsl.load(config)
    try:
        items = list(processor.Runner(processor.ParslExecutor(config=config, status=False), chunksize=CHUNKSIZE,
                                      persistent_metadata=False).preprocess(EXAMPLE_FILESET))
        planning_apps = dfk.task_count  # the files' metadata was read by apps on the workers
        got = _pickled(processor.ParslExecutor(config=config, status=False), WeightedMass(jitter=0.05))
        with _ParslChunksInFlight(dfk) as seen:
            windowed = _pickled(processor.ParslExecutor(config=config, status=False, window=WINDOW), WeightedMass(jitter=0.05))
        # tiny chunks a merge group an app (width 4: 5 group apps), folded on the workers: the same bytes
        grouped = processor.ParslExecutor(config=config, status=False, treereduction=4, group_chunks=True)
        grouped_out, metrics = run(grouped, CHUNKSIZE, proc=WeightedMass(jitter=0.02))
        with pytest.raises(ProcessorError) as failed:  # a chunk failing inside a group is named
            run(processor.ParslExecutor(config=config, status=False, treereduction=4, group_chunks=True, retries=0),
                CHUNKSIZE, proc=FailsInAGroup())
        _checkpoints_on_the_driver(processor.ParslExecutor(config=config, status=False), tmp_path, baseline)
    finally:
        dfk.cleanup()
    assert got == baseline and windowed == baseline
    same_tree = _pickled(processor.IterativeExecutor(status=False, treereduction=4))
    assert pickle.dumps(grouped_out, protocol=pickle.HIGHEST_PROTOCOL) == same_tree
    assert grouped.stats["grouped_chunks"] == metrics["chunks"] == 20
    assert "failed on purpose" in str(failed.value) and "chunk 4-8 of" in str(failed.value)
    alone = list(processor.Runner(processor.IterativeExecutor(status=False), chunksize=CHUNKSIZE,
                                  persistent_metadata=False).preprocess(EXAMPLE_FILESET))
    assert planning_apps >= 1 and items == alone
    assert 2 <= seen.most <= WINDOW  # all 28 at once before the window


class _ParslChunksInFlight:
    """Samples the DataFlowKernel's task table (every 2 ms, in a thread) for chunk apps not finished yet:
    Parsl drops a task's record before its future resolves, so the table holds exactly those in flight."""

    def __init__(self, dfk):
        import threading

        self.dfk, self.most, self._stop = dfk, 0, threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            chunks = sum(1 for t in list(self.dfk.tasks.values()) if t.get("func_name") == "run_cached")
            self.most = max(self.most, chunks)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _have_vine() -> bool:
    try:
        import ndcctools.taskvine  # noqa: F401
    except ImportError:
        return False
    return shutil.which("vine_worker") is not None


@pytest.mark.skipif(not _have_vine(), reason="ndcctools (TaskVine) is not importable: conda install -c conda-forge ndcctools")
def test_taskvine(baseline, tmp_path, monkeypatch):
    monkeypatch.setenv("CATALOG_HOST", "127.0.0.1")
    from distributed_support import vine_workers

    with vine_workers(tmp_path) as port:
        executor = processor.TaskVineExecutor(port=port, status=False, filepath=str(tmp_path))
        assert _pickled(executor, WeightedMass(jitter=0.05)) == baseline
        _checkpoints_on_the_driver(processor.TaskVineExecutor(port=port, status=False, filepath=str(tmp_path)),
                                   tmp_path, baseline)
