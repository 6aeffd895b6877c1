"""Workers that run the locked environment, end to end on the local Slurm: real worker jobs whose Python
comes from the image `hpckit build --site slurm-podman` made (`podman run --network=host --pull=never`,
rootful podman inside the Slurm job) or from the `hpckit pack` tarball unpacked once per node, through
Dask and Parsl. No host venv in the workers: the jobs' PATH and PYTHONPATH hold nothing of the client's.

Each run equals `hpckit run --executor iterative`; every worker reports the lock hash and interpreter it
ran in the metrics. An image or tarball that claims the client's lock but holds one package at another
version (a small pure-Python package of the lock at another release, installed after the build) is refused by the workers, and the launch ends with the
differing package and no job in the queue.

One image and one tarball per session, shared with test_env_slow (tests/conftest.py); needs Slurm (scripts/slurm-local.sh), rootful
podman and the local Debian base (scripts/podman-setup.sh, scripts/debian-base.sh).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from filelock import FileLock
from launch_util import ANALYSIS, REPO, assert_same_output, hpckit, load, run_jobs, squeue_ids
from slurm_util import require_slurm
from taskvine_util import cctools_build

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CHUNK = "10"
# Small pure-Python packages no worker imports; the first one the lock pins is swapped for another
# release. The list is the test's own: it never relies on what else happens to be installed.
SWAP_CANDIDATES = ("shellingham", "mdurl", "six", "typing-extensions")


def _podman(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    """Under /tmp (bound into the containers): the input files, a fileset, and the iterative reference."""
    d = tmp_path_factory.mktemp("delivery")
    fs = {}
    for ds, name in (("DYJetsToLL", "nano_dy.root"), ("DoubleMuon", "nano_dimuon.root")):
        shutil.copy(REPO / "data" / name, d / name)
        fs[ds] = {"files": {str(d / name): "Events"}}
    (d / "fileset.json").write_text(json.dumps(fs))
    r = hpckit(["run", str(ANALYSIS), "--fileset", str(d / "fileset.json"), "--executor", "iterative", "--chunksize",
                CHUNK, "--no-status", "--no-plots", "--output", str(d / "ref.pkl")], cwd=d)
    assert r.returncode == 0, r.stderr
    return d


@pytest.fixture(scope="session")
def lock_hash(default_lock_file) -> str:
    from hpckit.deploy.envlock import read_lock

    return read_lock(default_lock_file).hash


@pytest.fixture
def image(built_image) -> str:
    """The session's `hpckit build --site slurm-podman` image (tests/conftest.py)."""
    return built_image


@pytest.fixture
def packed(packed_env) -> Path:
    """The session's `hpckit pack` tarball (tests/conftest.py)."""
    return packed_env


@dataclass(frozen=True)
class Swap:
    """One package of the lock (``name`` at ``client``) and the wheel of another release of it."""

    name: str
    client: str
    other: str
    wheel: Path

    @property
    def refusal(self) -> str:
        return f"{self.name}: client {self.client}, worker {self.other}"


@pytest.fixture(scope="session")
def swap(work, default_lock_file) -> Swap:
    """Another release of the first SWAP_CANDIDATES package the lock pins (from the index once, then from
    hpckit's wheel cache)."""
    from hpckit.deploy.envlock import normalize, read_lock, wheel_cache

    pins = {normalize(n): v for n, v in read_lock(default_lock_file).pins.items()}
    name = next((c for c in SWAP_CANDIDATES if c in pins), None)
    assert name, f"the default lock pins none of {SWAP_CANDIDATES}: add a small pure-Python package it pins"
    stem = name.replace("-", "_")

    def others() -> list[Path]:
        return sorted(w for w in wheel_cache().glob(f"{stem}-*-py*none-any.whl")
                      if w.name.split("-")[1] != pins[name])

    wheel_cache().mkdir(parents=True, exist_ok=True)
    with FileLock(str(wheel_cache() / ".hpckit-test-swap.lock")):  # one download across xdist workers
        if not others():
            r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                                "-d", str(wheel_cache()), f"{name}!={pins[name]}"], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
    wheel = others()[-1]
    dest = work / wheel.name
    shutil.copy(wheel, dest)
    return Swap(name, pins[name], wheel.name.split("-")[1], dest)


