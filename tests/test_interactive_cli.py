"""`hpckit up` / `hpckit run --on` / `hpckit down` / `hpckit jobs` on the real local Slurm.

One pool (module fixture) started by the real CLI, as a detached process; every command runs in a
subprocess like a user's shell. The pool registry ($HPCKIT_POOLS) is per test module, so parallel test
processes do not see each other's pools.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest
from conftest import DATASETS, assert_matches_reference, reference_dimuon
from launch_util import ANALYSIS, env, hpckit, load, squeue_ids
from slurm_util import require_slurm

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def pools(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pools")


def _fileset(d: Path) -> Path:
    p = d / "fileset.json"
    p.write_text(json.dumps({ds: {"files": {str(f): "Events"}} for ds, f in DATASETS.items()}))
    return p


@pytest.fixture(scope="module")
def pool(tmp_path_factory, pools):
    require_slurm()
    d = tmp_path_factory.mktemp("up")
    name = f"t-{uuid.uuid4().hex[:6]}"
    r = hpckit(["up", "--site", "slurm-local", "--workers", "2", "--name", name, "--idle-timeout", "10m",
                "--run-dir", str(d / "pool"), "--worker-timeout", "120"], cwd=d, timeout=200, HPCKIT_POOLS=str(pools))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == name
    assert f"hpckit run ANALYSIS --fileset FILESET --on {name}" in r.stderr and f"hpckit down {name}" in r.stderr
    assert "ssh -N -L" in r.stderr  # the dashboard's tunnel
    jobs = (d / "pool" / "jobs.txt").read_text().split()
    yield name, d / "pool"
    if (pools / f"{name}.json").exists():
        hpckit(["down", name], cwd=d, timeout=120, HPCKIT_POOLS=str(pools))
    assert not set(jobs) & squeue_ids()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_up_run_on_down(pool, pools, tmp_path):
    name, run_dir = pool
    st = json.loads((run_dir / "pool.json").read_text())
    assert st["state"] == "up" and st["pid"] != os.getpid()
    # the dashboard link (with its token) is in a 0600 file, never in the logs
    assert oct((run_dir / "dashboard").stat().st_mode & 0o777) == "0o600"
    token = (run_dir / "dashboard").read_text().split("token=")[1].strip()
    assert token not in (run_dir / "logs" / "daemon.log").read_text()
    assert token not in (run_dir / "launch.json").read_text()

    listed = hpckit(["jobs", "--runs", str(tmp_path / "none")], cwd=tmp_path, HPCKIT_POOLS=str(pools))
    assert listed.returncode == 0, listed.stderr
    line = next(ln for ln in listed.stdout.splitlines() if f"pool {name}" in ln)
    assert " up " in line and "slurm-local/dask" in line and " worker" in line  # 1 or 2 connected by now
    assert all(j in line for j in (run_dir / "jobs.txt").read_text().split())

    fileset = _fileset(tmp_path)
    ref = reference_dimuon()
    for i in range(2):
        r = hpckit(["run", str(ANALYSIS), "--fileset", str(fileset), "--on", name, "--chunksize", "10", "--no-plots",
                    "--output", str(tmp_path / f"out{i}.pkl")], cwd=tmp_path, timeout=120, HPCKIT_POOLS=str(pools))
        assert r.returncode == 0, r.stderr
        assert "80 events in 8 chunks" in r.stderr
        assert_matches_reference(load(tmp_path / f"out{i}.pkl"), ref)
    assert (run_dir / "runs" / "002" / "report.html").is_file()

    # a client whose environment differs (a distribution shadowed first on its path) is refused, by name
    shadow = tmp_path / "shadow"
    (shadow / "lz4-0.0.1.dist-info").mkdir(parents=True)
    (shadow / "lz4-0.0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: lz4\nVersion: 0.0.1\n")
    r = hpckit(["run", str(ANALYSIS), "--fileset", str(fileset), "--on", name, "--no-plots",
                "--output", str(tmp_path / "refused.pkl")], cwd=tmp_path, timeout=120, HPCKIT_POOLS=str(pools),
               PYTHONPATH=f"{shadow}{os.pathsep}{env()['PYTHONPATH']}")
    assert r.returncode == 1 and "lz4: workers started with" in r.stderr and "now 0.0.1" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "refused.pkl").exists()

    jobs = (run_dir / "jobs.txt").read_text().split()
    assert set(jobs) <= squeue_ids()
    down = hpckit(["down", name], cwd=tmp_path, timeout=120, HPCKIT_POOLS=str(pools))
    assert down.returncode == 0 and f"pool {name} ended" in down.stderr, down.stderr
    assert not set(jobs) & squeue_ids()
    again = hpckit(["run", str(ANALYSIS), "--fileset", str(fileset), "--on", name], cwd=tmp_path,
                   HPCKIT_POOLS=str(pools))
    assert again.returncode == 1 and f"no pool named {name!r}" in again.stderr


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_idle_pool_ends_itself(pools, tmp_path):
    require_slurm()
    name = f"idle-{uuid.uuid4().hex[:6]}"
    r = hpckit(["up", "--site", "slurm-local", "--backend", "parsl", "--workers", "1", "--name", name,
                "--idle-timeout", "3s", "--run-dir", str(tmp_path / "pool"), "--worker-timeout", "120"],
               cwd=tmp_path, timeout=200, HPCKIT_POOLS=str(pools))
    assert r.returncode == 0, r.stderr
    jobs = (tmp_path / "pool" / "jobs.txt").read_text().split()
    deadline = time.monotonic() + 90
    while json.loads((tmp_path / "pool" / "pool.json").read_text()).get("state") != "down" and \
            time.monotonic() < deadline:
        time.sleep(0.5)
    st = json.loads((tmp_path / "pool" / "pool.json").read_text())
    assert st["state"] == "down" and st["ended_by"] == "idle timeout", st
    assert jobs and not set(jobs) & squeue_ids()
    listed = hpckit(["jobs", "--runs", str(tmp_path / "none")], cwd=tmp_path, HPCKIT_POOLS=str(pools))
    assert f"pool {name}" not in listed.stdout
