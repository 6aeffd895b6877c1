"""report.html as a person sees it: Debian's headless Chromium opens the report of a real launch on the
local Slurm and of a launch killed with SIGKILL (rebuilt with `hpckit report RUN_DIR`), takes a
screenshot and hands back the DOM it rendered and its console log. Checked: no console message at
error level (or any at all: the page has no script), every section present, one timeline row per
batch job / worker process, the screenshot is a real full-width PNG with content.

Chromium comes from scripts/chromium-setup.sh, run on first need by tests/services.py.
Set HPCKIT_TEST_SHOTS=DIR to keep the screenshots for a look.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import services
from launch_util import ANALYSIS, env, hpckit, run_jobs, squeue_ids
from slurm_util import require_slurm
from test_report import check_page

REPO = Path(__file__).resolve().parent.parent


def _fileset(d: Path) -> Path:
    from conftest import DATASETS

    fs = {ds: {"files": {str(p): "Events"}, "metadata": {"isData": ds == "DoubleMuon"}} for ds, p in DATASETS.items()}
    p = d / "fileset.json"
    p.write_text(json.dumps(fs))
    return p


def _chromium(args: list[str], profile: Path, timeout: float = 120) -> tuple[str, str]:
    """Run headless Chromium in its own process group; the whole group is ended afterwards."""
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # helpers (zygote, GPU process) it may have left
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.returncode == 0, f"chromium failed ({proc.returncode}): {err[-2000:]}"
    return out, err


def open_in_browser(html: Path, shot: Path, tmp: Path) -> tuple[str, list[str]]:
    """(the DOM Chromium rendered, its console messages); writes a full-page screenshot to ``shot``."""
    services.ensure("chromium")
    url = html.resolve().as_uri()
    dom, err = _chromium(["--dump-dom", url], tmp / "profile-dom")
    console = [line for line in err.splitlines() if ":CONSOLE" in line]
    _chromium([f"--screenshot={shot}", "--window-size=1100,3200", url], tmp / "profile-shot")
    keep = os.environ.get("HPCKIT_TEST_SHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    return dom, console


def check_screenshot(shot: Path) -> None:
    img = matplotlib.image.imread(shot)
    assert img.shape[1] == 1100 and img.shape[0] >= 1000, img.shape
    rgb = img[..., :3]
    assert rgb.std() > 0.05, "the screenshot is blank"
    # the status banner, the charts' blue and the plots: many distinct colours, not an error page
    assert len(np.unique((rgb[::4, ::4] * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 50


@pytest.mark.slurm
@pytest.mark.timeout(240)
def test_report_of_a_slurm_launch_in_chromium(tmp_path):
    require_slurm()
    run_dir = tmp_path / "run"
    r = hpckit(["launch", str(ANALYSIS), "--site", "slurm-local", "--backend", "dask", "--workers", "2",
                "--fileset", str(_fileset(tmp_path)), "--chunksize", "10", "--run-dir", str(run_dir),
                "--worker-timeout", "120", "--no-status"], cwd=tmp_path, timeout=220)
    assert r.returncode == 0, r.stderr
    jobs = run_jobs(run_dir)
    assert len(jobs) == 2 and not set(jobs) & squeue_ids()
    # the job state changes: each job seen submitted and ended; every job that ran a chunk seen running (on a
    # loaded machine the second job may still be pending when the first has done every chunk: then cancelled)
    states: dict[str, list[str]] = {}
    for line in (run_dir / "jobs.jsonl").read_text().splitlines():
        s = json.loads(line)
        states.setdefault(s["job"], []).append(s["state"])
    assert sorted(states) == sorted(jobs)
    chunks = [json.loads(x) for x in (run_dir / "chunks.jsonl").read_text().splitlines()]
    chunks = [c for c in chunks if c["kind"] == "chunk"]
    assert sum(c["events"] for c in chunks) == 80 and {c["job"] for c in chunks} <= set(jobs)
    worked = {c["job"] for c in chunks}
    assert worked
    for j, seq in states.items():
        assert seq[0] == "SUBMITTED" and ("RUNNING" in seq or j not in worked), (j, seq)
        assert seq[-1].split()[0] in ("COMPLETED", "CANCELLED", "GONE"), (j, seq)

    dom, console = open_in_browser(run_dir / "report.html", tmp_path / "report-slurm.png", tmp_path)
    assert console == [], console
    page = check_page(dom)
    assert page.status == "finished"
    assert sorted(page.worker_rows) == sorted(f"job {j}" for j in jobs)  # one row per worker job
    assert "slurm-local" in dom and "sha256:" in dom  # site and lock hash
    assert len(page.images) == 1 and page.images[0].startswith("data:image/png")
    check_screenshot(tmp_path / "report-slurm.png")


@pytest.mark.timeout(240)
def test_report_of_a_killed_run_in_chromium(tmp_path):
    """SIGKILL to the launch and its workers mid-run (what an OOM killer or a batch system's kill does),
    then `hpckit report RUN_DIR` rebuilds the page from what the run had written."""
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "hpckit", "launch", str(REPO / "tests" / "slow_dimuon.py"), "--site", "local",
            "--backend", "futures", "--workers", "2", "--fileset", str(_fileset(tmp_path)), "--chunksize", "5",
            "--run-dir", str(run_dir), "--no-status"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env(HPCKIT_TEST_SLEEP="1.0"), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    records = run_dir / "chunks.jsonl"
    try:
        deadline = time.monotonic() + 150
        done = 0
        while time.monotonic() < deadline and proc.poll() is None:
            if records.exists():
                done = records.read_text().count('"kind":"chunk"')
                if done >= 3:
                    break
            time.sleep(0.2)
        assert proc.poll() is None and done >= 3, f"the run ended or never got going: {proc.stderr.read()[-2000:]}"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    launch = json.loads((run_dir / "launch.json").read_text())
    assert launch["state"] == "running" and not (run_dir / "report.html").exists()

    r = hpckit(["report", str(run_dir)], cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "did not finish" in r.stderr
    chunks = [json.loads(x) for x in records.read_text().splitlines() if '"kind":"chunk"' in x]
    assert 3 <= len(chunks) < 16

    dom, console = open_in_browser(run_dir / "report.html", tmp_path / "report-killed.png", tmp_path)
    assert console == [], console
    page = check_page(dom)
    assert page.status == "killed"
    assert sorted(page.worker_rows) == sorted({c["worker"] for c in chunks})  # one row per worker process
    assert f"{len(chunks)} of 16 done" in dom
    assert "No histograms: the run did not finish" in dom
    check_screenshot(tmp_path / "report-killed.png")
