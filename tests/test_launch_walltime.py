"""Runs outlive walltime, on the real local Slurm: 1-minute worker jobs (--set walltime=00:01:00), chunks of
~6 s, two walltimes of work in all. Workers retire between chunks before the walltime and
replacement jobs follow the work, so the run ends with the local run's output, no job killed by its time
limit and no job left in squeue; with and without --checkpoint, Dask and Parsl; chunks computed by later
generations of jobs.

Slow (about 1.5-2 minutes each); each test has its own run directory and job name, so they can run side by
side under pytest-xdist (they share the 8 CPUs of the local Slurm).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from launch_util import ANALYSIS, assert_same_output, chunk_records, hpckit, load, run_jobs, squeue_ids
from slurm_util import require_slurm

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SLOW = Path(__file__).parent / "slow_dimuon.py"
CHUNK = "4"  # 2 files x 40 events -> 20 chunks
# 20 chunks x 6 s = 120 s of work, 60 s per worker: a 1-minute job retires its worker after 30 +- 7 s
# (Site.lifetime: a 30 s margin), so every worker slot needs at least one replacement job
SLEEP = "6"


@pytest.fixture(scope="module")
def local_out(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("local")
    r = hpckit(["run", str(ANALYSIS), "--fileset", str(_fileset(d)), "--executor", "iterative", "--chunksize", CHUNK,
                "--no-status", "--no-plots", "--output", str(d / "ref.pkl")], cwd=d)
    assert r.returncode == 0, r.stderr
    return load(d / "ref.pkl")


def _fileset(d: Path) -> Path:
    from conftest import DATASETS

    p = d / "fileset.json"
    p.write_text(json.dumps({ds: {"files": {str(f): "Events"}} for ds, f in DATASETS.items()}))
    return p


def _killed_by_time_limit(run_dir: Path) -> list[str]:
    """Batch logs of the run where slurmstepd says it cancelled the job DUE TO TIME LIMIT (no accounting here:
    sacct cannot tell)."""
    return [str(p) for p in run_dir.rglob("*") if p.is_file() and p.suffix in (".err", ".stderr", ".out", ".stdout")
            and "DUE TO TIME LIMIT" in p.read_text(errors="replace")]


@pytest.mark.timeout(600)
# one case per engine (each ~2 walltimes long): Dask without checkpoints, Parsl with them
@pytest.mark.parametrize("backend,checkpoint", [("dask", False), ("parsl", True)],
                         ids=["dask-no-checkpoint", "parsl-checkpoint"])
def test_run_of_two_walltimes_with_one_minute_workers(backend, checkpoint, tmp_path, local_out):
    require_slurm()
    run_dir = tmp_path / "run"
    args = ["launch", str(SLOW), "--site", "slurm-local", "--backend", backend, "--workers", "2",
            "--fileset", str(_fileset(tmp_path)), "--chunksize", CHUNK, "--run-dir", str(run_dir),
            "--set", "walltime=00:01:00", "--worker-timeout", "120", "--no-status", "--no-plots"]
    if checkpoint:
        args += ["--checkpoint", str(tmp_path / "ckpt")]
    r = hpckit(args, cwd=tmp_path, timeout=580, HPCKIT_TEST_SLEEP=SLEEP)
    jobs = run_jobs(run_dir)
    assert not set(jobs) & squeue_ids(), "jobs of the run still in squeue"
    assert r.returncode == 0, r.stderr[-3000:]
    assert "KilledWorker" not in r.stderr
    assert_same_output(load(run_dir / "out.pkl"), local_out)
    assert len(jobs) > 2, f"no replacement job: {jobs}"  # one generation of workers cannot do it
    killed = _killed_by_time_limit(run_dir)
    assert not killed, f"jobs killed by their walltime: {killed}"
    metrics = json.loads((run_dir / "out.metrics.json").read_text())
    assert metrics["chunks"] == 20
    # the run outlived the first generation: a job submitted after the first two computed chunks (the
    # per-chunk records name the batch job that ran each)
    chunk_jobs = {rec["job"] for rec in chunk_records(run_dir)}
    assert chunk_jobs - set(jobs[:2]), f"every chunk ran in the first generation {jobs[:2]}: {chunk_jobs}"


@pytest.mark.timeout(300)
def test_launch_stops_when_no_worker_can_come(tmp_path):
    """The first worker job runs; every later one exits before its worker starts (worker_init fails once a
    file exists). Once the first worker has retired, replacing stops after a few such jobs, and the launch
    ends within a minute or so, saying what happened and how to resume, with no job left (today: replacements
    up to a cap of 10 x jobs, then it waits for ever)."""
    import subprocess
    import sys
    import time

    from launch_util import env

    require_slurm()
    run_dir, stop = tmp_path / "run", tmp_path / "stop"
    args = ["launch", str(SLOW), "--site", "slurm-local", "--backend", "dask", "--workers", "1",
            "--fileset", str(_fileset(tmp_path)), "--chunksize", CHUNK, "--run-dir", str(run_dir),
            "--set", "walltime=00:01:00", "--set", f'worker_init=["test ! -e {stop} || exit 3"]',
            "--worker-timeout", "120", "--no-status", "--no-plots"]
    proc = subprocess.Popen([sys.executable, "-m", "hpckit", *args], cwd=tmp_path, env=env(HPCKIT_TEST_SLEEP=SLEEP),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not list((run_dir / "logs").glob("*.err")
                                                                                if run_dir.exists() else []):
            time.sleep(0.5)
        time.sleep(5)  # the first job is past its worker_init
        stop.touch()
        _, err = proc.communicate(timeout=260)
    finally:
        if proc.poll() is None:
            proc.kill()
    jobs = run_jobs(run_dir)
    assert not set(jobs) & squeue_ids()
    assert proc.returncode == 1, err[-3000:]
    assert "no worker left and none can come" in err and "ended without a worker connecting" in err, err[-3000:]
    assert "--checkpoint" in err and "Traceback" not in err, err[-3000:]
    assert 2 <= len(jobs) <= 8, jobs
