"""End-to-end `hpckit launch` on the real single-node Slurm (scripts/slurm-local.sh start) and its PBS front end.

What these check: real worker jobs submitted with sbatch / Debian's torque qsub, real Dask and Parsl workers
connecting back over loopback, the Runner's output equal to `hpckit run --executor iterative`, and that
squeue lists no job of the run when the command returns (success, failing worker start, SIGINT).
What they do not check: multi-node placement, real PBS Pro `qstat -x`, HTCondor (no daemons here).
They skip, saying why, when Slurm is not up.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from launch_util import ANALYSIS, assert_same_output, env, hpckit, load, run_jobs, squeue_ids
from slurm_util import require_qsub, require_slurm

pytestmark = pytest.mark.slurm

CHUNK = "10"  # 40 events per file -> 8 chunks: several tasks per worker


@pytest.fixture(scope="module")
def iterative_out(tmp_path_factory) -> dict:
    """`hpckit run --executor iterative` on the same fileset and chunk size: the reference output."""
    d = tmp_path_factory.mktemp("iterative")
    fileset = _fileset(d)
    r = hpckit(["run", str(ANALYSIS), "--fileset", str(fileset), "--executor", "iterative", "--chunksize", CHUNK,
                "--no-status", "--no-plots", "--output", str(d / "ref.pkl")], cwd=d)
    assert r.returncode == 0, r.stderr
    return load(d / "ref.pkl")


def _fileset(d: Path) -> Path:
    from conftest import DATASETS

    fs = {ds: {"files": {str(p): "Events"}} for ds, p in DATASETS.items()}
    p = d / "fileset.json"
    p.write_text(json.dumps(fs))
    return p


def _assert_no_jobs_left(run_dir: Path) -> list[str]:
    jobs = run_jobs(run_dir)
    left = set(jobs) & squeue_ids()
    assert not left, f"jobs of the run still in squeue: {sorted(left)}"
    return jobs


@pytest.mark.timeout(150)
# one case per engine, each through one of the two front ends (sbatch, and qsub's PBS wrappers)
@pytest.mark.parametrize("site,backend", [("slurm-local", "dask"), ("pbs-local", "parsl")])
def test_launch_equals_iterative_and_leaves_no_job(site, backend, tmp_path, iterative_out):
    require_qsub() if site == "pbs-local" else require_slurm()
    run_dir = tmp_path / "run"
    r = hpckit(["launch", str(ANALYSIS), "--site", site, "--backend", backend, "--workers", "2",
                "--fileset", str(_fileset(tmp_path)), "--chunksize", CHUNK, "--run-dir", str(run_dir),
                "--worker-timeout", "90", "--no-status", "--no-plots"], cwd=tmp_path, timeout=140)
    assert r.returncode == 0, r.stderr
    assert_same_output(load(run_dir / "out.pkl"), iterative_out)
    jobs = _assert_no_jobs_left(run_dir)
    # 2 planned jobs; on a loaded machine a worker that misses its heartbeats is replaced by the keeper
    assert len(jobs) >= 2, f"expected 2 worker jobs, jobs.txt has {jobs}"
    record = json.loads((run_dir / "launch.json").read_text())
    assert record["mode"] == "batch" and record["backend"] == backend
    assert record["seconds_to_first_worker"] is not None and record["seconds_to_first_worker"] < record["seconds_to_result"]
    metrics = json.loads((run_dir / "out.metrics.json").read_text())
    assert metrics["chunks"] == 8 and metrics["chunks_processed"] == 8
    # the batch logs are in the run dir
    logs = list((run_dir / "logs").iterdir()) + list(run_dir.glob("runinfo/*/submit_scripts/*.stderr"))
    assert logs, "no batch log in the run dir"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["dask", "parsl"])
def test_worker_start_failure_shows_stderr_and_cancels(backend, tmp_path):
    """The launch stops at the failed jobs, with their stderr and the scheduler's state - well before its
    --worker-timeout (600 s, longer than this test may take), whatever the machine's load."""
    require_slurm()
    run_dir = tmp_path / "run"
    r = hpckit(["launch", str(ANALYSIS), "--site", "slurm-local", "--backend", backend, "--workers", "2",
                "--fileset", str(_fileset(tmp_path)), "--run-dir", str(run_dir), "--worker-timeout", "600",
                "--no-status", "--set", 'worker_init=["echo hpckit-test: no such environment >&2", "exit 3"]'],
               cwd=tmp_path, timeout=280)
    assert r.returncode == 1, r.stderr
    assert "hpckit-test: no such environment" in r.stderr  # the job's own stderr, in the error
    assert "FAILED" in r.stderr and "3:0" in r.stderr  # the scheduler's state and exit code
    assert run_jobs(run_dir), "the launch recorded no job"
    _assert_no_jobs_left(run_dir)


