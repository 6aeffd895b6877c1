"""Helpers shared by the distributed executor tests (Dask, Parsl, TaskVine)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path

import psutil

from hpckit import processor

ROOT = Path(__file__).resolve().parents[1]
FILESET = str(ROOT / "examples" / "fileset.json")
sys.path.insert(0, str(ROOT / "examples"))
from dimuon import DimuonProcessor  # noqa: E402


def run(executor, chunksize=7, proc=None, fileset=FILESET, **kwargs):
    runner = processor.Runner(executor, chunksize=chunksize, savemetrics=True, **kwargs)
    return runner(fileset, processor_instance=proc if proc is not None else DimuonProcessor())


_REFERENCE: dict = {}


def reference(chunksize):
    if chunksize not in _REFERENCE:
        _REFERENCE[chunksize] = run(processor.IterativeExecutor(status=False), chunksize)[0]
    return _REFERENCE[chunksize]


def assert_same_output(out, ref):
    assert out["cutflow"] == ref["cutflow"]
    # a growing category axis lists datasets in the order their first chunk was merged: compare by name
    assert sorted(out["mass"].axes[0]) == sorted(ref["mass"].axes[0])
    for ds in ref["mass"].axes[0]:
        assert (out["mass"][ds, :].values() == ref["mass"][ds, :].values()).all()


class SlowCounter(processor.ProcessorABC):
    """Counts events per dataset; sleeps per chunk and drops a marker file so a test knows chunks run."""

    def __init__(self, marker_dir, sleep=0.3):
        self.marker_dir = str(marker_dir)
        self.sleep = sleep

    def process(self, events):
        import os as _os
        import time as _time

        meta = events.metadata
        _time.sleep(self.sleep)
        name = f"{meta['dataset']}-{meta['entrystart']}-{meta['entrystop']}-{_os.getpid()}-{_time.time_ns()}"
        open(_os.path.join(self.marker_dir, name), "w").close()
        return {meta["dataset"]: {"events": len(events), "chunks": 1}}

    def postprocess(self, accumulator):
        return accumulator


class Exploding(processor.ProcessorABC):
    """Raises on every chunk; counts its attempts in marker files."""

    def __init__(self, marker_dir):
        self.marker_dir = str(marker_dir)

    def process(self, events):
        import os as _os
        import time as _time

        open(_os.path.join(self.marker_dir, f"try-{_os.getpid()}-{_time.time_ns()}"), "w").close()
        raise ZeroDivisionError("the processor divided by zero on purpose")

    def postprocess(self, accumulator):
        return accumulator


CLEAN_COUNTS = {"DYJetsToLL": {"events": 40, "chunks": 20}, "DoubleMuon": {"events": 40, "chunks": 20}}


def kill_when(marker_dir, n_markers, pick_pid, timeout=60.0):
    """In a thread: once ``n_markers`` chunks finished, SIGKILL the pid ``pick_pid()`` returns."""
    killed: list[int] = []

    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(os.listdir(marker_dir)) >= n_markers:
                pid = pick_pid()
                if pid:
                    psutil.Process(pid).kill()
                    killed.append(pid)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, killed


@contextlib.contextmanager
def vine_workers(workdir: Path, n: int = 2, exe: str = "vine_worker", env: dict | None = None, idle: int = 30):
    """``n`` one-core ``vine_worker``s dialing 127.0.0.1 on a free port (yielded), each in a session of its
    own: at the end the whole session is killed, since a worker's forked transfer server outlives the
    worker itself when only the worker is ended."""
    import signal
    import subprocess

    from xrootd_util import free_port

    port = free_port()
    if env is None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    procs = [subprocess.Popen([exe, "-t", str(idle), "--cores", "1", "--workdir", str(Path(workdir) / f"w{i}"),
                               "127.0.0.1", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
             for i in range(n)]
    try:
        yield port
    finally:
        for p in procs:  # SIGKILL: a SIGTERMed vine_worker can wait on its library process
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait(10)


def children() -> set[int]:
    from services import own_descendants

    return own_descendants()


def wait_no_new_children(before: set[int], timeout=20.0) -> set[int]:
    """Pids of processes started since ``before`` that are still alive after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        left = set()
        for pid in children() - before:
            try:
                proc = psutil.Process(pid)
                # multiprocessing's resource tracker is this process's own (one per process, started by
                # whichever test first needs it, kept until exit), not something the run left behind
                if proc.status() != psutil.STATUS_ZOMBIE and "multiprocessing.resource_tracker" not in " ".join(
                        proc.cmdline()):
                    left.add(pid)
            except psutil.NoSuchProcess:
                pass
        if not left or time.monotonic() > deadline:
            return {f"{pid}: {' '.join(psutil.Process(pid).cmdline())[:120]}" for pid in left if psutil.pid_exists(pid)}
        time.sleep(0.2)


def load_module_from(path: Path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


USER_PROCESSOR_SOURCE = '''
import awkward as ak
from hpckit import processor

class UserCounter(processor.ProcessorABC):
    def process(self, events):
        return {"n": len(events), "muons": int(ak.sum(ak.num(events.Muon)))}

    def postprocess(self, accumulator):
        return accumulator
'''
