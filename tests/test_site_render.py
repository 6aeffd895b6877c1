"""Rendering every shipped site x backend: golden files, bash -n, Parsl configs, dask-jobqueue, HTCondor.

Regenerate the golden files after a reviewed change with: HPCKIT_UPDATE_GOLDEN=1 pytest tests/test_site_render.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

try:
    from tests.site_util import BACKENDS, CASES, GOLDEN, SHIPPED, isolated_sites, site  # noqa: F401
except ImportError:
    from site_util import BACKENDS, CASES, GOLDEN, SHIPPED, isolated_sites, site  # noqa: F401

from hpckit.deploy import render_all, render_files
from hpckit.deploy.backends.dask import render_dask
from hpckit.deploy.backends.taskvine import render_taskvine

UPDATE = os.environ.get("HPCKIT_UPDATE_GOLDEN") == "1"


@pytest.fixture(scope="module")
def rendered():
    return {(s, b): render_files(site(s), b) for s, b in CASES}


@pytest.mark.parametrize("name,backend", CASES)
def test_golden(name, backend, rendered):
    """Every shipped site x backend matches its reviewed files in tests/golden/<site>/<backend>/."""
    files = rendered[(name, backend)]
    d = GOLDEN / name / backend
    if UPDATE:
        d.mkdir(parents=True, exist_ok=True)
        for old in d.iterdir():
            old.unlink()
        for fname, text in files.items():
            (d / fname).write_text(text)
    assert d.is_dir(), f"no golden files for {name}/{backend}; run with HPCKIT_UPDATE_GOLDEN=1 and review them"
    assert sorted(p.name for p in d.iterdir()) == sorted(files)
    for fname, text in files.items():
        assert text == (d / fname).read_text(), f"{name}/{backend}/{fname} differs from the golden file"


def test_every_shell_script_passes_bash_n(rendered):
    n = 0
    for (name, backend), files in rendered.items():
        for fname, text in files.items():
            if fname.endswith(".sh"):
                r = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
                assert r.returncode == 0, f"{name}/{backend}/{fname}: {r.stderr}"
                n += 1
    assert n >= len(CASES)


@pytest.mark.parametrize("name", SHIPPED)
def test_parsl_config_imports_and_builds_config(name, tmp_path, rendered):
    import parsl

    path = tmp_path / "parsl_config.py"
    path.write_text(rendered[(name, "parsl")]["parsl_config.py"])
    spec = importlib.util.spec_from_file_location(f"parsl_config_{name.replace('-', '_')}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert isinstance(mod.config, parsl.Config)
    cfg = mod.get_config(run_dir=str(tmp_path / "runinfo"))
    assert isinstance(cfg, parsl.Config) and cfg.run_dir == str(tmp_path / "runinfo")
    (htex,) = cfg.executors
    s = site(name)
    provider = type(htex.provider).__name__
    expected = {"slurm": "SlurmProvider", "htcondor": "CondorProvider", "local": "LocalProvider",
                "pbs": "TorqueProvider" if s.pbs.flavor == "torque" else "PBSProProvider"}[s.scheduler]
    assert provider == expected
    if s.loopback:
        assert htex.address == "127.0.0.1"
    if s.scheduler == "slurm":
        for d in [f"--cpus-per-task={s.job_cores}"] + [f"#SBATCH {x}" for x in s.extra_directives]:
            assert d in htex.provider.scheduler_options
    if s.scheduler != "local":
        assert htex.provider.walltime and htex.provider.max_blocks == s.max_jobs
    if s.wrap_in_container:
        # podman runs through the job's hpckit_podman function (stops the container when the job is cancelled)
        assert htex.launch_cmd.startswith("hpckit_podman run" if s.container.runtime == "podman" else s.container.runtime)


DASK_SITES = [n for n in SHIPPED if site(n).scheduler != "local"]


@pytest.mark.parametrize("name", DASK_SITES)
def test_dask_builds_real_cluster(name):
    """Build the real dask-jobqueue cluster object (scheduler on 127.0.0.1, no jobs submitted)."""
    s = site(name)
    r = render_dask(s)
    cls = r.cluster_type()
    kwargs = dict(r.kwargs)
    kwargs["scheduler_options"] = {"host": "127.0.0.1", "dashboard_address": None}
    kwargs.pop("interface", None)  # hsn0/bond0 do not exist here; the worker side keeps --interface below
    cluster = cls(**kwargs)
    try:
        script = cluster.job_script()
        assert len(cluster.workers) == 0  # nothing submitted
    finally:
        cluster.close()
    # the rendered job_script (placeholder address) is the cluster's, up to the address
    addr = cluster.scheduler_address
    assert script.replace(addr, "tcp://<insert-scheduler-address-here>:8786").replace(
        " --interface " + s.network.interface if s.network.interface else "\0", ""
    ) == r.job_script.replace(" --interface " + s.network.interface if s.network.interface else "\0", "")
    life, stagger = s.lifetime()
    assert f"--lifetime {life}s --lifetime-stagger {stagger}s" in script
    if s.scheduler == "slurm":
        assert f"#SBATCH --cpus-per-task={s.job_cores}" in script
        assert "#SBATCH --time=" in script and "#SBATCH -J" not in script  # dask's own lines skipped
        for d in s.extra_directives + ([f"--constraint={s.constraint}"] if s.constraint else []) + (
                [f"--partition={s.partition}"] if s.partition else []):
            assert f"#SBATCH {d}" in script
    elif s.scheduler == "pbs":
        assert "#PBS -l walltime=" in script
        for d in s.extra_directives + ([f"-q {s.queue}"] if s.queue else []):
            assert f"#PBS {d}" in script
    else:
        assert "use_x509userproxy = true" in script if s.htcondor.x509_proxy else True
        assert "RequestCpus = MY.DaskWorkerCores" in script
    if s.wrap_in_container:
        assert f"{r.kwargs['python']} -m distributed.cli.dask_worker" in script


def test_dask_loopback_interface():
    r = render_dask(site("slurm-local"))
    assert r.kwargs["interface"] == "lo" and r.kwargs["scheduler_options"] == {"host": "127.0.0.1"}
    assert "--interface lo" in r.job_script


def test_local_site_renders_local_cluster():
    from distributed import LocalCluster

    r = render_dask(site("local"))
    assert r.cluster_class == "distributed.LocalCluster" and r.job_script is None
    cluster = LocalCluster(**{**r.kwargs, "n_workers": 0})
    try:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    finally:
        cluster.close()
    tv = render_taskvine(site("local"), "127.0.0.1", 9123)
    assert tv.command[:3] == ["vine_factory", "-T", "local"] and tv.command[-2:] == ["127.0.0.1", "9123"]


def test_htcondor_submit_descriptions_parse():
    """Every HTCondor rendering parses with the real HTCondor bindings (htcondor2.Submit).

    Checks: the submit description is accepted and the values we set read back. Does not check:
    matchmaking, schedd acceptance, or that the job runs (no HTCondor daemons on this machine).
    """
    htcondor2 = pytest.importorskip("htcondor2")
    n = 0
    for name in SHIPPED:
        s = site(name)
        if s.scheduler != "htcondor":
            continue
        for backend in BACKENDS:
            files = render_files(s, backend)
            for fname in ("worker_job.sub", "job_script.sub"):
                if fname not in files:
                    continue
                sub = htcondor2.Submit(files[fname])
                n += 1
                if fname == "worker_job.sub":
                    assert sub["request_cpus"] == str(s.job_cores)
                    assert sub["executable"] == "worker_job.sh"
                assert sub["universe"] == s.htcondor.universe
                if s.htcondor.x509_proxy:
                    assert sub["use_x509userproxy"] == "true"
                if s.htcondor.singularity_image_attr:
                    assert sub["MY.SingularityImage"] == ('"$ENV(HPCKIT_IMAGE)"' if s.container.image == "built"
                                                         else f'"{s.container.image}"')
    assert n >= 4
    with pytest.raises(Exception):
        htcondor2.Submit("universe = vanilla\nthis is not a submit line\n")


def test_taskvine_rendering():
    s = site("perlmutter", "account=m1234", "constraint=gpu&hbm80g")
    r = render_taskvine(s, "login01", 9200)
    assert r.config["max-workers"] == s.max_jobs and r.config["cores"] == s.job_cores
    assert r.config["worker-extra-options"] == f"--wall-time={s.lifetime()[0]}"
    assert r.command[:3] == ["vine_factory", "-T", "slurm"] and r.command[-2:] == ["login01", "9200"]
    assert "--account=m1234" in r.batch_options
    assert "'--constraint=gpu&hbm80g'" in r.batch_options  # a shell runs sbatch with these: quoted
    assert "--time=02:00:00" in r.batch_options and "--job-name" not in r.batch_options
    assert r.wrapper is not None and "exec podman-hpc run --rm --net host" in r.wrapper
    assert subprocess.run(["bash", "-n"], input=r.wrapper, text=True).returncode == 0
    assert render_taskvine(site("pbs-local")).command[2] == "torque"
    assert render_taskvine(site("lpc")).config["transfer-port"] == "10000:10070"


def test_render_all_writes_files(tmp_path):
    paths = render_all(site("slurm-local"), "taskvine", tmp_path / "out")
    names = {p.name for p in paths}
    assert {"vine_factory.json", "vine_factory.sh", "worker_job.sh"} <= names
    cfg = json.loads((tmp_path / "out" / "vine_factory.json").read_text())
    assert cfg["cores"] == 1
    assert str((tmp_path / "out" / "vine_factory.json").resolve()) in (tmp_path / "out" / "vine_factory.sh").read_text()
    assert os.access(tmp_path / "out" / "worker_job.sh", os.X_OK)


def test_no_credentials_in_renderings(rendered):
    # the one mention allowed: a hand-submitted TaskVine worker names the file its user exports, never its text
    pw_file_flag = '${hpckit_vine_password:+--password "$hpckit_vine_password"}'
    for (name, backend), files in rendered.items():
        for fname, text in files.items():
            low = text.lower().replace(pw_file_flag, "")
            for bad in ("password", "x509up_u", "token=", "secret"):
                assert bad not in low, f"{name}/{backend}/{fname} contains {bad!r}"


def test_deploy_never_imports_processor_or_events():
    code = (
        "import sys, hpckit.deploy, hpckit.cli.deploy\n"
        "from hpckit.deploy import render_files, load_site\n"
        "for b in ('dask', 'parsl', 'taskvine'): render_files(load_site('slurm-local').site, b)\n"
        "bad = [m for m in sys.modules if m.startswith(('hpckit.processor', 'hpckit.events'))]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 0, r.stderr
    import pathlib

    import hpckit.deploy

    for f in pathlib.Path(hpckit.deploy.__file__).parent.rglob("*.py"):
        text = f.read_text()
        assert not re.search(r"^\s*(from|import)\s+hpckit\.(processor|events)|from hpckit import (processor|events)",
                             text, re.M), f


def test_cli_sites_show_render(tmp_path):
    from typer.testing import CliRunner

    from hpckit.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["sites"])
    assert r.exit_code == 0, r.output
    for name in SHIPPED:
        assert name in r.output
    r = runner.invoke(app, ["sites", "show", "perlmutter", "--set", "account=m77"], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "m77" in r.output and "--set" in r.output and "built-in perlmutter.yaml" in r.output
    out = tmp_path / "r"
    r = runner.invoke(app, ["render", "--site", "polaris", "--backend", "parsl", "--out", str(out)], terminal_width=300)
    assert r.exit_code == 0, r.output
    assert str(out / "parsl_config.py") in r.output and (out / "parsl_config.py").is_file()
    r = runner.invoke(app, ["render", "--site", "summit", "--backend", "dask", "--out", str(out)])
    assert r.exit_code == 1 and "known sites" in r.output
    r = runner.invoke(app, ["render", "--site", "local", "--backend", "spark", "--out", str(out)])
    assert r.exit_code == 1 and "unknown backend" in r.output


def test_slurm_local_script_syntax():
    from hpckit.core.resources import data_dir

    script = data_dir("sites").parent / "scripts" / "slurm-local.sh"
    if not script.is_file():
        pytest.skip("scripts/ is not shipped in the wheel; run from a checkout")
    r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(["bash", str(script), "bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr
