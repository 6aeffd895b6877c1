"""hpckit env lock: the lock file, its hash, and the worker-side fingerprint check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hpckit.cli import app
from hpckit.deploy import envlock
from hpckit.deploy.envlock import EnvironmentMismatch, Fingerprint, LockError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def closure_lock():
    return envlock.make_lock(closure=True)


def test_closure_pins_installed_versions(closure_lock):
    from importlib import metadata

    import hpckit

    pins = closure_lock.pins
    assert pins["hpckit"] == hpckit.__version__
    for name in ("numpy", "awkward", "uproot", "jinja2"):
        assert pins[name] == metadata.version(name)
    assert "pip" not in pins
    assert "pytest" not in pins  # not needed by hpckit
    assert closure_lock.local["hpckit"] == str(REPO)


def test_full_lock_pins_everything():
    from importlib import metadata

    lock = envlock.make_lock()
    assert lock.pins["pytest"] == metadata.version("pytest")
    assert lock.pins["hpckit"]
    assert "pip" not in lock.pins


def test_lock_text_round_trip_and_hash(tmp_path, closure_lock):
    path = closure_lock.write(tmp_path / "hpckit.lock")
    text = path.read_text()
    assert text.startswith("# hpckit lock")
    assert f"# hash: {closure_lock.hash}" in text
    back = envlock.read_lock(path)
    assert back.pins == closure_lock.pins and back.hash == closure_lock.hash
    assert back.python == closure_lock.python and back.local == closure_lock.local
    # the hash covers pins and python major.minor only: comments and order do not matter
    shuffled = "\n".join(["# something else"] + sorted(line for line in text.splitlines() if not line.startswith("#"))[::-1])
    (tmp_path / "other.lock").write_text(shuffled + "\n")
    assert envlock.read_lock(tmp_path / "other.lock").pins == closure_lock.pins
    changed = dict(closure_lock.pins, numpy="0.0.1")
    assert envlock.lock_hash(changed, closure_lock.python) != closure_lock.hash


def test_pip_understands_the_lock(tmp_path, closure_lock):
    """`pip install -r` reads the lock; everything in it is already installed here, so a dry run with no
    index succeeds without any network."""
    lock = closure_lock.write(tmp_path / "hpckit.lock")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index", "-r", str(lock)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Requirement already satisfied: numpy==" in proc.stdout


def test_read_lock_errors(tmp_path):
    with pytest.raises(LockError, match="not found"):
        envlock.read_lock(tmp_path / "missing.lock")
    bad = tmp_path / "bad.lock"
    bad.write_text("numpy==1.0\nnumpy>=2\n")
    with pytest.raises(LockError, match=r"bad.lock:2: expected `name==version`"):
        envlock.read_lock(bad)


def test_cli_lock(tmp_path):
    out = tmp_path / "my.lock"
    res = CliRunner().invoke(app, ["env", "lock", "--closure", "--require", "pytest", "--output", str(out)])
    assert res.exit_code == 0, res.output
    lock = envlock.read_lock(out)
    assert "pytest" in lock.pins and "pluggy" in lock.pins  # the requirement and what it needs
    assert lock.requires == ["pytest"]


@pytest.mark.parametrize(
    "req, message",
    [("no-such-package-hpckit", "is not installed"), ("numpy<1", "does not satisfy it"), ("not a req!", "not a valid")],
)
def test_cli_lock_bad_require_writes_nothing(tmp_path, req, message):
    out = tmp_path / "x.lock"
    res = CliRunner().invoke(app, ["env", "lock", "--require", req, "--output", str(out)])
    assert res.exit_code == 1
    assert message in res.output
    assert list(tmp_path.iterdir()) == []


# -- fingerprint ----------------------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import pickle, sys
    from hpckit.deploy.envlock import EnvironmentMismatch, check_environment
    fp_json, guarded_file = sys.argv[1], sys.argv[2]
    try:
        check_environment(fp_json)
        print("CHECK OK")
    except EnvironmentMismatch as exc:
        print("REFUSED", exc.differences)
    call = pickle.load(open(guarded_file, "rb"))
    try:
        print("RESULT", call(20, 22))
    except EnvironmentMismatch as exc:
        print("GUARD REFUSED", exc.differences)
    except Exception as exc:
        print("OTHER", type(exc).__name__, exc)
    """
)


