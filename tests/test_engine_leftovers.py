"""Nothing left behind by an engine, whatever ends the run: `hpckit run --executor dask|parsl` SIGKILLed in the
middle leaves none of the processes it started (Dask nannies and workers; Parsl's interchange and its worker
pool, which double-forks away from its parent), and Parsl's runinfo/ lands next to the run's records, not in
the current directory. Real processes, looked at with psutil."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from launch_util import env

TESTS = Path(__file__).resolve().parent


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _engine_started(proc: subprocess.Popen, executor: str) -> list[psutil.Process]:
    """Wait until the engine's processes run a chunk (the worker pool for Parsl, a worker for Dask)."""
    want = "process_worker_pool" if executor == "parsl" else "distributed"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        kids = _descendants(proc.pid)
        cmds = []
        for k in kids:
            try:
                cmds.append(" ".join(k.cmdline()))
            except psutil.Error:
                pass
        if sum(want in c or "spawn" in c for c in cmds) >= 2:
            time.sleep(2)  # let it get into a chunk
            return _descendants(proc.pid)
        time.sleep(0.3)
    raise AssertionError(f"{executor}: engine processes did not start: {proc.poll()}")


@pytest.mark.timeout(150)
@pytest.mark.parametrize("executor", ["dask", "parsl"])
def test_sigkilled_engine_run_leaves_no_process(executor, tmp_path, fileset_path):
    out = tmp_path / "out" / "out.pkl"
    out.parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "hpckit", "run", str(TESTS / "slow_dimuon.py"), "--fileset",
                             str(fileset_path), "--executor", executor, "--workers", "2", "--chunksize", "5",
                             "--output", str(out), "--no-status", "--no-plots"], cwd=tmp_path,
                            env=env(HPCKIT_TEST_SLEEP="3"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        started = _engine_started(proc, executor)
        if executor == "parsl":  # the worker pool double-forks: ask for it by its command line too
            started += [p for p in psutil.process_iter() if "process_worker_pool" in " ".join(_cmd(p))
                        and str(tmp_path) in " ".join(_cmd(p))]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert started
    alive = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    _, alive = psutil.wait_procs(alive, timeout=15)
    left = [" ".join(_cmd(p))[:120] for p in alive]
    for p in alive:  # leave nothing behind for the next test either
        p.kill()
    assert not left, f"processes left by a SIGKILLed `hpckit run --executor {executor}`: {left}"
    if executor == "parsl":
        assert (out.parent / "runinfo").is_dir() and not (tmp_path / "runinfo").exists()


def _cmd(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


@pytest.mark.slurm
@pytest.mark.timeout(200)
@pytest.mark.parametrize("backend", ["dask", "parsl"])
def test_ctrl_c_to_the_process_group_ends_a_launch_in_seconds(backend, tmp_path, fileset_path):
    """Ctrl-C in a terminal: SIGINT to the launch's whole process group (its engine's children too). The
    launch ends within seconds with exit status 130, its batch jobs cancelled and none of its processes left."""
    from launch_util import run_jobs, squeue_ids
    from slurm_util import require_slurm

    require_slurm()
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "hpckit", "launch", str(TESTS / "slow_dimuon.py"), "--site",
                             "slurm-local", "--backend", backend, "--workers", "2", "--fileset", str(fileset_path),
                             "--chunksize", "5", "--run-dir", str(run_dir), "--worker-timeout", "90", "--no-status",
                             "--no-plots"], cwd=tmp_path, env=env(HPCKIT_TEST_SLEEP="5"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120  # its jobs run; then a few seconds for the workers to take chunks
        while time.monotonic() < deadline and proc.poll() is None and len(_running(run_jobs(run_dir))) < 2:
            time.sleep(0.5)
        time.sleep(10)
        kids = _descendants(proc.pid)
        assert proc.poll() is None, proc.stderr.read()
        os.killpg(proc.pid, signal.SIGINT)
        t0 = time.monotonic()
        _, err = proc.communicate(timeout=90)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    assert took < 45, f"the launch took {took:.0f} s to end after Ctrl-C"
    jobs = run_jobs(run_dir)
    assert jobs and not set(jobs) & squeue_ids(), jobs
    _, alive = psutil.wait_procs([k for k in kids if k.is_running()], timeout=10)
    left = [" ".join(_cmd(p))[:120] for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    for p in alive:
        p.kill()
    assert not left, left


def _running(jobs: list[str]) -> list[str]:
    if not jobs:
        return []
    out = subprocess.run(["squeue", "-h", "-o", "%i %T", "-j", ",".join(jobs)], capture_output=True, text=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.endswith("RUNNING")]
