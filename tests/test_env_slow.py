"""Real builds: the OCI image from the lock on the local Debian base, the packed tarball unpacked in
that Debian container (whose Python lives at /usr/bin/python3, not where this interpreter lives), and
the example analysis run in both, compared with the same run outside.

Needs rootful podman set up by scripts/podman-setup.sh; the base image comes from
scripts/debian-base.sh (debootstrap, cached). No image is built with Apptainer on this machine.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import services

from hpckit.deploy import container, envlock, envpack
from hpckit.deploy.container import ContainerError, ContainerSpec
from hpckit.deploy.envlock import LockError

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("podman_service"),  # scripts/podman-setup.sh + debian-base.sh (tests/services.py)
]

REPO = Path(__file__).resolve().parents[1]
BASE = container.LOCAL_BASE
TIMINGS: dict[str, float] = {}


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True)
    if check and proc.returncode:
        raise AssertionError(f"podman {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def base_image():
    t0 = time.perf_counter()
    services.ensure("podman")  # podman-setup.sh + debian-base.sh, once per session (tests/services.py)
    TIMINGS["base image (debootstrap or cached)"] = time.perf_counter() - t0
    return BASE


@pytest.fixture(scope="module")
def lock(default_lock_file):
    """The default lock (tests/conftest.py), so that the image and tarball are the session's shared ones."""
    return default_lock_file


@pytest.fixture(scope="module")
def image(base_image, built_image):
    """The session's image (`hpckit build --site slurm-podman` on the local Debian base, tests/conftest.py)."""
    return built_image


@pytest.fixture(scope="module")
def analysis_dir(tmp_path_factory):
    """The example analysis and a one-file fileset, plus the reference run outside any container."""
    d = tmp_path_factory.mktemp("analysis")
    shutil.copy(REPO / "examples" / "dimuon.py", d)
    shutil.copy(REPO / "data" / "nano_dy.root", d)
    (d / "fileset.json").write_text(json.dumps(
        {"DYJetsToLL": {"files": {"nano_dy.root": "Events"}, "metadata": {"year": 2018, "is_mc": True}}}))
    (d / "out").mkdir()
    os.chmod(d / "out", 0o777)
    proc = subprocess.run(
        [sys.executable, "-c", "from hpckit.cli import app; app()", *run_args("out/host.pkl")],
        cwd=d, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert proc.returncode == 0, proc.stderr
    return d


def run_args(output: str) -> list[str]:
    return ["run", "dimuon.py", "--fileset", "fileset.json", "--executor", "iterative", "--output", output,
            "--no-status", "--no-plots"]


def assert_same(a, b, where="output"):
    import hist

    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, hist.Hist):
        assert a.axes == b.axes, where
        assert np.array_equal(a.values(flow=True), b.values(flow=True)), where
        assert np.array_equal(a.variances(flow=True), b.variances(flow=True)), where
    else:
        assert a == b, where


@pytest.mark.xdist_group("image")  # its containers are counted by image: one worker runs them all
def test_image_carries_lock_hash_and_passes_fingerprint(image, lock):
    lk = envlock.read_lock(lock)
    assert container.image_label(image) == lk.hash
    proc = podman("run", "--rm", "--pull=never", "--network=none", image, "python", "-c",
                  "import sys; from hpckit.deploy.envlock import check_environment as c; c(sys.argv[1]); print('ok', sys.executable)",
                  lk.fingerprint().to_json())
    assert proc.stdout.split() == ["ok", "/opt/hpckit/env/bin/python"]


@pytest.mark.xdist_group("image")  # its containers are counted by image: one worker runs them all
def test_example_analysis_in_image_matches_host(image, analysis_dir):
    proc = podman("run", "--rm", "--pull=never", "--network=none", "-v", f"{analysis_dir}:/w", "-w", "/w",
                  image, "hpckit", *run_args("/w/out/image.pkl"))
    host = pickle.loads((analysis_dir / "out" / "host.pkl").read_bytes())
    ctr = pickle.loads((analysis_dir / "out" / "image.pkl").read_bytes())
    assert host, proc.stderr
    assert_same(host, ctr)