def _launch(work: Path, run_dir: Path, site: str, backend: str, *extra: str, timeout: float = 240):
    return hpckit(["launch", str(ANALYSIS), "--site", site, "--backend", backend, "--workers", "2",
                   "--fileset", str(work / "fileset.json"), "--chunksize", CHUNK, "--run-dir", str(run_dir),
                   "--worker-timeout", "120", "--no-status", "--no-plots", *extra], cwd=work, timeout=timeout)


def _no_jobs_left(run_dir: Path) -> list[str]:
    jobs = run_jobs(run_dir)
    assert not set(jobs) & squeue_ids(), f"jobs of the run still in squeue: {jobs}"
    return jobs


def _worker_envs(run_dir: Path) -> list[dict]:
    metrics = json.loads((run_dir / "out.metrics.json").read_text())
    envs = metrics["worker_environments"]
    assert envs and {e["worker"] for e in envs} <= set(metrics["workers"]), metrics
    return [e["environment"] for e in envs]


@pytest.mark.xdist_group("image")  # its containers are counted by image: one worker runs them all
@pytest.mark.timeout(900)
@pytest.mark.parametrize("backend", ["dask", "parsl"])
def test_image_workers_equal_run(backend, work, image, lock_hash):
    require_slurm()
    run_dir = work / f"image-{backend}"
    r = _launch(work, run_dir, "slurm-podman", backend)
    assert r.returncode == 0, r.stderr
    assert_same_output(load(run_dir / "out.pkl"), load(work / "ref.pkl"))
    assert len(_no_jobs_left(run_dir)) == 2
    for e in _worker_envs(run_dir):  # the worker ran the image's interpreter, from the client's lock
        assert e["lock_hash"] == lock_hash and e["delivered"] == lock_hash, e
        assert e["python"].startswith("/opt/hpckit/env/bin/python"), e
    # the jobs are gone from squeue; their containers stop on the job's SIGTERM, which takes podman a moment
    deadline = time.monotonic() + 60
    while _podman("ps", "-q", "--filter", f"ancestor={image}").stdout.strip() and time.monotonic() < deadline:
        time.sleep(1)
    assert not _podman("ps", "-q", "--filter", f"ancestor={image}").stdout.strip()


@pytest.mark.timeout(900)
def test_tarball_workers_equal_run_from_the_unpacked_env(work, packed, lock_hash, monkeypatch):
    """Dask workers from the packed tarball, unpacked on the node (cold). Parsl with the tarball, and a
    second launch reusing each node's copy, are tests/test_cluster.py's spread test (one case per engine x
    delivery: the two were here as well)."""
    require_slurm()
    node = work / "node-scratch"
    with tarfile.open(packed, "r:gz") as tf:  # the unpack directory is named by the manifest's env_key
        manifest = json.load(tf.extractfile(tf.next()))
    assert manifest["lock_hash"] == lock_hash and "hpckit" in manifest["code"]  # hpckit from this checkout
    env_dir = node / f"hpckit-{os.getuid()}" / "envs" / manifest["env_key"].split(":")[1][:16]
    run_dir = work / "tarball-dask"
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # as the user's shell may set it (the jobs inherit it)
    r = _launch(work, run_dir, "slurm-tarball", "dask", "--env", str(packed),
                "--set", f"env_delivery.node_scratch={node}")
    assert r.returncode == 0, r.stderr
    assert_same_output(load(run_dir / "out.pkl"), load(work / "ref.pkl"))
    assert len(_no_jobs_left(run_dir)) == 2
    for e in _worker_envs(run_dir):
        assert e["lock_hash"] == lock_hash and e["delivered"] == lock_hash, e
        assert e["python"].startswith(str(env_dir) + "/bin/python"), e
    assert sorted(p.name for p in env_dir.parent.iterdir()) == sorted([env_dir.name, env_dir.name + ".lock"])
    # packed without .pyc (--fast): the workers compiled what they imported into the node's copy, once,
    # even though this machine may set PYTHONDONTWRITEBYTECODE for everyone
    assert list(env_dir.glob("lib/python3*/site-packages/awkward/__pycache__/*.pyc")), "no byte code cached"


