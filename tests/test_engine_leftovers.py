"""Nothing left behind by an engine, whatever ends the run: `hpckit run --executor dask|parsl` SIGKILLed in the
middle leaves none of the processes it started (Dask nannies and workers; Parsl's interchange and its worker
pool, which double-forks away from its parent), and Parsl's runinfo/ lands next to the run's records, not in
the current directory. Real processes, looked at with psutil."""

from __future__ import annotations

import os
import shutil
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


def _engine(proc: subprocess.Popen, where: Path) -> list[psutil.Process]:
    """The run's descendants, and Parsl worker pools started for it (they double-fork away from it)."""
    found = {p.pid: p for p in _descendants(proc.pid)}
    for p in psutil.process_iter():
        cmd = " ".join(_cmd(p))
        if "process_worker_pool" in cmd and str(where) in cmd:
            found.setdefault(p.pid, p)
    return list(found.values())


def _engine_started(proc: subprocess.Popen, executor: str, where: Path) -> list[psutil.Process]:
    """Wait until the engine's processes run chunks (the worker pool for Parsl, workers for Dask)."""
    want = "process_worker_pool" if executor == "parsl" else "spawn"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if sum(want in " ".join(_cmd(p)) for p in _engine(proc, where)) >= (1 if executor == "parsl" else 2):
            time.sleep(3)  # let it get into a chunk
            return _engine(proc, where)
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
        started = _engine_started(proc, executor, tmp_path)
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


@pytest.mark.timeout(150)
def test_a_parsl_run_leaves_no_temporary_directory(tmp_path, fileset_path):
    """Parsl's worker pool starts a multiprocessing manager whose pymp-* directory nothing removes when the pool
    is ended: each `hpckit run --executor parsl` left one in /tmp. The local pool now gets a TMPDIR of its own,
    removed at the end, and a SIGKILLed run's is removed by the next: nothing is left in the caller's TMPDIR (a
    short one: the manager's socket path must fit in 108 bytes, which pytest's tmp_path may not)."""
    import tempfile

    tmpdir = Path(tempfile.mkdtemp(prefix="hk-", dir="/tmp"))
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid no process has now: the TMPDIR of a SIGKILLed run's pool, which the next run removes
    (tmpdir / f"hpckit-parsl-{gone.pid}-abcd1234" / "pymp-abcd1234").mkdir(parents=True)
    try:
        r = subprocess.run([sys.executable, "-m", "hpckit", "run", str(TESTS / "slow_dimuon.py"), "--fileset",
                            str(fileset_path), "--executor", "parsl", "--workers", "2",
                            "--output", str(tmp_path / "out" / "out.pkl"), "--no-status", "--no-plots"], cwd=tmp_path,
                           env=env(HPCKIT_TEST_SLEEP="0", TMPDIR=str(tmpdir)), capture_output=True, text=True, timeout=120)
        left = sorted(p.name for p in tmpdir.iterdir())
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not left, left


