"""Container definitions: rendered from the lock, parsed by a real Singularity-recipe parser (spython).

No image is built with Apptainer on this machine: Apptainer is not installable here (not in Debian 12,
not on PyPI). These tests check the rendered .def and the exact `apptainer build` command line; the OCI
image is really built with podman in test_env_slow.py.
"""

from __future__ import annotations

import shlex
import shutil

import pytest
from spython.main.parse.parsers import SingularityParser
from typer.testing import CliRunner

from hpckit.cli import app
from hpckit.deploy import container, envlock
from hpckit.deploy.container import ContainerError, ContainerSpec


@pytest.fixture(scope="module")
def lock():
    return envlock.make_lock(closure=True)


SPEC = ContainerSpec(runtime="apptainer", base="docker.io/library/python:3.11-slim-bookworm",
                     binds=("/cvmfs", "/pscratch/sd:/scratch", "$SCRATCH"))


def test_apptainer_definition_parses(tmp_path, lock):
    text = container.render_definition(lock, SPEC, "apptainer")
    path = tmp_path / "hpckit.def"
    path.write_text(text)
    recipes = SingularityParser(str(path)).recipe
    assert list(recipes) == ["spython-base"]  # one stage
    recipe = recipes["spython-base"]
    assert recipe.fromHeader == "docker.io/library/python:3.11-slim-bookworm"
    labels = dict(label.split(" ", 1) for label in recipe.labels)
    assert labels["org.hpckit.lock-hash"] == lock.hash
    assert labels["org.hpckit.python"] == "3.11"
    assert 'PYTHONNOUSERSITE="1"' in recipe.environ
    assert f'HPCKIT_LOCK_HASH="{lock.hash}"' in recipe.environ
    assert "hpckit.lock /opt/hpckit/hpckit.lock" in recipe.files
    post = "\n".join(recipe.install)
    # installs only from the lock: no index, no dependency resolution, then pip check
    assert "pip install --no-index --no-deps" in post and "-r /opt/hpckit/hpckit.lock" in post
    assert "pip check" in post
    assert "mkdir -p /cvmfs /scratch" in post  # bind points from the site; $SCRATCH is left to runtime
    assert recipe.cmd == 'exec /opt/hpckit/env/bin/hpckit "$@"'


def test_apptainer_build_command(lock):
    plan = container.plan_build(lock, SPEC, have=frozenset({"apptainer"}), tag="ana.sif")
    assert plan.commands == [["apptainer", "build", "--fakeroot", "ana.sif", "hpckit.def"]]
    assert plan.artifact == "ana.sif" and plan.definition_name == "hpckit.def"
    print("no image is built with Apptainer on this machine (not installable here); command checked:",
          plan.shell())


def test_apptainer_without_apptainer_builds_oci_archive(lock):
    plan = container.plan_build(lock, SPEC, have=frozenset({"podman"}), tag="localhost/ana:1")
    assert plan.commands[0][:3] == ["podman", "build", "--pull=never"]
    assert plan.commands[1] == ["podman", "save", "--format", "docker-archive", "-o", "ana_1.tar", "localhost/ana:1"]
    assert any("apptainer build ana_1.sif docker-archive://ana_1.tar" in n for n in plan.notes)
    assert "hpckit.def" in plan.files and "Containerfile" in plan.files


def test_containerfile_shares_lock_and_labels(lock):
    spec = ContainerSpec(runtime="podman", base=container.LOCAL_BASE, binds=("/cvmfs",))
    text = container.render_definition(lock, spec, "oci")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == f"FROM {container.LOCAL_BASE}"
    assert f'LABEL org.hpckit.lock-hash="{lock.hash}"' in lines
    assert 'ENV PYTHONNOUSERSITE="1"' in lines
    assert "COPY hpckit.lock /opt/hpckit/hpckit.lock" in lines
    instructions = {ln.split()[0] for ln in lines if not ln.startswith(" ")}
    assert instructions <= {"FROM", "LABEL", "ENV", "COPY", "RUN", "CMD"}
    apptainer = container.render_definition(lock, spec, "apptainer")
    # the same install steps in both
    for step in ("python3 -m venv /opt/hpckit/env", "-r /opt/hpckit/hpckit.lock", "mkdir -p /cvmfs"):
        assert step in text and step in apptainer


def test_changed_wheel_of_the_same_version_misses_the_layer_cache(lock, tmp_path):
    """A wheel built from a local project (hpckit itself) changes with its code, not its version: the
    Containerfile COPYs the wheels' digest before the bind-mounted install step, whose cache key would
    otherwise be the same and reinstall the old code (an image of a stale hpckit failed CI's Dask workers)."""
    text = container.render_definition(lock, ContainerSpec(runtime="podman", base=container.LOCAL_BASE), "oci")
    lines = text.splitlines()
    copy = lines.index("COPY wheels.sha256 /opt/hpckit/wheels.sha256")
    assert copy < next(i for i, ln in enumerate(lines) if ln.startswith("RUN --mount=type=bind,source=wheels"))
    whl = tmp_path / "hpckit-0.1.0-py3-none-any.whl"
    whl.write_bytes(b"old code")
    before = container.wheels_digest([whl])
    whl.write_bytes(b"new code")
    assert container.wheels_digest([whl]) != before and whl.name in before