def test_pack_unpack_runs_analysis_in_debian_container(base_image, packed_env, analysis_dir):
    """The packed env (the session's `hpckit pack`) runs where the original interpreter does not exist: the
    Debian container has no /root/.pyenv; its own Python is /usr/bin/python3 (3.11.2)."""
    TIMINGS["tarball MiB"] = packed_env.stat().st_size / 2**20
    with tarfile.open(packed_env) as tf:
        names = set(tf.getnames())
        assert "pyvenv.cfg" not in names and "run_in_env" in names and "hpckit.lock" in names
        py = tf.getmember("bin/python3")
        assert py.issym() and py.linkname.startswith("python3.")  # a link to the carried binary
        assert tf.getmember("bin/" + py.linkname).isfile()
    chk = envpack.check(packed_env)
    TIMINGS["check: unpack"] = chk.unpack_seconds
    assert chk.ok, chk.output
    assert {"hpckit", "numpy", "uproot", "awkward"} <= set(chk.modules)

    script = (
        "set -e; test ! -e " + shlex_quote(sys.base_prefix) + "; /usr/bin/python3 -V; "
        "mkdir /env && cd /env && s=$(date +%s.%N) && tar xzf /in/env.tar.gz && e=$(date +%s.%N) && "
        "echo UNPACK $s $e; cd /w && /env/run_in_env hpckit " + " ".join(run_args("/w/out/packed.pkl"))
        + " && /env/bin/python3 -c 'import sys; print(\"PREFIX\", sys.prefix)'"
    )
    proc = podman("run", "--rm", "--pull=never", "--network=none", "-v", f"{packed_env}:/in/env.tar.gz:ro",
                  "-v", f"{analysis_dir}:/w", base_image, "bash", "-c", script)
    assert "PREFIX /env" in proc.stdout
    s, e = [float(x) for x in proc.stdout.split("UNPACK ")[1].split()[:2]]
    TIMINGS["unpack in container"] = e - s
    host = pickle.loads((analysis_dir / "out" / "host.pkl").read_bytes())
    packed = pickle.loads((analysis_dir / "out" / "packed.pkl").read_bytes())
    assert_same(host, packed)


def shlex_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


# not in the "image" group: it runs no container of the image (it saves it), so it need not wait behind those that do
def test_apptainer_runtime_without_apptainer_saves_archive(image, lock, tmp_path):
    """No image is built with Apptainer on this machine: the OCI image is saved as a docker-archive and
    the `apptainer build ... docker-archive://...` command for the site is given."""
    # slurm-podman's spec, as the session's image was built with it: the same Containerfile, so podman's layer
    # cache answers the build and only the save runs (other binds: another RUN line, a full reinstall, ~55 s CPU)
    spec = replace(container.site_container("slurm-podman"), runtime="apptainer")
    res = container.build(lock, spec, runtime="apptainer", tag=image, output_dir=tmp_path)
    assert res.built and res.plan.artifact
    archive = tmp_path / res.plan.artifact
    with tarfile.open(archive) as tf:
        assert "manifest.json" in tf.getnames()
    assert any(f"docker-archive://{res.plan.artifact}" in n for n in res.plan.notes)


def test_missing_runtime_writes_context_and_commands(lock, tmp_path):
    assert shutil.which("podman-hpc") is None
    res = container.build(lock, ContainerSpec(runtime="podman-hpc"), tag="ana:1", output_dir=tmp_path)
    assert not res.built and res.missing == "podman-hpc"
    ctx = res.context
    assert (ctx / "Containerfile").is_file() and (ctx / "hpckit.lock").is_file()
    assert any(p.name.startswith("hpckit-") for p in (ctx / "wheels").glob("*.whl"))
    assert res.plan.shell().startswith("podman-hpc build --pull=never -f Containerfile -t ana:1 .")


def test_nonexistent_base_image_is_clear_and_leaves_nothing(lock, tmp_path):
    tag = f"localhost/hpckit-env:nobase-{os.getpid()}"
    spec = ContainerSpec(runtime="podman", base="localhost/no-such-base:1")
    with pytest.raises(ContainerError, match="base image localhost/no-such-base:1 does not exist"):
        container.build(lock, spec, tag=tag, output_dir=tmp_path)
    assert podman("image", "exists", tag, check=False).returncode == 1
    assert list(tmp_path.iterdir()) == []


def test_lock_naming_nonexistent_package(base_image, tmp_path):
    lk = envlock.make_lock(closure=True)
    # the bad pin alone: with the whole closure a fresh machine would download every wheel first (~2 min in CI)
    lk.pins = {"hpckit-no-such-package": "1.0.0"}
    path = lk.write(tmp_path / "bad.lock")
    out = tmp_path / "out"
    tag = f"localhost/hpckit-env:badlock-{os.getpid()}"
    with pytest.raises(LockError, match="hpckit-no-such-package==1.0.0"):
        container.build(path, ContainerSpec(runtime="podman", base=base_image), tag=tag, output_dir=out)
    assert podman("image", "exists", tag, check=False).returncode == 1
    with pytest.raises(LockError, match="no index has: hpckit-no-such-package==1.0.0"):
        envpack.pack(path, out / "env.tar.gz")
    assert not out.exists() or list(out.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) in (["bad.lock"], ["bad.lock", "out"])


def test_zz_report_timings():
    print("\nhpckit env timings: " + ", ".join(f"{k}: {v:.1f}" for k, v in TIMINGS.items()))