@pytest.mark.xdist_group("image")  # its containers are counted by image: one worker runs them all
@pytest.mark.timeout(900)
def test_image_with_another_package_version_is_refused(work, image, swap):
    """An image derived from the built one (so it keeps the lock label) with another release of one of its
    packages installed over it."""
    other_wheel = swap.wheel
    require_slurm()
    tag = f"localhost/hpckit-test-tampered:{os.getpid()}"
    ctx = work / "tampered-image"
    ctx.mkdir()
    shutil.copy(other_wheel, ctx / other_wheel.name)
    (ctx / "Containerfile").write_text(
        f"FROM {image}\nCOPY {other_wheel.name} /tmp/\n"
        f"RUN /opt/hpckit/env/bin/python -m pip install -q --no-deps --no-index /tmp/{other_wheel.name} && rm /tmp/*.whl\n")
    b = _podman("build", "--pull=never", "--network=none", "-t", tag, str(ctx))
    assert b.returncode == 0, b.stderr
    try:
        run_dir = work / "tampered-image-run"
        r = _launch(work, run_dir, "slurm-podman", "dask", "--set", f"container.image={tag}")
        assert r.returncode == 1, r.stderr
        assert swap.refusal in r.stderr and "refusing work" in r.stderr, r.stderr
        assert not (run_dir / "out.pkl").exists()
        assert _no_jobs_left(run_dir)
        assert not _podman("ps", "-q", "--filter", f"ancestor={tag}").stdout.strip()
    finally:
        _podman("rmi", "-f", tag)


def _tampered_tarball(packed: Path, swap: Swap, dest: Path) -> Path:
    """The packed environment with ``swap``'s other release in place of the locked one, copied member by
    member (nothing unpacked to disk); the manifest stays first and still names the client's lock."""
    import io

    wheel = swap.wheel
    with zipfile.ZipFile(wheel) as z:  # what the wheel installs at the top of site-packages
        tops = {name.split("/")[0] for name in z.namelist()}
    stem = swap.name.replace("-", "_")
    tops |= {f"{stem}-{swap.client}.dist-info", f"{stem}.py", stem}
    # gzip level 0 (stored): the same tar members at I/O speed; recompressing ~300 MB took a minute under load
    with tarfile.open(packed) as src, tarfile.open(dest, "w:gz", compresslevel=0) as out:
        site = None
        for m in src:
            parts = m.name.removeprefix("./").split("/")
            if len(parts) >= 4 and parts[0] == "lib" and parts[2] == "site-packages":
                site = "/".join(parts[:3])
                if parts[3] in tops:
                    continue
            out.addfile(m, src.extractfile(m) if m.isfile() else None)
        assert site, "no site-packages in the tarball"
        with zipfile.ZipFile(wheel) as z:  # a pure-Python wheel unpacked into site-packages is installed
            for name in z.namelist():
                data = z.read(name)
                info = tarfile.TarInfo(f"{site}/{name}")
                info.size, info.mode = len(data), 0o644
                out.addfile(info, io.BytesIO(data))
    return dest


@pytest.mark.timeout(900)
def test_tarball_with_another_package_version_is_refused(work, packed, swap):
    require_slurm()
    bad = _tampered_tarball(packed, swap, work / "tampered.tar.gz")
    run_dir = work / "tampered-tarball-run"
    r = _launch(work, run_dir, "slurm-tarball", "parsl", "--env", str(bad),
                "--set", f"env_delivery.node_scratch={work / 'node-tampered'}")
    assert r.returncode == 1, r.stderr
    assert swap.refusal in r.stderr, r.stderr
    assert not (run_dir / "out.pkl").exists()
    assert _no_jobs_left(run_dir)


@pytest.mark.timeout(300)
def test_missing_image_and_tarball_stop_before_submitting(work, tmp_path):
    require_slurm()
    r = _launch(work, tmp_path / "a", "slurm-podman", "dask", "--set", "container.image=localhost/hpckit-none:1")
    assert r.returncode == 1 and "image localhost/hpckit-none:1 does not exist" in r.stderr, r.stderr
    assert "fix: hpckit build --site slurm-podman" in r.stderr
    r = _launch(work, tmp_path / "b", "slurm-tarball", "dask", "--env", str(tmp_path / "none.tar.gz"))
    assert r.returncode == 1 and f"env tarball {tmp_path / 'none.tar.gz'} not found" in r.stderr, r.stderr
    assert f"fix: hpckit pack -o {tmp_path / 'none.tar.gz'}" in r.stderr
    assert run_jobs(tmp_path / "a") == [] and run_jobs(tmp_path / "b") == []