@pytest.mark.timeout(150)
# SIGTERM (a batch system's preemption); Ctrl-C of a launch is tests/test_engine_leftovers.py's
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143)], ids=["SIGTERM"])
def test_signal_cancels_jobs_and_rerun_resumes(sig, code, tmp_path, iterative_out):
    require_slurm()
    fileset = _fileset(tmp_path)
    ckpt = tmp_path / "ckpt"
    args = ["launch", str(Path(__file__).parent / "slow_dimuon.py"), "--site", "slurm-local", "--backend", "dask",
            "--workers", "2", "--fileset", str(fileset), "--chunksize", "5", "--checkpoint", str(ckpt),
            "--worker-timeout", "60", "--no-status", "--no-plots"]
    run1 = tmp_path / "run1"
    proc = subprocess.Popen([sys.executable, "-m", "hpckit", *args, "--run-dir", str(run1)], cwd=tmp_path,
                            env=env(HPCKIT_TEST_SLEEP="1.0"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(ckpt.rglob("*.ckpt")) if ckpt.exists() else []) < 3:
            time.sleep(0.2)
        assert ckpt.exists() and list(ckpt.rglob("*")), "no chunk was checkpointed within 60 s"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "batch jobs cancelled" in err
    assert run_jobs(run1)
    _assert_no_jobs_left(run1)

    run2 = tmp_path / "run2"
    r = hpckit([*args, "--run-dir", str(run2)], cwd=tmp_path, timeout=100, HPCKIT_TEST_SLEEP="0")
    assert r.returncode == 0, r.stderr
    metrics = json.loads((run2 / "out.metrics.json").read_text())
    assert metrics["chunks"] == 16
    assert 0 < metrics["chunks_from_checkpoint"] < 16, metrics
    assert metrics["chunks_processed"] == 16 - metrics["chunks_from_checkpoint"]
    assert_same_output(load(run2 / "out.pkl"), iterative_out)
    _assert_no_jobs_left(run2)


@pytest.mark.timeout(60)
def test_doctor_on_slurm_local(tmp_path):
    require_slurm()
    ok = hpckit(["doctor", "--site", "slurm-local"], cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "PASS partition: debug" in ok.stderr and "PASS scheduler commands" in ok.stderr
    bad = hpckit(["doctor", "--site", "slurm-local", "--set", "partition=nosuchpart"], cwd=tmp_path)
    assert bad.returncode == 1
    assert "FAIL partition" in bad.stderr and "known: debug" in bad.stderr and "fix: --set partition=" in bad.stderr


@pytest.mark.timeout(120)
def test_rejected_submission_fails_fast_with_the_schedulers_words(tmp_path):
    """--set partition=gpu on the local Slurm: sbatch refuses; the error says so once, first, in seconds."""
    require_slurm()
    run_dir = tmp_path / "run"
    r = hpckit(["launch", str(ANALYSIS), "--site", "slurm-local", "--backend", "dask", "--workers", "2",
                "--fileset", str(_fileset(tmp_path)), "--run-dir", str(run_dir), "--worker-timeout", "300",
                "--no-status", "--set", "partition=gpu"], cwd=tmp_path, timeout=110)
    assert r.returncode == 1, r.stderr
    error = r.stderr[r.stderr.index("error:"):]
    assert error.startswith("error: sbatch: error: invalid partition specified: gpu"), r.stderr
    assert r.stderr.count("invalid partition specified") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "worker connected within" not in r.stderr  # not the 300 s worker timeout
    assert not run_jobs(run_dir)


@pytest.mark.timeout(150)
@pytest.mark.parametrize("backend", ["dask"])  # Parsl's: tests/test_cluster.py, from the login node
def test_sigkill_then_hpckit_cancel_leaves_no_job(backend, tmp_path):
    """SIGKILL the launch mid-run (no teardown runs); `hpckit jobs` lists its jobs with the launch gone and
    `hpckit cancel RUN` removes them from squeue (only this run's job ids are checked); the helper processes it
    recorded (Parsl's interchange) are gone (the launch's guardian ends them; `hpckit cancel` would)."""
    require_slurm()
    run_dir = tmp_path / "run"
    args = ["launch", str(Path(__file__).parent / "slow_dimuon.py"), "--site", "slurm-local", "--backend", backend,
            "--workers", "2", "--fileset", str(_fileset(tmp_path)), "--chunksize", "5", "--run-dir", str(run_dir),
            "--worker-timeout", "60", "--no-status", "--no-plots"]
    proc = subprocess.Popen([sys.executable, "-m", "hpckit", *args], cwd=tmp_path, env=env(HPCKIT_TEST_SLEEP="5"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(set(run_jobs(run_dir)) & squeue_ids()) < 2:
            time.sleep(0.3)
        jobs = run_jobs(run_dir)
        assert len(jobs) == 2 and set(jobs) <= squeue_ids(), jobs
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert set(jobs) & squeue_ids(), "the jobs should outlive a SIGKILLed launch"
    listed = hpckit(["jobs", "--run", str(run_dir)], cwd=tmp_path, timeout=60)
    assert listed.returncode == 0 and all(j in listed.stdout for j in jobs) and "launch gone" in listed.stdout
    helpers = json.loads((run_dir / "launch.json").read_text()).get("helpers", [])
    if backend == "parsl":  # recorded; the launch's guardian has ended it already, or `hpckit cancel` does
        assert helpers, "interchange not recorded"
    r = hpckit(["cancel", str(run_dir)], cwd=tmp_path, timeout=60)
    assert r.returncode == 0 and ("cancelled" in r.stderr or "none of its" in r.stderr), r.stderr
    assert not set(jobs) & squeue_ids()
    time.sleep(1)
    for h in helpers:  # gone, another process, or a zombie (dead: a pytest worker that used hpckit.cluster in
        stat = Path(f"/proc/{h['pid']}/stat")  # this session is a child subreaper and adopts, unreaped, orphans)
        fields = stat.read_text().rsplit(")", 1)[1].split() if stat.exists() else None
        assert fields is None or fields[19] != h["start_ticks"] or fields[0] == "Z", h
