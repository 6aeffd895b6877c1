"""TaskVineExecutor with a real manager and ``vine_worker`` processes on loopback, where ndcctools imports.

ndcctools is not on PyPI (conda install -c conda-forge ndcctools): without it these tests skip, except
the one checking the error a user gets. CATALOG_HOST is forced to 127.0.0.1 so no cctools process here
ever talks to the public catalog server.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from distributed_support import (
    Exploding,
    assert_same_output,
    children,
    reference,
    run,
    vine_workers,
    wait_no_new_children,
)
from hpckit import processor
from hpckit.core.errors import ProcessorError

pytestmark = pytest.mark.timeout(600)  # task mode starts a python per chunk: slow on a loaded 2-core VM

try:
    import ndcctools.taskvine  # noqa: F401

    HAVE_VINE = shutil.which("vine_worker") is not None
    WHY = "vine_worker not on PATH"
except ImportError:
    HAVE_VINE = False
    WHY = "ndcctools (TaskVine) is not importable: conda install -c conda-forge ndcctools"

needs_vine = pytest.mark.skipif(not HAVE_VINE, reason=WHY)


def test_missing_ndcctools(monkeypatch):
    monkeypatch.setitem(sys.modules, "ndcctools", None)
    monkeypatch.setitem(sys.modules, "ndcctools.taskvine", None)
    with pytest.raises(ImportError, match=r"hpckit\[taskvine\].*ndcctools|ndcctools.*hpckit\[taskvine\]"):
        processor.TaskVineExecutor()


@needs_vine
def test_serverless_without_conda_pack_says_what_to_install(workers, tmp_path, monkeypatch):
    """ndcctools built from source (not conda-forge's) may lack conda_pack, which its library builder imports:
    one line naming the package and mode='tasks', not a traceback from inside ndcctools."""
    monkeypatch.setitem(sys.modules, "conda_pack", None)
    for name in [m for m in sys.modules if m.startswith("ndcctools.poncho")]:
        monkeypatch.delitem(sys.modules, name)
    executor = processor.TaskVineExecutor(port=workers, status=False, filepath=str(tmp_path))
    with pytest.raises(ImportError, match=r"needs conda_pack.*pip install conda-pack.*mode='tasks'"):
        run(executor, 40)


@pytest.fixture
def workers(monkeypatch, tmp_path):
    """Two one-core workers that connect to 127.0.0.1:<free port> and leave 30 s after going idle."""
    monkeypatch.setenv("CATALOG_HOST", "127.0.0.1")
    with vine_workers(tmp_path) as port:
        yield port


@needs_vine
@pytest.mark.parametrize("mode", ["serverless", "tasks"])
def test_same_output_as_iterative(workers, tmp_path, mode):
    for chunksize in (7, 100_000) if mode == "serverless" else (100_000,):
        executor = processor.TaskVineExecutor(port=workers, status=False, filepath=str(tmp_path), mode=mode)
        out, metrics = run(executor, chunksize)
        assert_same_output(out, reference(chunksize))
        assert metrics["entries"] == 80 and metrics["retries"] == 0
        assert executor.stats["engine_workers"]
        if mode == "serverless" and chunksize == 7:
            # 12 chunks and their merges ran inside at most one library process per worker (2 workers)
            assert 1 <= len(metrics["workers"]) <= 2, metrics["workers"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("hpckit-vine-")]  # staging removed


def test_bad_mode():
    if not HAVE_VINE:
        pytest.skip(WHY)
    with pytest.raises(ValueError, match="serverless"):
        processor.TaskVineExecutor(mode="lambda")


@needs_vine
def test_processor_error_after_retries(workers, tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    before = children()
    executor = processor.TaskVineExecutor(port=workers, status=False, retries=1, filepath=str(tmp_path))
    with pytest.raises(ProcessorError) as info:
        run(executor, 40, proc=Exploding(markers))
    assert "divided by zero on purpose" in str(info.value) and "chunk 0-40" in str(info.value)
    assert len(list(markers.iterdir())) >= 2
    assert wait_no_new_children(before, timeout=5) == set()  # the manager lives in this process: nothing left


@needs_vine
def test_many_files_are_planned_on_the_workers(workers, tmp_path, monkeypatch):
    """More than LIGHT_ABOVE files: planning runs as TaskVine tasks on the workers (the manager counts them
    before it closes), gives the chunks the driver alone gives, and the run on the same manager after it
    gives the events of every file."""
    import numpy as np
    import uproot

    from hpckit.processor.planning import LIGHT_ABOVE

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nothing planned from an earlier run's cache
    files = []
    for i in range(LIGHT_ABOVE + 4):
        path = tmp_path / f"f{i}.root"
        with uproot.recreate(path) as f:
            f.mktree("Events", {"event": np.int64})
            f["Events"].extend({"event": np.arange(5 + i, dtype=np.int64)})
        files.append(str(path))
    fileset = {"ds": {"treename": "Events", "files": files}}

    class Counted(processor.TaskVineExecutor):
        """Notes every task the manager hands back: its category and the worker that ran it."""

        done: list = []

        def _open(self):
            manager = super()._open()
            if not getattr(manager, "_counted", False):
                wait = manager.wait

                def counting(timeout):
                    t = wait(timeout)
                    if t is not None:
                        self.done.append((t.category, t.addrport))
                    return t

                manager.wait, manager._counted = counting, True
            return manager

    alone = list(processor.Runner(processor.IterativeExecutor(status=False), chunksize=4,
                                  persistent_metadata=False).preprocess(fileset))
    executor = Counted(port=workers, status=False, filepath=str(tmp_path))
    planned = list(processor.Runner(executor, chunksize=4, persistent_metadata=False).preprocess(fileset))
    assert planned == alone and len(alone) > len(files)
    assert executor.done and all(cat == "planning" and where for cat, where in executor.done), executor.done
    assert executor.manager is None  # closed with the planning

    class Events(processor.ProcessorABC):
        def process(self, events):
            return {"n": len(events)}

        def postprocess(self, acc):
            return acc

    out = processor.Runner(processor.TaskVineExecutor(port=workers, status=False, filepath=str(tmp_path)),
                           chunksize=4, persistent_metadata=False)(fileset, processor_instance=Events())
    assert out["n"] == sum(5 + i for i in range(len(files)))

    # a corrupt file among them, planned on a worker: skipped by name with skipbadfiles, else one error naming it
    bad = tmp_path / "corrupt.root"
    bad.write_bytes(Path(files[0]).read_bytes()[:300])
    with_bad = {"ds": {"treename": "Events", "files": files[:5] + [str(bad)] + files[5:]}}
    executor.done.clear()
    with pytest.warns(UserWarning, match="corrupt.root"):
        out = processor.Runner(Counted(port=workers, status=False, filepath=str(tmp_path)), chunksize=4,
                               persistent_metadata=False, skipbadfiles=True)(with_bad, processor_instance=Events())
    assert out["n"] == sum(5 + i for i in range(len(files)))
    assert any(cat == "planning" for cat, _ in executor.done)
    from hpckit.core.errors import FileAccessError

    with pytest.raises(FileAccessError, match="cannot open .*corrupt.root"):
        processor.Runner(processor.TaskVineExecutor(port=workers, status=False, filepath=str(tmp_path)), chunksize=4,
                         persistent_metadata=False)(with_bad, processor_instance=Events())


@needs_vine
@pytest.mark.timeout(120)
def test_a_worker_without_the_run_password_is_refused(monkeypatch, tmp_path):
    """The password hpckit makes for a launched (or `hpckit run`) manager (hpckit.engines.taskvine.new_password):
    a vine_worker that does not present it is never counted as connected (so it gets no task and returns no
    result to unpickle); one with ``--password`` is."""
    import signal
    import subprocess
    import time

    import ndcctools.taskvine as vine

    from hpckit.engines.taskvine import new_password

    monkeypatch.setenv("CATALOG_HOST", "127.0.0.1")
    password = new_password(tmp_path / "vine.password")
    manager = vine.Manager(port=0, run_info_path=str(tmp_path / "vine-run-info"))  # not in the current directory
    manager.set_password_file(str(password))

    def connected_within(seconds: float, *extra: str) -> bool:
        proc = subprocess.Popen(["vine_worker", "-t", "30", "--cores", "1", "--workdir", str(tmp_path / "w"), *extra,
                                 "127.0.0.1", str(manager.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                manager.wait(1)  # the manager takes in (or turns away) workers while it waits
                if manager.stats.workers_connected:
                    return True
            return False
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    assert not connected_within(8)
    assert connected_within(30, "--password", str(password))