def _cmd(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend,when", [("dask", "waiting"), ("dask", "running"), ("parsl", "running")])
def test_ctrl_c_to_the_process_group_ends_a_launch_in_seconds(backend, when, tmp_path, fileset_path):
    """Ctrl-C in a terminal: SIGINT to the launch's whole process group (its engine's children too), while the
    launch waits for its first worker (its jobs just submitted) or while its workers run chunks. The launch
    ends within seconds with exit status 130, its batch jobs cancelled and none of its processes left.
    (Waiting: dask_jobqueue, imported by then, installs a SIGINT handler that exits with status 0.)"""
    from launch_util import run_jobs, squeue_ids
    from slurm_util import require_slurm

    require_slurm()
    run_dir = tmp_path / "run"
    # 30 s chunks: 16 chunks on 2 workers last 4 minutes, so the run is still going at the Ctrl-C on a slow machine
    proc = subprocess.Popen([sys.executable, "-m", "hpckit", "launch", str(TESTS / "slow_dimuon.py"), "--site",
                             "slurm-local", "--backend", backend, "--workers", "2", "--fileset", str(fileset_path),
                             "--chunksize", "5", "--run-dir", str(run_dir), "--worker-timeout", "90", "--no-status",
                             "--no-plots"], cwd=tmp_path, env=env(HPCKIT_TEST_SLEEP="30"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        if when == "waiting":  # the jobs are submitted; their workers take seconds to start and connect
            while time.monotonic() < deadline and proc.poll() is None and not run_jobs(run_dir):
                time.sleep(0.2)
        else:  # the run has started: its first record is written (after the analysis is loaded, chunks planned)
            records = run_dir / "chunks.jsonl"
            deadline += 60
            while time.monotonic() < deadline and proc.poll() is None and not (
                    records.exists() and records.stat().st_size):
                time.sleep(0.5)
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
    assert proc.returncode == 130 and "hpckit: interrupted" in err, err[-2000:]
    assert took < 45, f"the launch took {took:.0f} s to end after Ctrl-C"
    jobs = run_jobs(run_dir)
    assert jobs and not set(jobs) & squeue_ids(), jobs
    _, alive = psutil.wait_procs([k for k in kids if k.is_running()], timeout=10)
    left = [" ".join(_cmd(p))[:120] for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    for p in alive:
        p.kill()
    assert not left, left


def test_importing_dask_jobqueue_through_hpckit_keeps_the_sigint_handler():
    """dask_jobqueue installs a SIGINT handler calling sys.exit() when imported; hpckit's imports keep the
    caller's (a fresh interpreter: this one may have imported it already)."""
    code = ("import signal, sys\n"
            "from hpckit.core.extras import require_module\n"
            "signal.signal(signal.SIGINT, h := lambda *a: None)\n"
            "require_module('dask_jobqueue')\n"
            "assert 'dask_jobqueue.runner' in sys.modules\n"
            "sys.exit(0 if signal.getsignal(signal.SIGINT) is h else 3)\n")
    _fresh_python(code)


def _fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter; its stdout, once it exited 0."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_guardian_walk_finds_children_and_orphans_handed_to_the_subreaper():
    """The guardian's cheap walk (the kernel's per-thread children lists) sees what psutil's full scan
    sees: a direct child, a grandchild, and a process whose parent exited (double fork, as Parsl's
    LocalProvider does), which the subreaper keeps in the tree."""
    code = ("import os, subprocess, sys, psutil\n"
            "from hpckit.processor import lifeline\n"
            "assert lifeline._subreaper()\n"
            "direct = subprocess.Popen(['sh', '-c', 'sleep 60 & wait'])\n"
            "orphan = int(subprocess.run(['sh', '-c', 'sleep 60 >/dev/null 2>&1 & echo $!'], capture_output=True,"
            " text=True).stdout)\n"
            "import time; time.sleep(0.3)\n"
            "walk = set(lifeline._descendants(os.getpid()))\n"
            "full = {p.pid for p in psutil.Process().children(recursive=True)}\n"
            "grand = {p.pid for p in psutil.Process(direct.pid).children()}\n"
            "for pid in full: os.kill(pid, 9)\n"
            "print(direct.pid in walk, orphan in walk, len(grand) == 1 and grand <= walk, walk == full)\n")
    out = _fresh_python(code)
    assert out.split() == ["True"] * 4, out


@pytest.mark.slurm
@pytest.mark.slow
@pytest.mark.timeout(200)
def test_jobs_finds_a_launch_in_the_site_scratch_and_lists_it_finished(tmp_path, fileset_path):
    """A launch without --run-dir puts its run directory under the site's scratch (<scratch>/hpckit-runs-<user>);
    `hpckit jobs`, from another directory and without --runs, lists its jobs there, as ended by a finished
    launch (not CANCELLED, not "launch gone")."""
    import json as _json

    from launch_util import ANALYSIS, hpckit
    from slurm_util import require_slurm

    require_slurm()
    r = hpckit(["launch", str(ANALYSIS), "--site", "slurm-local", "--backend", "dask", "--workers", "1",
                "--fileset", str(fileset_path), "--worker-timeout", "90", "--no-status", "--no-plots"],
               cwd=tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    run_dir = Path(next(line.split("run dir ", 1)[1].strip() for line in r.stderr.splitlines() if "run dir " in line))
    try:
        assert not str(run_dir).startswith(str(tmp_path)), run_dir  # the site's scratch, not ./hpckit-runs
        jobs = (run_dir / "jobs.txt").read_text().split()
        other = tmp_path / "elsewhere"
        other.mkdir()
        listed = hpckit(["jobs"], cwd=other, timeout=120)
        assert listed.returncode == 0, listed.stderr
        rows = [line for line in listed.stdout.splitlines() if line.startswith(str(run_dir))]
        assert {row.split()[1] for row in rows} == set(jobs), listed.stdout
        assert all("launch finished" in row and "CANCELLED" not in row for row in rows), rows
        assert _json.loads((run_dir / "launch.json").read_text())["state"] == "finished"
    finally:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.mark.timeout(150)
def test_cancel_finds_a_local_engine_run_refuses_while_it_runs_and_ends_it_with_force(tmp_path, fileset_path):
    """`hpckit cancel DIR` on the output directory of a running `hpckit run --executor parsl`: refused (exit 1,
    saying why); with --force the run and every process of its engine end."""
    from launch_util import hpckit

    out = tmp_path / "out" / "out.pkl"
    out.parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "hpckit", "run", str(TESTS / "slow_dimuon.py"), "--fileset",
                             str(fileset_path), "--executor", "parsl", "--workers", "2", "--chunksize", "5",
                             "--output", str(out), "--no-status", "--no-plots"], cwd=tmp_path,
                            env=env(HPCKIT_TEST_SLEEP="3"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        started = _engine_started(proc, "parsl", tmp_path)
        refused = hpckit(["cancel", str(out.parent)], cwd=tmp_path, timeout=60)
        assert refused.returncode == 1 and "still running" in refused.stderr, refused.stderr
        assert proc.poll() is None
        forced = hpckit(["cancel", "--force", str(out.parent)], cwd=tmp_path, timeout=60)
        assert forced.returncode == 0 and "ended process" in forced.stderr, forced.stderr
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    _, alive = psutil.wait_procs([p for p in started if p.is_running()], timeout=15)
    left = [" ".join(_cmd(p))[:120] for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    for p in alive:
        p.kill()
    assert not left, left
