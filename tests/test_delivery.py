"""Environment delivery without a batch system: how sites resolve (venv interpreter, built image, tarball),
the preflight checks `launch` and `doctor` make with their fixes, and the tarball unpack job piece run
for real with bash (atomic, reused, keyed by lock hash, each failure naming the file and the fix).

The unpack tests use a small tarball laid out as `hpckit pack` writes it (manifest first, bin/python3);
the real packed environment is unpacked by Slurm jobs in tests/test_delivery_slurm.py.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from hpckit.deploy import delivery, load_site
from hpckit.deploy import render_files
from hpckit.deploy.backends.common import prologue_lines
from hpckit.deploy.envlock import Lock

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lock() -> Lock:
    return delivery.default_lock()


def _site(name: str, *overrides: str):
    return load_site(name, list(overrides)).site


# ------------------------------------------------------------------------------------------------
# resolution


def test_venv_site_runs_client_interpreter_by_absolute_path(lock):
    site = delivery.resolve(_site("slurm-local"), lock, executable="/opt/venvs/ana/bin/python")
    assert site.python == "/opt/venvs/ana/bin/python"
    files = render_files(site, "dask")
    assert "/opt/venvs/ana/bin/python -m distributed.cli.dask_worker" in files["job_script.sh"]
    parsl = render_files(site, "parsl")["parsl_config.py"]
    assert "WORKER_PYTHON = '/opt/venvs/ana/bin/python'" in parsl
    assert "process_worker_pool.py" not in files["worker_job.sh"]
    venv = delivery.resolve(_site("slurm-local", "env_delivery.path=/sw/env"), lock)
    assert venv.python == "/sw/env/bin/python"


def test_built_image_resolves_to_the_lock_tag(lock):
    hex12 = lock.hash.split(":")[1][:12]
    perl = delivery.resolve(_site("perlmutter", "account=m1"), lock)
    assert perl.container.image == f"localhost/hpckit-env:{hex12}" and perl.container.runtime == "podman-hpc"
    assert f"podman-hpc run --rm --net host localhost/hpckit-env:{hex12} /opt/hpckit/env/bin/python3 -m distributed" in \
        render_files(perl, "dask")["job_script.sh"]
    front = delivery.resolve(_site("frontier"), lock)
    assert front.container.image == f"/lustre/orion/$HPCKIT_PROJECT/world-shared/hpckit-env_{hex12}.sif"
    shifter = delivery.resolve(_site("perlmutter", "container.runtime=shifter", "container.registry=docker.io/me"), lock)
    assert shifter.container.image == f"docker.io/me/hpckit-env:{hex12}"
    explicit = delivery.resolve(_site("perlmutter", "container.image=registry.example/ana:1"), lock)
    assert explicit.container.image == "registry.example/ana:1"


def test_no_shipped_site_defaults_to_an_image_without_hpckit():
    """Every image delivery of a shipped site is the image built from the client's lock."""
    from hpckit.core.resources import data_dir

    for path in sorted(data_dir("sites").glob("*.yaml")):
        site = load_site(path.stem).site
        if site.env_delivery.mode == "image":
            assert site.container.image == delivery.BUILT, path.name


def test_image_and_tarball_jobs_hold_nothing_of_the_client_environment(lock):
    for name in ("slurm-podman", "slurm-tarball"):
        lines = prologue_lines(delivery.resolve(_site(name), lock), "dask")
        assert lines[0].startswith("unset PYTHONPATH PYTHONHOME")
        assert lines[1] == "export PATH=/usr/local/bin:/usr/bin:/bin"
        assert not any(sys.prefix in line for line in lines), name
    podman = render_files(delivery.resolve(_site("slurm-podman"), lock), "dask")["job_script.sh"]
    assert "podman run --rm --init --network=host --pull=never -v /tmp:/tmp localhost/hpckit-env:" in podman


def test_relative_tarball_path_becomes_absolute(lock, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    site = delivery.resolve(_site("slurm-tarball"), lock)
    assert site.env_delivery.path == str(tmp_path / "env.tar.gz")
    assert site.python == "$HPCKIT_ENV_DIR/bin/python3" and site.env_delivery.lock_hash == lock.hash


def test_every_rendered_delivery_script_passes_bash_n(lock, tmp_path):
    for name in ("slurm-podman", "slurm-tarball", "perlmutter", "frontier"):
        for backend in ("dask", "parsl", "taskvine"):
            site = delivery.resolve(_site(name), lock)
            for fname, text in render_files(site, backend).items():
                if fname.endswith(".sh"):
                    p = tmp_path / f"{name}-{backend}-{fname}"
                    p.write_text(text)
                    r = subprocess.run(["bash", "-n", str(p)], capture_output=True, text=True)
                    assert r.returncode == 0, (p.name, r.stderr)


def test_parsl_launch_cmd_survives_parsl_formatting(lock):
    """Parsl formats LAUNCH_CMD twice (its options, then block_id): ${HPCKIT_ENV_DIR} must come out unchanged."""
    text = render_files(delivery.resolve(_site("slurm-tarball"), lock), "parsl")["parsl_config.py"]
    ns: dict = {}
    exec(compile(text, "parsl_config.py", "exec"), ns)  # noqa: S102 - our own rendered config
    keys = {k: "X" for k in ("debug", "max_workers_per_node", "addresses", "prefetch_capacity", "cores_per_worker",
                             "mem_per_worker", "poll_period", "worker_port", "cert_dir", "logdir", "logconf",
                             "heartbeat_period", "address_probe_timeout_string", "heartbeat_threshold",
                             "drain_period", "cpu_affinity", "enable_mpi_mode", "mpi_launcher", "accelerators")}
    cmd = ns["LAUNCH_CMD"].format(**keys).format(block_id="0")
    assert cmd.startswith('"${HPCKIT_ENV_DIR}"/bin/python3 -m parsl.executors.high_throughput.process_worker_pool X')


# ------------------------------------------------------------------------------------------------
# tarballs: launch-side checks


def _tarball(path: Path, manifest: dict, python_body: bytes = b"#!/bin/sh\necho 3.11.7\n",
             extra: dict[str, bytes] | None = None) -> Path:
    """A tarball laid out as `hpckit pack` writes it: hpckit-env.json first, run_in_env, bin/python3."""
    files = {"hpckit-env.json": json.dumps(manifest).encode(), "run_in_env": b"#!/bin/sh\nexec \"$@\"\n",
             "bin/python3": python_body, **(extra or {})}
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tf.addfile(info, io.BytesIO(data))
    return path


def _manifest(lock: Lock, **change) -> dict:
    fp = json.loads(lock.fingerprint().to_json())
    m = {"lock_hash": lock.hash, "python": lock.python, "platform": lock.platform, "fingerprint": fp}
    m.update(change)
    return m


def _tar_site(path: Path):
    return _site("slurm-tarball", f"env_delivery.path={path}")


def test_tarball_preflight_accepts_the_clients_tarball(lock, tmp_path):
    tb = _tarball(tmp_path / "env.tar.gz", _manifest(lock))
    found = delivery.preflight(delivery.resolve(_tar_site(tb), lock), lock, "default")
    assert [f.result for f in found] == ["pass"], found


@pytest.mark.parametrize("case", ["another-users-file", "directory-others-may-write"])
def test_an_env_tarball_someone_else_could_swap_is_refused(case, lock, tmp_path):
    """Every worker runs the tarball's interpreter as you: one that another user owns or may replace (it, or
    its directory: a shared area where anyone may write) is a preflight failure naming it, before any job."""
    shared = tmp_path / "shared"
    shared.mkdir()
    tb = _tarball(shared / "env.tar.gz", _manifest(lock))
    if case == "another-users-file":
        if os.getuid() != 0:
            pytest.skip("needs root to give the file to a second user (uid 65534)")
        os.chown(tb, NOBODY, NOBODY)
    else:
        shared.chmod(0o777)  # not sticky: anyone may replace the file
    (f,) = delivery.preflight(delivery.resolve(_tar_site(tb), lock), lock, "default")
    assert f.result == "fail" and f"env tarball {tb} is " in f.detail, f
    assert "chooses the code every worker runs as you" in f.detail
    assert ("owned by uid 65534" if case == "another-users-file" else "writable by others") in f.detail


@pytest.mark.parametrize("case", ["missing", "truncated", "other-lock", "other-python", "other-platform", "not-hpckit"])
def test_tarball_preflight_failures_name_file_and_fix(case, lock, tmp_path):
    tb = tmp_path / "env.tar.gz"
    if case == "truncated":
        _tarball(tb, _manifest(lock), extra={"lib/big": os.urandom(300_000)})
        tb.write_bytes(tb.read_bytes()[:150_000])
    elif case == "other-lock":
        other = Lock(pins={**lock.pins, "numpy": "1.0.0"}, python=lock.python)
        _tarball(tb, _manifest(other))
    elif case == "other-python":
        other = Lock(pins=dict(lock.pins), python="3.12.1")
        _tarball(tb, _manifest(other))
    elif case == "other-platform":
        _tarball(tb, _manifest(lock, platform="linux-aarch64"))
    elif case == "not-hpckit":
        with tarfile.open(tb, "w:gz") as tf:
            tf.add(__file__, "x.py")
    site = delivery.resolve(_tar_site(tb), lock)
    (f,) = delivery.preflight(site, lock, "default")
    assert f.result == "fail" and str(tb) in f.detail, f
    assert f.fix == f"hpckit pack -o {tb}"
    expect = {"missing": "not found", "truncated": "truncated", "other-lock": "numpy: client",
              "other-python": "python: client 3.11, delivered 3.12", "other-platform": "platform linux-aarch64",
              "not-hpckit": "not made by hpckit pack"}[case]
    assert expect in f.detail, f.detail
    with pytest.raises(delivery.DeliveryError, match="fix: hpckit pack -o"):
        delivery.prepare(_tar_site(tb))


def _local_package(root: Path, body: str) -> Path:
    """``mypkg`` 1.0 installed from a local directory (PEP 610 direct_url.json), as `pip install ./mypkg`
    leaves it: its code in ``root/mypkg``, its metadata in ``root/mypkg-1.0.dist-info``."""
    (root / "mypkg").mkdir(parents=True, exist_ok=True)
    (root / "mypkg" / "__init__.py").write_text(body)
    info = root / "mypkg-1.0.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mypkg\nVersion: 1.0\n")
    (info / "top_level.txt").write_text("mypkg\n")
    (info / "direct_url.json").write_text(json.dumps({"url": f"file://{root}/src", "dir_info": {}}))
    return root