@pytest.mark.parametrize("runtime, first", [
    ("podman", ["podman", "build", "--pull=never", "--network=none"]),
    ("podman-hpc", ["podman-hpc", "build", "--pull=never"]),
    ("shifter", ["podman", "build", "--pull=never"]),
])
def test_oci_build_commands(lock, runtime, first):
    plan = container.plan_build(lock, ContainerSpec(runtime=runtime), tag="localhost/x:1")
    assert plan.commands[0][: len(first)] == first
    assert plan.commands[0][-3:] == ["-t", "localhost/x:1", "."]
    if runtime == "podman-hpc":
        assert plan.commands[1] == ["podman-hpc", "migrate", "localhost/x:1"]


def test_site_build_command_override(lock):
    spec = ContainerSpec(runtime="podman-hpc", build_command="podman-hpc build --squash -t {tag} -f {definition} .")
    plan = container.plan_build(lock, spec, tag="t:1")
    assert plan.commands[0] == shlex.split("podman-hpc build --squash -t t:1 -f Containerfile .")


def test_run_command_binds():
    spec = ContainerSpec(runtime="apptainer", binds=("/cvmfs", "/scratch"))
    assert container.run_command(spec, "a.sif", ["hpckit", "--help"]) == [
        "apptainer", "exec", "--bind", "/cvmfs,/scratch", "a.sif", "hpckit", "--help"]
    spec = ContainerSpec(runtime="podman", binds=("/cvmfs",))
    assert container.run_command(spec, "img", ["x"]) == ["podman", "run", "--rm", "--pull=never", "-v", "/cvmfs:/cvmfs", "img", "x"]
    assert container.run_command(ContainerSpec(runtime="shifter", binds=("/a:/b",)), "img", ["x"]) == [
        "shifter", "--image=img", "--volume=/a:/b", "x"]


def test_runtime_none_and_unknown(lock):
    with pytest.raises(ContainerError, match="hpckit pack"):
        container.plan_build(lock, ContainerSpec(runtime="none"))
    with pytest.raises(ContainerError, match="unknown container runtime"):
        ContainerSpec(runtime="docker")


def test_site_container_section():
    """Built-in sites through the Site model: frontier has Apptainer and binds; local has no container."""
    spec = container.site_container("frontier")
    assert spec.runtime == "apptainer" and "/lustre/orion" in spec.binds
    with pytest.raises(ContainerError, match="site local has no container section"):
        container.site_container("local")
    with pytest.raises(ContainerError, match="unknown site 'nosuch'"):
        container.site_container("nosuch")


def test_cli_build_site_without_container_section(tmp_path, monkeypatch, lock):
    lock.write(tmp_path / "hpckit.lock")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["build", "--site", "local", "--output-dir", "out"])
    assert res.exit_code == 1
    assert "site local has no container section" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hpckit.lock"]  # nothing half-written


def test_cli_build_dry_run_site(tmp_path, monkeypatch, lock):
    lock.write(tmp_path / "hpckit.lock")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["build", "--site", "frontier", "--dry-run", "--base", "docker.io/library/python:3.11-slim"])
    assert res.exit_code == 0, res.output
    assert "From: docker.io/library/python:3.11-slim" in res.output
    assert "mkdir -p /lustre/orion" in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hpckit.lock"]


def test_cli_build_missing_lock(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["build", "--dry-run", "--lock", "missing.lock"])
    assert res.exit_code == 1 and "hpckit env lock" in res.output


def test_cli_build_apptainer_site_prints_the_sif_the_site_runs(tmp_path, monkeypatch):
    """frontier's `image: built` is <env_delivery.path>/hpckit-env_<hash>.sif; without apptainer here the
    printed line converts the archive of the podman image built from the same lock into exactly that file."""
    from hpckit.deploy import delivery, load_site

    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["build", "--site", "frontier", "--dry-run"])
    assert res.exit_code == 0, res.output
    lock = delivery.default_lock()
    sif = delivery.resolve(load_site("frontier").site, lock).container.image
    tag = container.default_tag(lock)
    archive = tag.rsplit("/", 1)[-1].replace(":", "_") + ".tar"
    if shutil.which("apptainer") is None:
        assert f"podman save --format docker-archive -o {archive} {tag}" in res.output
        assert f"apptainer build {sif} docker-archive://{archive}" in res.output
    assert f"apptainer build --fakeroot {sif} hpckit.def" in res.output