def _taskvine() -> tuple[str, str | None]:
    """(directory of vine_worker, extra sys.path entry for ndcctools or None); skips naming why."""
    import importlib.util

    if importlib.util.find_spec("ndcctools") is not None and shutil.which("vine_worker"):
        return os.path.dirname(shutil.which("vine_worker")), None
    root, site = cctools_build(serverless=False)  # tasks mode: no library, no conda_pack
    return str(root / "bin"), str(site)


@pytest.mark.timeout(600)
def test_taskvine_tasks_run_inside_the_packed_environment(work, packed, lock_hash, monkeypatch):
    """vine_workers whose PATH is only /usr/bin:/bin: every task's python comes from the staged tarball."""

    bindir, pypath = _taskvine()
    if pypath:
        monkeypatch.syspath_prepend(pypath)
    monkeypatch.setenv("CATALOG_HOST", "127.0.0.1")
    from dimuon import DimuonProcessor

    from hpckit import processor
    from hpckit.deploy.envlock import check_environment, read_lock
    import functools

    lock_file = work / "tv.lock"
    with tarfile.open(packed) as tf:
        lock_file.write_bytes(tf.extractfile("hpckit.lock").read())
    fp = read_lock(lock_file).fingerprint().to_json()
    clean = {"PATH": "/usr/bin:/bin", "HOME": str(work), "CATALOG_HOST": "127.0.0.1"}
    from distributed_support import vine_workers

    with vine_workers(work / "vine", exe=f"{bindir}/vine_worker", env=clean, idle=60) as port:
        # tasks, not serverless: a TaskVine library imports ndcctools inside the environment (not on PyPI)
        ex = processor.TaskVineExecutor(port=port, environment_file=str(packed), status=False, mode="tasks")
        runner = processor.Runner(ex, chunksize=int(CHUNK), savemetrics=True,
                                  worker_check=functools.partial(check_environment, fp))
        out, metrics = runner(str(work / "fileset.json"), processor_instance=DimuonProcessor())
    assert_same_output(out, load(work / "ref.pkl"))
    envs = [e["environment"] for e in metrics["worker_environments"]]
    assert envs and all(e["lock_hash"] == lock_hash for e in envs)
    assert all(not e["python"].startswith(sys.prefix) for e in envs), envs


def test_launch_taskvine_passes_the_tarball_by_default(work, packed):
    """`launch --backend taskvine` on a tarball site: vine_factory gets --python-env and the executor the
    environment_file (rendered here; the run itself needs TaskVine, above)."""
    from hpckit.deploy import delivery, load_site
    from hpckit.deploy.backends import Sizing
    from hpckit.deploy.backends.taskvine import render_taskvine
    from hpckit.launch import Plan
    from hpckit.engines import ENGINES

    site = delivery.resolve(load_site("slurm-tarball", [f"env_delivery.path={packed}"]).site, delivery.default_lock())
    r = render_taskvine(site)
    assert r.command[r.command.index("--python-env") + 1] == str(packed)
    pool = ENGINES["taskvine"].pool(Plan(site, "taskvine", work, Sizing(jobs=1, workers=1), chunks=None))
    try:
        ex = pool.executor(False)
    except ImportError:
        pytest.skip("ndcctools (TaskVine) is not importable: conda install -c conda-forge ndcctools")
    assert ex.environment_file == str(packed) and ex.mode == "tasks"


@pytest.mark.timeout(300)
def test_unwritable_node_scratch_fails_at_the_first_worker(work, packed, tmp_path):
    """The worker jobs cannot unpack (node scratch under /proc): launch shows their message and fix and
    leaves no job behind."""
    require_slurm()
    run_dir = tmp_path / "run"
    r = _launch(work, run_dir, "slurm-tarball", "dask", "--env", str(packed),
                "--set", "env_delivery.node_scratch=/proc/hpckit-not-writable")
    assert r.returncode == 1, r.stderr
    assert f"cannot create /proc/hpckit-not-writable/hpckit-{os.getuid()} on " in r.stderr, r.stderr
    assert "fix: --set env_delivery.node_scratch=" in r.stderr
    assert "every worker job ended before a worker connected" in r.stderr
    assert len(_no_jobs_left(run_dir)) == 2
