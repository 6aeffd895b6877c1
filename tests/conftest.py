"""Shared fixtures: the bundled sample files and an independent uproot + awkward computation of the
dimuon example, to check every executor against."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import services
import uproot

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "data"
EXAMPLES = REPO / "examples"
sys.path.insert(0, str(EXAMPLES))

# Byte-code caching on for every process the tests start (hpckit CLI runs, engine workers, batch jobs):
# with PYTHONDONTWRITEBYTECODE set (some machines set it for everyone) each of several hundred processes
# compiles hpckit's modules anew, about 0.15 s of CPU each on a CPU-bound suite.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

MASS_EDGES = np.linspace(0, 120, 61)
DATASETS = {"DYJetsToLL": DATA / "nano_dy.root", "DoubleMuon": DATA / "nano_dimuon.root"}


def reference_dimuon(files: dict[str, Path] = DATASETS) -> dict:
    """The dimuon example computed with plain uproot + awkward + numpy, no hpckit."""
    cutflow, masses = {}, {}
    for dataset, path in files.items():
        with uproot.open(path) as f:
            mu = f["Events"].arrays(["Muon_pt", "Muon_eta", "Muon_phi", "Muon_mass", "Muon_charge"])
        n = ak.num(mu.Muon_pt)
        two = mu[n >= 2]
        os_ = two.Muon_charge[:, 0] != two.Muon_charge[:, 1]
        sel = two[os_]
        pt, eta, phi, m = (ak.to_numpy(sel[f"Muon_{x}"][:, :2]).astype(np.float64) for x in ("pt", "eta", "phi", "mass"))
        px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
        e = np.sqrt(px**2 + py**2 + pz**2 + m**2)
        msq = e.sum(1) ** 2 - px.sum(1) ** 2 - py.sum(1) ** 2 - pz.sum(1) ** 2
        masses[dataset] = np.histogram(np.sqrt(np.maximum(msq, 0)), bins=MASS_EDGES)[0]
        cutflow[dataset] = {
            "all events": len(mu),
            "muons": int(ak.sum(n)),
            ">=2 muons": len(two),
            "opposite-sign leading pair": int(ak.sum(os_)),
        }
    return {"cutflow": cutflow, "mass": masses}


@pytest.fixture(scope="session")
def reference() -> dict:
    return reference_dimuon()


def assert_matches_reference(out: dict, ref: dict) -> None:
    assert out["cutflow"] == ref["cutflow"]
    h = out["mass"]
    for dataset, counts in ref["mass"].items():
        np.testing.assert_array_equal(h[{"dataset": dataset}].values(), counts, err_msg=dataset)


@pytest.fixture
def fileset_path(tmp_path: Path) -> Path:
    """The example fileset with absolute paths."""
    fs = {
        ds: {"files": {str(path): "Events"}, "metadata": {"year": 2018}} for ds, path in DATASETS.items()
    }
    p = tmp_path / "fileset.json"
    p.write_text(json.dumps(fs))
    return p


# ---- machine services (tests/services.py): started on first need, once per session, stopped at the end ----


@pytest.fixture(scope="session", autouse=True)
def _service_dir(tmp_path_factory) -> Path:
    """The directory every xdist worker of this session shares (service outcomes, shared artefacts)."""
    shared = services.shared_dir_for(tmp_path_factory.getbasetemp())
    services.set_shared_dir(shared)
    return shared


@pytest.fixture
def slurm_service() -> None:
    services.ensure("slurm")


@pytest.fixture
def xrootd_service() -> None:
    services.ensure("xrootd")


@pytest.fixture
def podman_service() -> None:
    """Rootful podman (scripts/podman-setup.sh) and the local Debian base image (scripts/debian-base.sh)."""
    services.ensure("podman")


@pytest.fixture
def chromium_service() -> None:
    services.ensure("chromium")


def once(shared: Path, name: str, make):
    """``make()`` (returning text) run by one xdist worker of the session; the others wait and read it."""
    from filelock import FileLock

    done = shared / f"once-{name}.txt"
    with FileLock(str(shared / f"once-{name}.lock")):
        if not done.is_file():
            done.write_text(make())
        return done.read_text()


_PODMAN_FIXTURES = {"podman_service", "built_image", "base_image", "image"}


def _services_of(item) -> set[str]:
    """The machine services (tests/services.py) a test needs, from its markers and fixtures."""
    names = {m for m in ("slurm", "xrootd") if item.get_closest_marker(m)}
    fixtures = set(getattr(item, "fixturenames", ()))
    if fixtures & _PODMAN_FIXTURES:
        names.add("podman")
    if "chromium_service" in fixtures or item.module.__name__ == "test_report_browser":
        names.add("chromium")
    if item.module.__name__ == "test_cluster":
        names.add("cluster")
    return names


@pytest.hookimpl(trylast=True)  # after -k / -m deselected: only the services of the tests that run
def pytest_collection_modifyitems(config, items) -> None:
    """Tests that need no machine service first, then those that do; the slow end-to-end ones first within
    each. Meanwhile a background thread starts the services the session's tests need
    (tests/services.py:prestart): on a fresh machine their installs (apt, a debootstrapped base image:
    minutes) overlap the tests that need none instead of holding every worker at the services' lock. Slow
    first because pytest-xdist hands tests out in collection order, so a 3-minute test collected late
    finished a minute after every other worker was done (measured: one worker busy to 634 s, the other
    three to 555-570 s)."""
    needs = {id(item): _services_of(item) for item in items}
    items.sort(key=lambda item: (bool(needs[id(item)]), item.get_closest_marker("slow") is None))
    services.set_shared_dir(services.shared_dir_for(config._tmp_path_factory.getbasetemp()))
    services.prestart(set().union(*needs.values()) if needs else set())


# images hpckit builds carry this label; their untagged layers (podman's build cache) outlive `rmi <tag>`
_HPCKIT_LAYERS = ("images", "-q", "--no-trunc", "--filter", "dangling=true", "--filter", "label=org.hpckit.lock-hash")


def pytest_sessionstart(session) -> None:
    """In the controller only: the hpckit image layers there are before the session (kept at its end)."""
    if hasattr(session.config, "workerinput"):
        return
    before = _podman(*_HPCKIT_LAYERS).stdout if shutil.which("podman") else ""
    (session.config._tmp_path_factory.getbasetemp() / "layers-before.txt").write_text(before)


def pytest_sessionfinish(session, exitstatus) -> None:
    """In the controller only (not in an xdist worker): remove the session's images, with the build-cache
    layers the session left untagged (half a GB a session), and stop what tests/services.py started."""
    services.wait_prestarted()
    if hasattr(session.config, "workerinput"):
        return
    shared = session.config._tmp_path_factory.getbasetemp()
    problems = []
    images = shared / "once-built_image.txt"
    if images.is_file():
        tag = images.read_text().strip()
        if _podman("ps", "-q", "--filter", f"ancestor={tag}").stdout.strip():
            problems.append(f"a container of {tag} was still running at the end of the session")
        _podman("rmi", "-f", tag)
    if shutil.which("podman"):
        before_file = shared / "layers-before.txt"
        before = set(before_file.read_text().split()) if before_file.is_file() else set()
        left = [i for i in _podman(*_HPCKIT_LAYERS).stdout.split() if i not in before]
        if left:  # removing a leaf removes the untagged layers under it that nothing else uses
            _podman("rmi", *left)
    problems += services.stop_started(shared)
    if problems:
        session.config.get_terminal_writer().line("\n".join(problems), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# ---- the locked environment, made once per session and shared (test_env_slow, test_delivery_slurm) -----
# Building the image and packing the tarball are the slowest steps of the suite: each is done once per
# session (once across xdist workers too), from the lock `hpckit build`, `hpckit pack` and `hpckit launch`
# use by default, and every test reuses it.


@pytest.fixture(scope="session")
def default_lock_file(tmp_path_factory) -> Path:
    """The default lock (hpckit's closure plus its worker packages), written to a file."""
    from hpckit.deploy.delivery import default_lock

    return default_lock().write(tmp_path_factory.mktemp("lock") / "hpckit.lock")


def _podman(*args: str, timeout: float = 600):
    import subprocess

    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def built_image(default_lock_file, _service_dir) -> str:
    """`hpckit build --site slurm-podman` in a directory without a lock file: the image of the default lock
    on the local Debian base, tagged by the lock's hash. Removed at the end of the session
    (pytest_sessionfinish, which also fails the session if a container of it is still running)."""
    services.ensure("podman")

    def build() -> str:
        from hpckit.deploy.container import default_tag
        from hpckit.deploy.envlock import read_lock
        from launch_util import hpckit

        tag = default_tag(read_lock(default_lock_file))
        where = _service_dir / "build"
        where.mkdir(exist_ok=True)
        r = hpckit(["build", "--site", "slurm-podman"], cwd=where, timeout=1200)
        assert r.returncode == 0, r.stdout + r.stderr
        assert tag in r.stdout, r.stdout
        return tag

    return once(_service_dir, "built_image", build)


@pytest.fixture(scope="session")
def packed_env(default_lock_file, _service_dir) -> Path:
    """`hpckit pack --fast` (no .pyc, gzip level 1: the same environment, packed faster) of the default lock,
    under /tmp so that podman's /tmp bind shows it to containers."""

    def pack() -> str:
        from hpckit.deploy.envlock import read_lock
        from launch_util import hpckit

        out = _service_dir / "packed" / "env.tar.gz"
        out.parent.mkdir(exist_ok=True)
        r = hpckit(["pack", "--fast", "-o", str(out)], cwd=out.parent, timeout=1200)
        assert r.returncode == 0, r.stdout + r.stderr
        assert read_lock(default_lock_file).hash in r.stdout, r.stdout
        return str(out)

    return Path(once(_service_dir, "packed_env", pack))


@pytest.fixture
def parsl_tmp():
    """A short TMPDIR for a test's own Parsl worker pool (``worker_init=f"export TMPDIR={parsl_tmp}"``), removed
    after the test: the pool's multiprocessing manager leaves a pymp-* directory in TMPDIR, and its socket path
    must fit in 108 bytes (a pytest tmp_path may not). hpckit's own pools do the same (engines/parsl.pool_tmp)."""
    from hpckit.engines.parsl import pool_tmp

    with pool_tmp() as tmp:
        yield tmp


# In CI (CI=true) a skipped test of a real service proves nothing: only TaskVine may skip there, since
# ndcctools is not on PyPI. Any other skip is turned into a failure that shows the skip's reason.
_CI_MAY_SKIP = ("taskvine", "ndcctools", "vine_factory", "vine_worker")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes") or not report.skipped:
        return
    reason = str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr)
    if not any(word in reason.lower() for word in _CI_MAY_SKIP):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where only TaskVine may skip: {reason}"
