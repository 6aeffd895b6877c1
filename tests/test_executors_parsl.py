"""ParslExecutor on a real HighThroughputExecutor (LocalProvider, loopback)."""

from __future__ import annotations

import sys

import pytest

parsl = pytest.importorskip("parsl")

import psutil  # noqa: E402
from parsl.config import Config  # noqa: E402
from parsl.executors import HighThroughputExecutor  # noqa: E402
from parsl.providers import LocalProvider  # noqa: E402

from distributed_support import (  # noqa: E402
    CLEAN_COUNTS,
    Exploding,
    SlowCounter,
    assert_same_output,
    children,
    kill_when,
    reference,
    run,
    wait_no_new_children,
)
from hpckit import processor  # noqa: E402
from hpckit.core.errors import ProcessorError  # noqa: E402

pytestmark = pytest.mark.timeout(180)


def make_config(run_dir, tmp, workers=2):
    return Config(
        executors=[
            HighThroughputExecutor(
                label="hpckit_test",
                address="127.0.0.1",
                max_workers_per_node=workers,
                heartbeat_period=2,
                heartbeat_threshold=10,
                provider=LocalProvider(init_blocks=1, min_blocks=0, max_blocks=1,
                                       worker_init=f"export TMPDIR={tmp}"),  # conftest.parsl_tmp
            )
        ],
        run_dir=str(run_dir),
        retries=0,
        strategy="none",
    )


@pytest.fixture(autouse=True)
def no_dfk_left():
    yield
    try:
        dfk = parsl.dfk()
    except Exception:
        return
    dfk.cleanup()


def test_documented_pattern_same_output(tmp_path, parsl_tmp):
    config = make_config(tmp_path, parsl_tmp)
    parsl.load(config)  # the user's documented pattern: load, then pass the same config
    for chunksize in (7, 100_000):
        out, metrics = run(processor.ParslExecutor(config=config, status=False), chunksize)
        assert_same_output(out, reference(chunksize))
        assert metrics["entries"] == 80 and metrics["retries"] == 0
    out, _ = run(processor.ParslExecutor(status=False, treereduction=2), 3)  # config=None: the loaded one
    assert_same_output(out, reference(7))
    assert parsl.dfk().config is config  # still loaded: not ours to clean up
    with pytest.raises(RuntimeError, match="different Parsl config"):
        run(processor.ParslExecutor(config=make_config(tmp_path / "other", parsl_tmp), status=False), 7)


def test_no_config_no_dfk():
    with pytest.raises(RuntimeError, match="parsl.load"):
        run(processor.ParslExecutor(status=False), 7)


def _pool_worker_pid(run_dir):
    """A worker process of the pool this test's DFK started (LocalProvider detaches the pool, so search
    every process for a ``process_worker_pool`` whose command line names our run directory)."""
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or ())
            if "process_worker_pool" in cmd and str(run_dir) in cmd:
                # its children: a multiprocessing Manager server, and the workers, which have loaded
                # hpckit, awkward and uproot: the largest one is a worker
                kids = sorted(proc.children(), key=lambda k: k.memory_info().rss)
                if len(kids) >= 2:
                    return kids[-1].pid
        except psutil.NoSuchProcess:
            continue
    return None


def test_killed_pool_worker_is_recovered_and_counted(tmp_path, parsl_tmp):
    markers = tmp_path / "markers"
    markers.mkdir()
    config = make_config(tmp_path, parsl_tmp)
    thread, killed = kill_when(markers, 4, lambda: _pool_worker_pid(tmp_path))
    out, metrics = run(processor.ParslExecutor(config=config, status=False), 2, proc=SlowCounter(markers))
    thread.join(5)
    assert len(killed) == 1
    assert out == CLEAN_COUNTS
    assert metrics["entries"] == 80
    assert metrics["retries"] >= 1, metrics


def test_processor_error_after_retries_and_dfk_cleaned_up(tmp_path, parsl_tmp):
    markers = tmp_path / "markers"
    markers.mkdir()
    before = children()
    with pytest.raises(ProcessorError) as info:
        run(processor.ParslExecutor(config=make_config(tmp_path, parsl_tmp), status=False, retries=1), 40, proc=Exploding(markers))
    message = str(info.value)
    assert "divided by zero on purpose" in message and "chunk 0-40" in message
    assert len(list(markers.iterdir())) >= 2
    with pytest.raises(Exception):
        parsl.dfk()  # the DFK this executor loaded is gone
    assert wait_no_new_children(before) == set()


class _CountUnpickles:
    """A worker check that drops a marker file each time it is unpickled (with the job it rides in)."""

    def __init__(self, marker_dir):
        self.marker_dir = str(marker_dir)

    def __setstate__(self, state):
        import os as _os
        import time as _time

        self.__dict__.update(state)
        open(_os.path.join(self.marker_dir, f"job-{_os.getpid()}-{_time.time_ns()}"), "w").close()

    def __call__(self):
        return None


def test_job_travels_once_per_worker_process(tmp_path, parsl_tmp):
    """The job (processor inside) is unpickled once per worker process, not once per task."""
    markers = tmp_path / "markers"
    markers.mkdir()
    config = make_config(tmp_path / "run", parsl_tmp)
    executor = processor.ParslExecutor(config=config, status=False)
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test file
    try:
        out, metrics = run(executor, 2, worker_check=_CountUnpickles(markers))  # 40 chunks
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert_same_output(out, reference(2))
    pids = {m.name.split("-")[1] for m in markers.iterdir()}
    assert len(pids) <= 2  # max_workers_per_node=2
    assert len(list(markers.iterdir())) == len(pids), sorted(m.name for m in markers.iterdir())
    assert metrics["chunks"] == 40 and "job_misses" in executor.stats
