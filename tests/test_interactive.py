"""`hpckit.cluster(...)`: workers that stay up on the real local Slurm while runs come and go.

One standing Dask pool (module fixture, 2 batch jobs) serves the tests that only run on it: several Runner
calls on the same worker processes, an edited processor (and helper module) running its new code, an
environment change refused with the package list, the dashboard refused without its token and nothing
listening off loopback. Separate owner processes check that SIGKILL / SIGTERM of the owner still leave no
job in squeue (the pool's lifeline cancels them). TaskVine's pool is code only (ndcctools is not installed).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from conftest import DATASETS, assert_matches_reference, reference_dimuon
from launch_util import ANALYSIS, env, squeue_ids
from slurm_util import require_slurm

pytestmark = pytest.mark.slurm


def _fileset(d: Path) -> Path:
    p = d / "fileset.json"
    p.write_text(json.dumps({ds: {"files": {str(f): "Events"}} for ds, f in DATASETS.items()}))
    return p


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    require_slurm()
    import hpckit

    run_dir = tmp_path_factory.mktemp("pool") / f"pool-{uuid.uuid4().hex[:6]}"
    # a directory on the workers' PYTHONPATH (batch jobs inherit this process's environment), so a helper
    # module written there later could be imported - and kept - by the workers themselves
    shared = tmp_path_factory.mktemp("shared")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(shared)] + ([old] if old else []))
    try:
        c = hpckit.cluster("slurm-local", backend="dask", workers=2, run_dir=run_dir, status=False,
                           worker_timeout=120)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = old
    c.shared = shared
    jobs = c.job_ids()
    try:
        yield c
    finally:
        c.close()
    assert not set(jobs) & squeue_ids(), "closing the cluster left jobs in squeue"
    assert json.loads((run_dir / "launch.json").read_text())["state"] == "down"


def _wait_workers(c, n: int, timeout: float = 90) -> list[dict]:
    deadline = time.monotonic() + timeout
    while len(c.workers()) < n and time.monotonic() < deadline:
        time.sleep(0.5)
    return c.workers()


@pytest.mark.timeout(240)
def test_runs_reuse_the_same_workers(pool, tmp_path):
    from hpckit import processor
    from hpckit.analysis import load_processor

    before = _wait_workers(pool, 2)
    assert len(before) == 2 and all(w["pid"] for w in before), before
    ex = pool.executor
    outs = []
    for _ in range(2):
        runner = processor.Runner(executor=ex, chunksize=10, savemetrics=True)
        out, metrics = runner(str(_fileset(tmp_path)), treename="Events", processor_instance=load_processor(ANALYSIS))
        outs.append(out)
        assert metrics["chunks"] == 8
    after = pool.workers()
    assert {(w["address"], w["pid"]) for w in after} == {(w["address"], w["pid"]) for w in before}
    ref = reference_dimuon()
    for out in outs:
        assert_matches_reference(out, ref)
    # the pool's record says what runs where: `hpckit jobs` and `hpckit cancel` read it
    record = json.loads((pool.run_dir / "launch.json").read_text())
    assert record["state"] == "up" and record["process"]["pid"] == os.getpid()
    assert set(pool.job_ids()) <= squeue_ids() and len(pool.job_ids()) >= 2
    html = pool._repr_html_()
    assert "up" in html and all(j in html for j in pool.job_ids()) and str(before[0]["pid"]) in html


_V = """
from hpckit import processor
import {helper} as helper

class Marked(processor.ProcessorABC):
    def process(self, events):
        return {{"mark": {{helper.MARK + "{mark}": len(events)}}}}

    def postprocess(self, accumulator):
        return accumulator