def test_tarball_packed_from_other_code_of_a_local_package_is_refused(lock, tmp_path, monkeypatch):
    """A package installed from a local path keeps its version when its code changes: a tarball packed
    before the edit passes the version check, and its workers would run the old code. The manifest's code
    digests tell them apart (and name the package); the unpack directory is keyed by them too."""
    from hpckit.deploy.envlock import code_digest, env_key, local_code

    _local_package(tmp_path / "site", "SCALE = 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    mine = Lock(pins={**lock.pins, "mypkg": "1.0"}, python=lock.python, local={**lock.local, "mypkg": "src"})
    packed = local_code(mine)
    assert packed["mypkg"] == code_digest("mypkg") and packed["mypkg"].startswith("sha256:")
    tb = _tarball(tmp_path / "env.tar.gz", _manifest(mine, code=packed, env_key=env_key(mine.hash, packed)))
    site = delivery.resolve(_tar_site(tb), mine)
    assert [f.result for f in delivery.preflight(site, mine, "default")] == ["pass"]

    (tmp_path / "site" / "mypkg" / "__init__.py").write_text("SCALE = 2.0  # the physicist's fix\n")
    assert local_code(mine)["mypkg"] != packed["mypkg"]
    (f,) = delivery.preflight(site, mine, "default")
    assert f.result == "fail" and "other code of mypkg (same version 1.0)" in f.detail, f.detail
    assert f.fix == f"hpckit pack -o {tb}"
    assert env_key(mine.hash, local_code(mine)) != env_key(mine.hash, packed) != mine.hash
    assert env_key(mine.hash, {}) == mine.hash  # no local package: the lock hash, as before


def test_lock_file_that_differs_from_the_running_environment(tmp_path, lock):
    bad = Lock(pins={**lock.pins, "numpy": "1.0.0"}, python=lock.python)
    bad.write(tmp_path / "hpckit.lock")
    with pytest.raises(delivery.DeliveryError, match=r"numpy: lock 1.0.0, here .*\nfix: lock again"):
        delivery.client_lock(_site("slurm-local"), cwd=tmp_path)
    lock.write(tmp_path / "hpckit.lock")
    got, src = delivery.client_lock(_site("slurm-local"), cwd=tmp_path)
    assert got.hash == lock.hash and src == str(tmp_path / "hpckit.lock")


# ------------------------------------------------------------------------------------------------
# tarballs: the job's unpack piece, run with bash as a job would


def _job(site, tmp_path: Path, tail: str) -> Path:
    script = tmp_path / f"job-{os.urandom(3).hex()}.sh"
    script.write_text("\n".join(["#!/bin/bash", *prologue_lines(site, "dask"), tail, ""]))
    return script


def _run_job(script: Path) -> subprocess.CompletedProcess:
    env = {"HOME": os.environ.get("HOME", "/root"), "PATH": f"{sys.prefix}/bin:/usr/bin:/bin",
           "PYTHONPATH": str(REPO), "VIRTUAL_ENV": sys.prefix}
    return subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=120)


