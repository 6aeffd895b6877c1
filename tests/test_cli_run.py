"""`hpckit run` writes the output, metrics JSON and plots, and reports errors plainly."""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import sys

import pytest
from conftest import EXAMPLES, REPO, assert_matches_reference


def _run(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "hpckit", *map(str, args)], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize("executor", ["iterative", "futures"])
def test_run_example_writes_everything(executor, tmp_path, reference):
    out = tmp_path / "res" / "out.pkl"
    r = _run("run", EXAMPLES / "dimuon.py", "--fileset", EXAMPLES / "fileset.json", "--executor", executor,
             "--workers", "2", "--chunksize", "7", "--output", out, "--no-status")
    assert r.returncode == 0, r.stderr
    assert_matches_reference(pickle.loads(out.read_bytes()), reference)
    metrics = json.loads((tmp_path / "res" / "out.metrics.json").read_text())
    assert metrics["chunks"] == 12 and metrics["entries"] == 80
    png = tmp_path / "res" / "out-mass.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "80 events in 12 chunks" in r.stderr and "Hz" in r.stderr and "kB read" in r.stderr
    import os
    import stat

    mask = os.umask(0)
    os.umask(mask)
    for f in (out, tmp_path / "res" / "out.metrics.json"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask  # the user's normal permissions, not 0600


@pytest.mark.timeout(200)
def test_run_with_dask_and_parsl_executors_and_runner_options(tmp_path, reference):
    """`run --executor dask` (its own LocalCluster) and `--executor parsl` (local HTEX), with --maxchunks and
    --schema in another case; the same Runner options as launch."""
    fs = EXAMPLES / "fileset.json"
    r = _run("run", EXAMPLES / "dimuon.py", "--fileset", fs, "--executor", "dask", "--workers", "2", "--chunksize",
             "7", "--schema", "NANOAOD", "--skipbadfiles", "--output", tmp_path / "d.pkl", "--no-status", "--no-plots")
    assert r.returncode == 0, r.stderr
    assert_matches_reference(pickle.loads((tmp_path / "d.pkl").read_bytes()), reference)
    r = _run("run", EXAMPLES / "dimuon.py", "--fileset", fs, "--executor", "parsl", "--chunksize", "7",
             "--maxchunks", "1", "--output", tmp_path / "p.pkl", "--no-status", "--no-plots", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((tmp_path / "p.metrics.json").read_text())
    assert metrics["chunks"] == 2  # one per dataset
    assert "2 chunks; 2 workers (parsl)" in r.stderr  # default workers: min(cores, chunks)


def test_run_reports_missing_file_plainly(tmp_path):
    fs = tmp_path / "fs.json"
    fs.write_text(json.dumps({"X": {"files": {str(tmp_path / "nope.root"): "Events"}}}))
    r = _run("run", EXAMPLES / "dimuon.py", "--fileset", fs, "--output", tmp_path / "o.pkl", "--no-status")
    assert r.returncode == 1
    assert f"file not found: {tmp_path / 'nope.root'}" in r.stderr.replace("\n", "")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "o.pkl").exists()


def test_run_unknown_processor_class(tmp_path):
    r = _run("run", EXAMPLES / "dimuon.py", "--fileset", EXAMPLES / "fileset.json", "--processor", "Nope",
             "--output", tmp_path / "o.pkl", "--no-status")
    assert r.returncode == 1 and "DimuonProcessor" in r.stderr


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGKILL, -9)], ids=["SIGTERM", "SIGKILL"])
def test_run_signal_leaves_no_pool_worker(sig, code, tmp_path):
    """SIGTERM ends `hpckit run` like Ctrl-C (exit 143); after SIGKILL its forked pool workers exit too."""
    import time

    import psutil

    from launch_util import env as launch_env

    env = launch_env(HPCKIT_TEST_SLEEP="3")
    proc = subprocess.Popen([sys.executable, "-m", "hpckit", "run", str(REPO / "tests" / "slow_dimuon.py"), "--fileset",
                             str(EXAMPLES / "fileset.json"), "--workers", "2", "--chunksize", "5", "--no-status",
                             "--output", str(tmp_path / "o.pkl")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        children: list = []
        while time.monotonic() < deadline and len(children) < 2:
            time.sleep(0.3)
            children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2, "the pool never started"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    if sig == signal.SIGTERM:
        assert "terminated (SIGTERM)" in err
    gone, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"pool workers left running: {[p.pid for p in alive]}"
