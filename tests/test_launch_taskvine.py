"""`hpckit launch --backend taskvine` on the local Slurm: a real TaskVine manager (the executor's) and a
`vine_factory -T slurm` subprocess that submits vine_worker jobs. Skips unless `ndcctools` imports
(TaskVine is not on PyPI: conda install -c conda-forge ndcctools) and Slurm is up. Checks output equal to
the reference and that no job of the factory is left in squeue (the factory's job ids are not visible to
hpckit, so this compares squeue before and after)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from launch_util import ANALYSIS, hpckit, load, squeue_ids
from slurm_util import require_slurm

pytestmark = pytest.mark.slurm


@pytest.mark.timeout(180)
def test_launch_taskvine_vine_factory_slurm(tmp_path, reference):
    pytest.importorskip("ndcctools.taskvine", reason="ndcctools (TaskVine) is not installed; "
                        "conda install -c conda-forge ndcctools")
    if shutil.which("vine_factory") is None:
        pytest.skip("vine_factory is not on PATH")
    require_slurm()
    from conftest import DATASETS, assert_matches_reference

    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({ds: {"files": {str(p): "Events"}} for ds, p in DATASETS.items()}))
    before = squeue_ids()
    run_dir = tmp_path / "run"
    r = hpckit(["launch", str(ANALYSIS), "--site", "slurm-local", "--backend", "taskvine", "--workers", "1",
                "--fileset", str(fileset), "--chunksize", "10", "--run-dir", str(run_dir), "--port", "9177",
                "--no-status", "--no-plots"], cwd=tmp_path, timeout=170,
               CATALOG_HOST=os.environ.get("CATALOG_HOST", "127.0.0.1"))
    assert r.returncode == 0, r.stderr
    assert_matches_reference(load(run_dir / "out.pkl"), reference)
    assert not (squeue_ids() - before), "vine_factory left worker jobs in squeue"
    jobs = (run_dir / "jobs.txt").read_text().split()
    assert jobs, "the factory's jobs were not recorded"