def test_unpack_once_atomic_reused_and_clean_path(lock, tmp_path):
    tb = _tarball(tmp_path / "env.tar.gz", _manifest(lock))
    cache = tmp_path / "node"
    site = delivery.resolve(_site("slurm-tarball", f"env_delivery.path={tb}", f"env_delivery.node_scratch={cache}"), lock)
    tail = 'echo "ENV=$HPCKIT_ENV_DIR"; echo "PATH=$PATH"; echo "PYTHONPATH=${PYTHONPATH-unset}"; "$HPCKIT_ENV_DIR/bin/python3"'
    jobs = [_job(site, tmp_path, tail) for _ in range(3)]
    procs = [subprocess.Popen(["bash", str(j)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={"PATH": f"{sys.prefix}/bin:/usr/bin:/bin", "PYTHONPATH": str(REPO)}) for j in jobs]
    outs = [p.communicate(timeout=60) for p in procs]
    key = lock.hash.split(":")[1][:16]
    env_dir = cache / f"hpckit-{os.getuid()}" / "envs" / key
    for (out, err), p in zip(outs, procs):
        assert p.returncode == 0, err
        assert f"ENV={env_dir}" in out and "PYTHONPATH=unset" in out and out.rstrip().endswith("3.11.7")
        path = out.split("PATH=", 1)[1].splitlines()[0]
        assert path == f"{env_dir}/bin:/usr/local/bin:/usr/bin:/bin"
    assert (cache / f"hpckit-{os.getuid()}").stat().st_mode & 0o777 == 0o700  # this user's own, in shared scratch
    # one unpacked directory, no temporary left; a later job reuses it untouched
    assert sorted(p.name for p in (cache / f"hpckit-{os.getuid()}" / "envs").iterdir()) == [key, f"{key}.lock"]
    marker = env_dir / "reused"
    marker.write_text("x")
    assert _run_job(_job(site, tmp_path, tail)).returncode == 0 and marker.exists()


NOBODY = 65534


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a directory to a second user (uid 65534)")
@pytest.mark.parametrize("planted", ["their-directory", "link-to-theirs"])
def test_node_scratch_directory_another_user_made_first_is_refused(planted, lock, tmp_path):
    """Node-local scratch (/tmp) is shared by every user of the node. Another user (a real one: uid 65534) who
    makes this user's hpckit directory there first, or a link of that name to theirs, with an "unpacked
    environment" under the name the job looks for: the job refuses, naming the directory, and runs nothing of
    theirs (before, it would have run their python as this user, and the launch would have copied the run's
    keys into their directory)."""
    tb = _tarball(tmp_path / "env.tar.gz", _manifest(lock))
    cache = tmp_path / "node"
    cache.mkdir(mode=0o1777)
    cache.chmod(0o1777)  # like /tmp
    mine = cache / f"hpckit-{os.getuid()}"
    theirs = mine if planted == "their-directory" else tmp_path / "theirs"
    env = theirs / "envs" / lock.hash.split(":")[1][:16]
    ran = tmp_path / "their-code-ran"
    for name in ("run_in_env", "bin/python3"):
        (env / name).parent.mkdir(parents=True, exist_ok=True)
        (env / name).write_text(f"#!/bin/sh\ntouch {ran}\n")
        (env / name).chmod(0o755)
    for path in [theirs, *theirs.rglob("*")]:
        os.chown(path, NOBODY, NOBODY)
    theirs.chmod(0o777)
    if planted == "link-to-theirs":
        mine.symlink_to(theirs)
        os.lchown(mine, NOBODY, NOBODY)
    site = delivery.resolve(_site("slurm-tarball", f"env_delivery.path={tb}", f"env_delivery.node_scratch={cache}"), lock)
    r = _run_job(_job(site, tmp_path, 'echo WORKER-STARTED; "$HPCKIT_ENV_DIR/bin/python3"'))
    assert r.returncode == 78 and "WORKER-STARTED" not in r.stdout, r
    assert f"{mine} on " in r.stderr and "is not this user's own directory" in r.stderr, r.stderr
    assert "fix: --set env_delivery.node_scratch=" in r.stderr
    assert not ran.exists()


def test_a_job_started_in_a_shared_directory_imports_nothing_planted_there(lock, tmp_path):
    """Workers start with `python -m ...`, which puts the working directory first on sys.path; a job whose
    working directory is shared scratch (a staged site's is /tmp) would import a package another user left
    there. The prologue exports PYTHONSAFEPATH: the planted module is not found, and nothing of it runs."""
    planted = tmp_path / "shared"
    planted.mkdir()
    ran = tmp_path / "planted-code-ran"
    (planted / "hpckit_probe_planted.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    site = delivery.resolve(_site("slurm-local", "env_delivery.mode=venv"), lock)
    r = _run_job(_job(site, tmp_path, f"cd {planted} && {sys.executable} -m hpckit_probe_planted"))
    assert r.returncode != 0 and "No module named hpckit_probe_planted" in r.stderr, r
    assert not ran.exists()


def test_worker_scratch_is_the_users_own_directory(lock, tmp_path):
    """`scratch` (Dask's spill files, which it unpickles when read back; TaskVine's cache) is often shared
    (/tmp): the workers get `<scratch>/hpckit-<uid>`, 0700; one another user made first is refused."""
    shared = tmp_path / "scratch"
    shared.mkdir(mode=0o1777)
    site = delivery.resolve(_site("slurm-local", "env_delivery.mode=venv", f"scratch={shared}"), lock)
    r = _run_job(_job(site, tmp_path, 'echo "SCRATCH=$HPCKIT_SCRATCH"'))
    mine = shared / f"hpckit-{os.getuid()}"
    assert r.returncode == 0 and f"SCRATCH={mine}\n" in r.stdout, r
    assert mine.stat().st_mode & 0o777 == 0o700
    if os.getuid() == 0:  # a real second owner needs root
        mine.rmdir()
        mine.mkdir(mode=0o777)
        os.chown(mine, NOBODY, NOBODY)
        r = _run_job(_job(site, tmp_path, 'echo WORKER-STARTED'))
        assert r.returncode == 78 and "WORKER-STARTED" not in r.stdout, r
        assert "is not this user's own directory" in r.stderr and "fix: --set scratch=" in r.stderr, r.stderr


def test_repack_with_new_code_of_the_same_versions_is_unpacked_anew(lock, tmp_path):
    """Two tarballs of one lock whose local packages' code differs (env_key) get two unpack directories on a
    node: the second is not answered by the first's (which holds the old code)."""
    cache = tmp_path / "node"
    tail = 'echo "ENV=$HPCKIT_ENV_DIR"'
    seen = []
    for n, code in enumerate(({"mypkg": "sha256:" + "1" * 64}, {"mypkg": "sha256:" + "2" * 64})):
        from hpckit.deploy.envlock import env_key

        key = env_key(lock.hash, code)
        tb = _tarball(tmp_path / f"env{n}.tar.gz", _manifest(lock, code=code, env_key=key))
        site = delivery.resolve(_site("slurm-tarball", f"env_delivery.path={tb}",
                                      f"env_delivery.node_scratch={cache}"), lock)
        r = _run_job(_job(site, tmp_path, tail))
        assert r.returncode == 0, r.stderr
        seen.append(r.stdout.split("ENV=", 1)[1].split()[0])
        assert seen[-1] == str(cache / f"hpckit-{os.getuid()}" / "envs" / key.split(":")[1][:16])
    assert seen[0] != seen[1]


@pytest.mark.parametrize("case", ["missing", "truncated", "other-lock", "other-platform", "scratch-not-writable"])
def test_unpack_failures_in_the_job_name_file_and_fix(case, lock, tmp_path):
    tb = tmp_path / "env.tar.gz"
    cache = tmp_path / "node"
    m = _manifest(lock)
    if case == "truncated":
        _tarball(tb, m, extra={"lib/big": os.urandom(400_000)})
        tb.write_bytes(tb.read_bytes()[:200_000])
    elif case == "other-lock":
        _tarball(tb, _manifest(Lock(pins={**lock.pins, "numpy": "1.0.0"}, python=lock.python)))
    elif case == "other-platform":
        # an aarch64 ELF header (no aarch64 interpreter exists on this x86_64 machine): exec fails as it would
        elf = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x02\x00\xb7\x00" + b"\0" * 44
        _tarball(tb, m, python_body=elf)
    elif case != "missing":
        _tarball(tb, m)
    if case == "scratch-not-writable":
        cache.mkdir()
        cache.chmod(0o500)
        if os.access(cache, os.W_OK):  # root ignores modes: make the scratch a file instead
            cache.chmod(0o700)
            cache.rmdir()
            cache.write_text("not a directory")
    site = delivery.resolve(_site("slurm-tarball", f"env_delivery.path={tb}", f"env_delivery.node_scratch={cache}"), lock)
    r = _run_job(_job(site, tmp_path, 'echo WORKER-STARTED'))
    assert r.returncode == 78 and "WORKER-STARTED" not in r.stdout, r
    assert str(tb if case != "scratch-not-writable" else cache) in r.stderr
    expect = {"missing": "fix: hpckit pack -o", "truncated": "fix: hpckit pack -o",
              "other-lock": "this launch's lock is", "other-platform": "fix: hpckit pack on a machine of this platform",
              "scratch-not-writable": "fix: --set env_delivery.node_scratch="}[case]
    assert expect in r.stderr, r.stderr
    if cache.is_dir():  # nothing half-unpacked is left for the next job to trust
        envs = cache / f"hpckit-{os.getuid()}" / "envs"
        left = [p.name for p in envs.iterdir()] if envs.is_dir() else []
        assert all(name.endswith(".lock") for name in left), left


# ------------------------------------------------------------------------------------------------
# images: launch-side checks with the real (rootful) podman


needs_podman = pytest.mark.usefixtures("podman_service")  # tests/services.py sets it up on first need


def _podman(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=300)


@needs_podman
def test_image_preflight_missing_image_names_build_command(lock):
    site = delivery.resolve(_site("slurm-podman", "container.image=localhost/hpckit-no-such:1"), lock)
    (f,) = delivery.preflight(site, lock, "default")
    assert f.result == "fail" and "localhost/hpckit-no-such:1 does not exist" in f.detail
    assert f.fix == "hpckit build --site slurm-podman"


@needs_podman
def test_image_preflight_other_lock_and_no_label(lock, tmp_path):
    """Small images on the local Debian base: one labelled with another lock, one without a label, one with
    the client's lock but other code of hpckit (a build before an edit of the checkout)."""
    base = "localhost/hpckit-debian:bookworm"
    stale = json.dumps(json.dumps({"hpckit": "sha256:" + "0" * 64}))  # built from other code of hpckit
    tags = {f"localhost/hpckit-test-otherlock:{os.getpid()}": "LABEL org.hpckit.lock-hash=sha256:0000\n",
            f"localhost/hpckit-test-nolabel:{os.getpid()}": "",
            f"localhost/hpckit-test-othercode:{os.getpid()}":
                f"LABEL org.hpckit.lock-hash={lock.hash}\nLABEL org.hpckit.code={stale}\n"}
    try:
        for tag, label in tags.items():
            (tmp_path / "Containerfile").write_text(f"FROM {base}\n{label}")
            r = _podman("build", "--pull=never", "--network=none", "-t", tag, str(tmp_path))
            assert r.returncode == 0, r.stderr
        other, nolabel, othercode = tags
        (f,) = delivery.preflight(delivery.resolve(_site("slurm-podman", f"container.image={other}"), lock), lock, "x")
        assert f.result == "fail" and f"built from lock sha256:0000, the client's lock is {lock.hash}" in f.detail
        assert f.fix.startswith("hpckit build --site slurm-podman")
        (f,) = delivery.preflight(delivery.resolve(_site("slurm-podman", f"container.image={nolabel}"), lock), lock, "x")
        assert f.result == "fail" and "no org.hpckit.lock-hash label" in f.detail
        (f,) = delivery.preflight(delivery.resolve(_site("slurm-podman", f"container.image={othercode}"), lock), lock, "x")
        assert f.result == "fail" and "other code of hpckit (same version" in f.detail, f.detail
    finally:
        for tag in tags:
            _podman("rmi", "-f", tag)


def test_shifter_without_registry_says_so(lock):
    site = delivery.resolve(_site("perlmutter", "container.runtime=shifter"), lock)
    (f,) = delivery.preflight(site, lock, "default")
    assert f.result == "fail" and "registry" in f.detail and "--set container.registry=" in f.fix


def test_doctor_runs_the_same_check(lock, tmp_path):
    from hpckit.doctor import run_checks

    checks = run_checks("slurm-tarball", [f"env_delivery.path={tmp_path / 'none.tar.gz'}"], "dask")
    bad = [c for c in checks if c.name == "env tarball"]
    assert bad and bad[0].result == "fail" and bad[0].fix == f"hpckit pack -o {tmp_path / 'none.tar.gz'}"


def test_a_taskvine_worker_job_keeps_its_workspace_in_the_users_own_directory(lock, tmp_path):
    """vine_worker's workspace is $TMPDIR/worker-<uid>-<pid> (a name another user could make first in a
    shared /tmp), and a directory given with --workdir is emptied when a manager leaves and removed at exit
    (with `scratch: /tmp`, the user's whole /tmp): the job passes no --workdir and points TMPDIR at the
    user's own 0700 directory of the site's scratch. Run with a stand-in vine_worker that says what it got."""
    shared = tmp_path / "scratch"
    shared.mkdir(mode=0o1777)
    site = delivery.resolve(_site("slurm-local", "env_delivery.mode=venv", f"scratch={shared}"), lock)
    script = tmp_path / "worker_job.sh"
    script.write_text(render_files(site, "taskvine")["worker_job.sh"])
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "vine_worker").write_text('#!/bin/sh\necho "ARGS=$*"\necho "TMPDIR=$TMPDIR"\n')
    (bindir / "vine_worker").chmod(0o755)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path), "HPCKIT_VINE_MANAGER": "10.0.0.1",
           "HPCKIT_VINE_PORT": "9123"}
    r = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env, timeout=60)
    mine = shared / f"hpckit-{os.getuid()}"
    assert r.returncode == 0 and f"TMPDIR={mine}\n" in r.stdout, r
    assert "--workdir" not in r.stdout and "10.0.0.1 9123" in r.stdout, r.stdout
    assert mine.stat().st_mode & 0o777 == 0o700
