"""`hpckit launch` without a batch system: dry runs of every shipped site, the local site, the fallback when
a site's scheduler commands are missing, `hpckit doctor` checks, and JobStatus's stderr summary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from launch_util import ANALYSIS, hpckit, load

from hpckit.deploy import list_sites, load_site
from hpckit.launch import BATCH_BACKENDS, JobStatus, LaunchError, LaunchOptions, launch
from hpckit.run import RunSpec

SHIPPED = ["chtc", "frontier", "local", "lpc", "pbs-local", "perlmutter", "polaris", "slurm-local"]


def _fileset(d: Path) -> Path:
    from conftest import DATASETS

    p = d / "fileset.json"
    p.write_text(json.dumps({ds: {"files": {str(f): "Events"}} for ds, f in DATASETS.items()}))
    return p


class _NoSubprocess:
    def __init__(self, *a, **k):
        raise AssertionError(f"a dry run started a process: {a[0] if a else k.get('args')}")


@pytest.mark.timeout(120)
def test_dry_run_every_shipped_site_renders_without_scheduler(tmp_path, monkeypatch):
    """Dry run with PATH emptied and subprocess.Popen replaced by an error: nothing can be submitted."""
    assert set(SHIPPED) <= set(list_sites())
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(subprocess, "Popen", _NoSubprocess)
    fileset = _fileset(tmp_path)
    for site in SHIPPED:
        for backend in BATCH_BACKENDS:
            run_dir = tmp_path / f"{site}-{backend}"
            # workers given: no chunk counting (36 plans; sizing is test_default_workers_*'s)
            r = launch(LaunchOptions(site=site, spec=RunSpec(ANALYSIS, fileset), backend=backend, dry_run=True,
                                     run_dir=run_dir, workers=2, say=lambda m: None))
            assert r.mode == "dry-run" and not r.job_ids
            assert not (run_dir / "jobs.txt").exists()
            names = {p.name for p in run_dir.iterdir()}
            expected = {"dask": "dask_cluster.json", "parsl": "parsl_config.py", "taskvine": "vine_factory.json"}[backend]
            assert expected in names and "launch.json" in names, (site, backend, names)
            assert any(("would" in line) for line in r.planned), r.planned
            if load_site(site).site.scheduler != "local":
                assert "worker_job.sh" in names


@pytest.mark.timeout(60)
def test_dry_run_cli_prints_plan(tmp_path):
    r = hpckit(["launch", str(ANALYSIS), "--site", "perlmutter", "--set", "account=m1234", "--backend", "dask",
                "--fileset", str(_fileset(tmp_path)), "--run-dir", str(tmp_path / "run"), "--dry-run"],
               cwd=tmp_path, PATH=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "would submit" in r.stderr and "sbatch" in r.stderr
    assert "--account=m1234" in (tmp_path / "run" / "job_script.sh").read_text()


@pytest.mark.timeout(120)
def test_local_site_runs_futures_with_min_cores_chunks(tmp_path, reference):
    from conftest import assert_matches_reference

    said = []
    r = launch(LaunchOptions(site="local", spec=RunSpec(ANALYSIS, _fileset(tmp_path), chunksize=10, status=False,
                                                        plots=False), backend="futures", run_dir=tmp_path / "run",
                             say=said.append))
    assert r.mode == "local" and r.backend == "futures"
    assert_matches_reference(load(tmp_path / "run" / "out.pkl"), reference)
    assert json.loads((tmp_path / "run" / "launch.json").read_text())["mode"] == "local"
    assert r.metrics["chunks"] == 8
    workers = min(os.cpu_count(), 8)
    assert any(f"8 chunks -> futures executor with {workers} worker" in m for m in said), said


@pytest.mark.timeout(120)
def test_batch_site_without_scheduler_falls_back_or_errors(tmp_path, reference):
    """PATH without sbatch: launch says so and runs locally; --no-fallback makes it an error."""
    from conftest import assert_matches_reference

    fileset = _fileset(tmp_path)
    base = ["launch", str(ANALYSIS), "--site", "slurm-local", "--backend", "dask", "--fileset", str(fileset),
            "--no-status", "--no-plots"]
    r = hpckit([*base, "--run-dir", str(tmp_path / "fb")], cwd=tmp_path, PATH=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "sbatch" in r.stderr and "not on this machine's PATH" in r.stderr and "running locally" in r.stderr
    assert_matches_reference(load(tmp_path / "fb" / "out.pkl"), reference)
    assert json.loads((tmp_path / "fb" / "launch.json").read_text())["mode"] == "fallback"

    r = hpckit([*base, "--run-dir", str(tmp_path / "nofb"), "--no-fallback"], cwd=tmp_path, PATH=str(tmp_path))
    assert r.returncode == 1
    assert "not on this machine's PATH" in r.stderr and "--no-fallback" in r.stderr
    assert not (tmp_path / "nofb" / "out.pkl").exists()


def test_unknown_backend_is_an_error(tmp_path):
    with pytest.raises(LaunchError, match="unknown backend 'spark'"):
        launch(LaunchOptions(site="local", spec=RunSpec(ANALYSIS, _fileset(tmp_path)), backend="spark",
                             run_dir=tmp_path / "r", say=lambda m: None))


def test_job_status_summary_shows_head_and_tail_of_stderr(tmp_path):
    err = tmp_path / "job.err"
    err.write_text("\n".join(f"line {i}" for i in range(100)) + "\n")
    st = JobStatus("42", "FAILED", "3:0", "NonZeroExitCode", stdout_path=str(tmp_path / "missing.out"),
                   stderr_path=str(err))
    text = st.summary(head=2, tail=5)
    assert text.splitlines()[0] == "job 42: FAILED (exit 3:0, NonZeroExitCode)"
    assert "| line 0" in text and "| line 1" in text and "| line 2\n" not in text
    assert "| line 99" in text and "| line 95" in text and "| line 94" not in text
    assert "missing.out: not written" in text
    assert st.terminal and not JobStatus("1", "RUNNING").terminal


# -- doctor -----------------------------------------------------------------------------------------


def _by_name(checks):
    return {c.name: c for c in checks}


def test_doctor_interface_and_scheduler_checks(monkeypatch, tmp_path):
    from hpckit.doctor import run_checks

    monkeypatch.setenv("PATH", str(tmp_path))  # no scheduler commands at all
    checks = _by_name(run_checks("slurm-local", ["network.interface=nosuch0"]))
    assert checks["scheduler commands"].result == "fail" and "sbatch" in checks["scheduler commands"].detail
    assert checks["network interface"].result == "fail" and "lo (127.0.0.1)" in checks["network interface"].detail
    assert "network.interface" in checks["network interface"].fix
    checks = _by_name(run_checks("local"))
    assert checks["network interface"].result == "pass"
    assert all(c.result != "fail" for c in checks.values()), checks


def test_doctor_ports_and_packed_env(tmp_path):
    import socket

    from hpckit.doctor import run_checks

    # Hold one port whose neighbour is free now: any other process on the machine may take a neighbour
    # picked blindly (CI once saw "only 0 of" such a range).
    for _ in range(50):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        try:
            with socket.socket() as probe:
                probe.bind(("", port + 1))
            break
        except OSError:
            s.close()
    with s:
        checks = _by_name(run_checks("slurm-local", [f"network.port_range=[{port}, {port + 1}]", "max_workers=2",
                                                     f"env_delivery={{mode: venv, path: {tmp_path / 'venv'}}}"]))
    assert checks["worker ports"].result == "fail" and "only 1" in checks["worker ports"].detail
    assert checks["worker python"].result == "fail" and f"{tmp_path / 'venv'}/bin/python does not exist" in checks["worker python"].detail


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_doctor_x509_proxy_lifetime(tmp_path, monkeypatch):
    from hpckit.doctor import run_checks

    monkeypatch.setenv("X509_USER_PROXY", str(tmp_path / "none"))
    assert _by_name(run_checks("lpc"))["x509 proxy"].result == "fail"
    cert = tmp_path / "proxy.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3", "-subj", "/CN=hpckit-test",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(cert)], check=True, capture_output=True)
    monkeypatch.setenv("X509_USER_PROXY", str(cert))
    monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                              if not (Path(p) / "voms-proxy-info").exists()))
    c = _by_name(run_checks("lpc"))["x509 proxy"]
    assert c.result == "pass" and "h left" in c.detail, c


@pytest.mark.timeout(200)
def test_local_site_default_backend_is_dask_and_parsl_honours_workers(tmp_path, reference):
    """`--site local` runs its default backend (dask: a LocalCluster from the rendered kwargs) and
    `--backend parsl --workers 2` renders and starts exactly 2 local workers; `--wait-workers N` starts the run
    once N are connected (at most the pool's own count)."""
    from conftest import assert_matches_reference

    fileset = _fileset(tmp_path)
    r = hpckit(["launch", str(ANALYSIS), "--site", "local", "--fileset", str(fileset), "--chunksize", "10",
                "--workers", "2", "--wait-workers", "5", "--run-dir", str(tmp_path / "dask"), "--no-status",
                "--no-plots"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "hpckit: 2 local workers (local, dask)" in r.stderr
    assert "hpckit: 2 workers connected after" in r.stderr, r.stderr  # 5 asked for, the pool has 2
    assert_matches_reference(load(tmp_path / "dask" / "out.pkl"), reference)
    assert json.loads((tmp_path / "dask" / "dask_cluster.json").read_text())["kwargs"]["n_workers"] == 2
    assert json.loads((tmp_path / "dask" / "launch.json").read_text())["backend"] == "dask"

    r = hpckit(["launch", str(ANALYSIS), "--site", "local", "--backend", "parsl", "--fileset", str(fileset),
                "--chunksize", "10", "--workers", "2", "--wait-workers", "2", "--run-dir", str(tmp_path / "parsl"),
                "--no-status", "--no-plots"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "hpckit: 2 workers connected after" in r.stderr, r.stderr
    assert_matches_reference(load(tmp_path / "parsl" / "out.pkl"), reference)
    assert "max_workers_per_node=2," in (tmp_path / "parsl" / "parsl_config.py").read_text()
    metrics = json.loads((tmp_path / "parsl" / "out.metrics.json").read_text())
    assert metrics["chunks"] == 8


def test_default_workers_are_min_of_site_maximum_and_chunks():
    from hpckit.launch import size

    perl = load_site("perlmutter", ["account=m1"]).site
    s = size(perl, None, 2)
    assert (s.workers, s.jobs) == (2, 1)  # 2 chunks: 2 workers in one node-sized job, not 8 nodes
    s = size(perl, None, 10_000)
    assert s.workers == perl.max_workers and s.jobs == perl.max_jobs
    s = size(load_site("slurm-local").site, 3, 100)
    assert (s.workers, s.jobs) == (3, 3)


def test_taskvine_dry_run_names_the_sites_interface_address(tmp_path):
    """A site whose interface exists here (lo, with loopback off via a user site) renders that address into
    vine_factory.sh and the dry-run plan, not a placeholder."""
    import psutil
    import socket

    found = [(n, a.address) for n, al in psutil.net_if_addrs().items() for a in al
             if a.family == socket.AF_INET and n != "lo"]
    iface, addr = found[0] if found else ("lo", "127.0.0.1")
    r = launch(LaunchOptions(site="chtc", spec=RunSpec(ANALYSIS, _fileset(tmp_path)), backend="taskvine",
                             overrides=[f"network.interface={iface}"], dry_run=True, run_dir=tmp_path / "r",
                             workers=3, say=lambda m: None))
    text = (tmp_path / "r" / "vine_factory.sh").read_text()
    expected = "127.0.0.1" if iface == "lo" else addr
    assert f"{expected} 9123" in text and any(f"{expected} 9123" in line for line in r.planned), (text, r.planned)
    cfg = json.loads((tmp_path / "r" / "vine_factory.json").read_text())
    assert cfg["min-workers"] == cfg["max-workers"] == 3


def test_adapt_from_the_site_or_the_command_line(tmp_path):
    """A site's adapt block makes the pool adaptive unless --workers N is given; --adapt beyond max_workers is
    capped (and said); --workers with --adapt, or MIN > MAX in the site, is one line naming the fix."""
    from hpckit.core.errors import HpckitError

    def plan(**kw):
        said = []
        launch(LaunchOptions(site="slurm-local", spec=RunSpec(ANALYSIS, _fileset(tmp_path)), backend="dask",
                             dry_run=True, run_dir=tmp_path / f"r{len(list(tmp_path.iterdir()))}", say=said.append,
                             **kw))
        return "\n".join(said)

    site_adapt = ["adapt.minimum=1", "adapt.maximum=3"]
    assert "adaptive pool: 1 to 3 workers" in plan(overrides=site_adapt)
    assert "adaptive" not in plan(overrides=site_adapt, workers=2)
    said = plan(adapt="2:9")
    assert "capped at the site's max_workers (4)" in said and "adaptive pool: 2 to 4 workers" in said, said
    with pytest.raises(HpckitError, match="not both"):
        plan(adapt="1:2", workers=2)
    with pytest.raises(HpckitError, match=r"adapt.minimum \(3\) exceeds adapt.maximum \(2\)"):
        plan(overrides=["adapt.minimum=3", "adapt.maximum=2"])
