"""DaskExecutor on a real LocalCluster (process workers, loopback)."""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("distributed")

from distributed import Client, LocalCluster  # noqa: E402

from distributed_support import (  # noqa: E402
    CLEAN_COUNTS,
    USER_PROCESSOR_SOURCE,
    Exploding,
    SlowCounter,
    assert_same_output,
    children,
    kill_when,
    load_module_from,
    reference,
    run,
    wait_no_new_children,
)
from hpckit import processor  # noqa: E402
from hpckit.core.errors import ProcessorError  # noqa: E402

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def client():
    cluster = LocalCluster(
        processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    )
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.parametrize("chunksize", [7, 100_000])
def test_same_output_as_iterative(client, chunksize):
    out, metrics = run(processor.DaskExecutor(client=client, status=False), chunksize)
    assert_same_output(out, reference(chunksize))
    assert metrics["entries"] == 80
    assert metrics["retries"] == 0
    assert len(metrics["workers"]) >= 1
    assert {"bytesread", "columns", "entries", "chunks", "processtime", "walltime"} <= set(metrics)


def test_small_treereduction_and_no_compression(client):
    out, _ = run(processor.DaskExecutor(client=client, status=False, treereduction=2, compression=None), 3)
    assert_same_output(out, reference(7))


def test_processor_from_a_file_not_on_the_workers_path(client, tmp_path):
    path = tmp_path / "my_analysis_xyz.py"
    path.write_text(USER_PROCESSOR_SOURCE)
    module = load_module_from(path, "my_analysis_xyz")  # not importable by name on the workers
    assert str(tmp_path) not in sys.path
    try:
        out, _ = run(processor.DaskExecutor(client=client, status=False), 7, proc=module.UserCounter())
    finally:
        sys.modules.pop("my_analysis_xyz", None)
    assert out == {"n": 80, "muons": 18 + 84}
    # the workers really could not import it by name
    res = client.run(lambda: __import__("importlib").util.find_spec("my_analysis_xyz") is None)
    assert all(res.values())


def test_killed_worker_is_recovered_and_counted(client, tmp_path):
    pids = client.run(lambda: __import__("os").getpid())
    victim = sorted(pids.values())[0]
    thread, killed = kill_when(tmp_path, 4, lambda: victim)
    out, metrics = run(processor.DaskExecutor(client=client, status=False), 2, proc=SlowCounter(tmp_path))
    thread.join(5)
    assert killed == [victim]
    assert out == CLEAN_COUNTS
    assert metrics["entries"] == 80
    assert metrics["retries"] >= 1, metrics
    client.wait_for_workers(2, timeout=30)  # the nanny restarts it for the next tests


def test_a_rerun_early_in_a_long_run_is_still_counted(tmp_path):
    """A worker killed early, then many more transitions than distributed's debug log keeps (here 20): the
    re-run is still counted (it was read from that log, where it had fallen out)."""
    import dask

    with dask.config.set({"distributed.admin.low-level-log-length": 20}):
        cluster = LocalCluster(processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1",
                               dashboard_address=None)
        own = Client(cluster)
    try:
        pids = own.run(lambda: __import__("os").getpid())
        victim = sorted(pids.values())[0]
        thread, killed = kill_when(tmp_path, 3, lambda: victim)
        out, metrics = run(processor.DaskExecutor(client=own, status=False), 2, proc=SlowCounter(tmp_path, 0.05))
        thread.join(5)
        assert killed == [victim]
        assert out == CLEAN_COUNTS
        assert len(list(tmp_path.iterdir())) >= 40  # 40 chunks, then the lost ones again: far past 20 entries
        assert metrics["retries"] >= 1, metrics
    finally:
        own.close()
        cluster.close()


def test_processor_error_after_retries_and_owned_cluster_closed(tmp_path):
    before = children()
    executor = processor.DaskExecutor(status=False, retries=1, workers=2)
    with pytest.raises(ProcessorError) as info:
        run(executor, 40, proc=Exploding(tmp_path))
    message = str(info.value)
    assert "divided by zero on purpose" in message
    assert "chunk 0-40" in message and "ZeroDivisionError" in message
    assert len(list(tmp_path.iterdir())) >= 2  # tried again (retries=1) before giving up
    assert wait_no_new_children(before) == set()


def test_missing_distributed(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"hpckit\[dask\]"):
        processor.DaskExecutor()


def test_use_dataframes_needs_a_client():
    pytest.importorskip("dask.dataframe")
    with pytest.raises(ValueError, match="client"):
        processor.DaskExecutor(use_dataframes=True)


class _Frames(processor.ProcessorABC):
    def process(self, events):
        import awkward as ak
        import pandas as pd

        return pd.DataFrame(
            {"dataset": events.metadata["dataset"], "nmuon": ak.to_numpy(ak.num(events.Muon))}
        )

    def postprocess(self, accumulator):
        return accumulator


def test_use_dataframes(client):
    pytest.importorskip("dask.dataframe")
    out, metrics = run(processor.DaskExecutor(client=client, status=False, use_dataframes=True), 7, proc=_Frames())
    frame = out.compute()
    assert len(frame) == 80 and int(frame["nmuon"].sum()) == 18 + 84
    assert metrics["entries"] == 80