def _fake_dist(site: Path, name: str, version: str) -> None:
    d = site / f"{name}-{version}.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


def _worker(tmp_path: Path, fp: Fingerprint, shadow: tuple[str, str] | None):
    """A real worker process. With ``shadow``, its environment has that package at another version (a
    dist-info ahead of site-packages on its path), and it lacks the client-only module ``clientonly``."""
    import pickle

    client_mod = tmp_path / "client"
    client_mod.mkdir()
    (client_mod / "clientonly.py").write_text("def add(a, b):\n    return a + b\n")
    sys.path.insert(0, str(client_mod))
    try:
        import clientonly

        guarded = envlock.guarded(clientonly.add, fp)
        (tmp_path / "call.pkl").write_bytes(pickle.dumps(guarded))
    finally:
        sys.path.remove(str(client_mod))
        sys.modules.pop("clientonly", None)
    paths = [str(REPO)]
    if shadow:
        site = tmp_path / "worker-site"
        _fake_dist(site, *shadow)
        paths.insert(0, str(site))
    else:
        paths.append(str(client_mod))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    proc = subprocess.run([sys.executable, "-c", WORKER, fp.to_json(), str(tmp_path / "call.pkl")],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_worker_with_same_environment_runs(tmp_path, closure_lock):
    out = _worker(tmp_path, closure_lock.fingerprint(), shadow=None)
    assert "CHECK OK" in out and "RESULT 42" in out


def test_worker_with_one_package_at_another_version_is_refused(tmp_path, closure_lock):
    """The worker has jinja2 at another version: it refuses, naming jinja2 with both versions, before it
    unpickles the task (which would otherwise fail: the worker lacks the client's module)."""
    fp = closure_lock.fingerprint()
    out = _worker(tmp_path, fp, shadow=("jinja2", "0.0.1"))
    want = ("jinja2", fp.pins["jinja2"], "0.0.1")
    assert f"REFUSED [{want!r}]" in out
    assert f"GUARD REFUSED [{want!r}]" in out
    assert "ModuleNotFoundError" not in out


def test_mismatch_message_lists_packages():
    fp = Fingerprint(python="2.7", pins={"numpy": "0.1", "no-such-pkg": "1.0"})
    with pytest.raises(EnvironmentMismatch) as info:
        envlock.check_environment(fp)
    msg = str(info.value)
    assert "python: client 2.7, worker 3." in msg
    assert "numpy: client 0.1, worker " in msg
    assert "no-such-pkg: client 1.0, worker not installed" in msg
    assert fp.hash in msg
    import pickle

    again = pickle.loads(pickle.dumps(info.value))
    assert again.differences == info.value.differences


def test_fingerprint_json_round_trip(closure_lock):
    fp = closure_lock.fingerprint()
    back = Fingerprint.from_json(fp.to_json())
    assert back == fp and back.hash == closure_lock.hash
    assert json.loads(fp.to_json())["hash"] == closure_lock.hash
    assert fp.env() == {"HPCKIT_LOCK_HASH": closure_lock.hash}
    assert envlock.current_fingerprint(closure_lock) == fp


def test_pip_run_from_a_shared_working_directory_imports_nothing_planted_there(tmp_path, monkeypatch):
    """`hpckit pack`/`build` run `python -m pip wheel`; `python -m` puts the working directory first on
    sys.path, so run from /tmp a `pip/` another user left there would be what runs. hpckit's pip children
    leave the directory out (PYTHONSAFEPATH): the real pip builds the wheel and nothing planted runs."""
    from hpckit.deploy.envlock import _build_local_wheel

    shared = tmp_path / "shared"
    (shared / "pip").mkdir(parents=True)
    ran = tmp_path / "planted-pip-ran"
    (shared / "pip" / "__init__.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    (shared / "pip" / "__main__.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    project = tmp_path / "proj"
    (project / "tinypkg").mkdir(parents=True)
    (project / "tinypkg" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
        '[project]\nname = "tinypkg"\nversion = "0.1"\n')
    monkeypatch.chdir(shared)
    _build_local_wheel(project, tmp_path / "wheels")
    assert not ran.exists()
    assert [p.name for p in (tmp_path / "wheels").iterdir()] == ["tinypkg-0.1-py2.py3-none-any.whl"]