"""


@pytest.mark.timeout(240)
def test_edited_processor_and_helper_run_new_code(pool, tmp_path):
    """Edit the analysis file and the helper module it imports between two runs on the same workers:
    the second run returns what the new code computes, nothing stale from the client's or the workers'
    sys.modules. The helper sits in a directory on the workers' PYTHONPATH too, so a worker that imported
    it by name would keep serving the first version (hpckit sends it by value, like the analysis)."""
    helper = f"cuts_{uuid.uuid4().hex[:8]}"
    analysis = tmp_path / "marked.py"
    shared = pool.shared
    (shared / f"{helper}.py").write_text('MARK = "old-helper/"\n')
    analysis.write_text(_V.format(helper=helper, mark="v1"))
    sys.path.insert(0, str(shared))
    try:
        fileset = _fileset(tmp_path)
        out1 = pool.run(analysis, fileset, chunksize=20, schema="base", plots=False, status=False)
        time.sleep(0.01)
        (shared / f"{helper}.py").write_text('MARK = "new-helper/"\n')
        analysis.write_text(_V.format(helper=helper, mark="v2"))
        out2 = pool.run(analysis, fileset, chunksize=20, schema="base", plots=False, status=False)
    finally:
        sys.path.remove(str(shared))
    assert out1["mark"] == {"old-helper/v1": 80}
    assert out2["mark"] == {"new-helper/v2": 80}
    runs = sorted((pool.run_dir / "runs").iterdir())
    assert [p.name for p in runs][-2:] == [f"{len(runs) - 1:03d}", f"{len(runs):03d}"]
    assert (runs[-1] / "out.pkl").is_file() and (runs[-1] / "report.html").is_file()


@pytest.mark.timeout(120)
def test_environment_change_is_refused_with_the_packages(pool, tmp_path):
    """A distribution shadowed on sys.path (a real install as the client sees it: first on sys.path wins)
    changes the client's environment after the workers started: the next run is refused, naming it."""
    from hpckit import processor
    from hpckit.analysis import load_processor
    from hpckit.launch.session import EnvironmentChanged

    shadow = tmp_path / "shadow"
    (shadow / "lz4-0.0.1.dist-info").mkdir(parents=True)
    (shadow / "lz4-0.0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: lz4\nVersion: 0.0.1\n")
    sys.path.insert(0, str(shadow))
    try:
        with pytest.raises(EnvironmentChanged) as err:
            processor.Runner(executor=pool.executor, chunksize=40)(
                str(_fileset(tmp_path)), treename="Events", processor_instance=load_processor(ANALYSIS))
    finally:
        sys.path.remove(str(shadow))
    assert "lz4: workers started with" in str(err.value) and "now 0.0.1" in str(err.value)


@pytest.mark.timeout(60)
def test_dashboard_needs_its_token_and_nothing_listens_off_loopback(pool):
    import psutil

    link = pool.dashboard_link
    assert link and link.startswith("http://127.0.0.1:") and "token=" in link
    port = int(link.split(":")[2].split("/")[0])
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10)
    assert refused.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as wrong:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/status?token=not-it", timeout=10)
    assert wrong.value.code == 403
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with opener.open(link, timeout=30) as page:  # sets the cookie, redirects to /status
        assert page.status == 200 and "token=" not in page.url
        assert b"bokeh" in page.read().lower()

    # the scheduler speaks TLS with the pool's certificate: a client without it is refused
    from distributed import Client

    address = pool.session.pool.cluster.scheduler_address
    assert address.startswith("tls://")
    with pytest.raises(OSError):  # "Timed out trying to connect": the TLS listener never answers plain TCP
        Client(address.replace("tls://", "tcp://"), timeout=3)

    # every listening socket of this process and of the worker processes is on loopback
    pids = {os.getpid()} | {w["pid"] for w in pool.workers()}
    procs = [psutil.Process(p) for p in pids]
    procs += [p.parent() for p in procs[1:] if p.parent() is not None]  # the nannies
    listening = [(p.pid, c.laddr) for p in procs for c in p.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening, "found no listening socket at all"
    assert all(addr.ip in ("127.0.0.1", "::1") for _, addr in listening), listening


_OWNER = """
import sys, time, hpckit
c = hpckit.cluster("slurm-local", backend=sys.argv[1], workers=1, run_dir=sys.argv[2], worker_timeout=90)
print("READY", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("backend,sig", [("dask", signal.SIGKILL), ("parsl", signal.SIGTERM)],
                         ids=["dask-SIGKILL", "parsl-SIGTERM"])
def test_owner_killed_leaves_no_job(backend, sig, tmp_path):
    """The process holding the cluster dies without closing it (SIGKILL: no Python code runs; SIGTERM:
    the default action): its lifeline cancels every job and ends Parsl's interchange."""
    require_slurm()
    run_dir = tmp_path / f"owner-{uuid.uuid4().hex[:6]}"
    script = tmp_path / "owner.py"
    script.write_text(textwrap.dedent(_OWNER))
    proc = subprocess.Popen([sys.executable, str(script), backend, str(run_dir)], env=env(), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY", proc.stderr.read() if proc.poll() is not None else ""
        jobs = (run_dir / "jobs.txt").read_text().split()
        assert jobs and set(jobs) <= squeue_ids()
        helpers = json.loads((run_dir / "launch.json").read_text()).get("helpers", [])
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 60
    while set(jobs) & squeue_ids() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not set(jobs) & squeue_ids(), f"jobs left after the owner died: {jobs}"
    assert "owner of" in (run_dir / "logs" / "lifeline.log").read_text()
    if backend == "parsl":
        assert helpers

        def alive(h: dict) -> bool:  # a zombie is dead: this process, a child subreaper once it used
            try:  # hpckit.cluster (guard_descendants), adopts the owner's orphans and does not reap them
                stat = Path(f"/proc/{h['pid']}/stat").read_text().rsplit(")", 1)[1].split()
                return stat[19] == h["start_ticks"] and stat[0] != "Z"
            except OSError:
                return False

        while any(alive(h) for h in helpers) and time.monotonic() < deadline + 20:
            time.sleep(0.3)
        assert not any(alive(h) for h in helpers), f"Parsl's interchange outlived its owner: {helpers}"
