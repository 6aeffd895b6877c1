"""A core install (`pip install hpckit`, no extras): the optional modules are hidden in a subprocess by a
meta-path blocker (a fake of their absence: they are installed here), then render, the dry run, pack and
doctor say what is missing in one line, or work without it. Also `--version`, `-h`, units, RunSpec."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from launch_util import ANALYSIS, env

HIDDEN = ("dask_jobqueue", "distributed", "dask", "parsl", "psutil", "venv_pack", "ndcctools")

BLOCKER = f"""
import sys
class _Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {HIDDEN!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Hide())
from hpckit.cli import app
app(prog_name="hpckit")
"""


def _core(args: list[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCKER, *args], cwd=cwd, env=env(**extra), capture_output=True,
                          text=True, timeout=120)


def _fileset(d: Path) -> Path:
    from conftest import DATASETS

    p = d / "fileset.json"
    p.write_text(json.dumps({ds: {"files": {str(f): "Events"}} for ds, f in DATASETS.items()}))
    return p


@pytest.mark.timeout(200)
def test_core_install_without_dask_jobqueue_renders_and_dry_runs(tmp_path):
    """dask_jobqueue/distributed/parsl/psutil hidden by a meta-path blocker (fake absence): still works."""
    r = _core(["render", "--site", "slurm-local", "--backend", "dask", "--out", str(tmp_path / "r")], tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "r" / "dask_cluster.json").is_file() and "Traceback" not in r.stderr
    assert "pip install 'hpckit[dask]'" in r.stderr
    r = _core(["render", "--site", "polaris", "--backend", "parsl", "--out", str(tmp_path / "p")], tmp_path)
    assert r.returncode == 0 and (tmp_path / "p" / "parsl_config.py").is_file(), r.stderr
    r = _core(["launch", str(ANALYSIS), "--site", "perlmutter", "--backend", "dask", "--fileset",
               str(_fileset(tmp_path)), "--run-dir", str(tmp_path / "run"), "--dry-run"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "would submit" in r.stderr and "Traceback" not in r.stderr
    assert "needs an account" in r.stderr  # perlmutter without --set account: a warning before anything


@pytest.mark.timeout(200)
def test_core_install_missing_extras_are_one_line(tmp_path):
    """Modules hidden by a meta-path blocker (fake absence): one error line naming the install command."""
    r = _core(["pack", "-o", str(tmp_path / "env.tar.gz")], tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "venv_pack" in r.stderr and "pip install 'hpckit[pack]'" in r.stderr
    assert not (tmp_path / "env.tar.gz").exists()
    r = _core(["run", str(ANALYSIS), "--fileset", str(_fileset(tmp_path)), "--executor", "dask", "--no-status",
               "--output", str(tmp_path / "o.pkl")], tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "pip install 'hpckit[dask]'" in r.stderr
    r = _core(["doctor", "--site", "local", "--backend", "dask"], tmp_path)
    assert "Traceback" not in r.stderr and "pip install 'hpckit[dask]'" in r.stderr, r.stderr
    assert "psutil is not installed" in r.stderr


def test_version_and_short_help(tmp_path):
    import hpckit

    r = _core(["--version"], tmp_path)
    assert r.returncode == 0 and r.stdout.strip() == f"hpckit {hpckit.__version__}"
    r = _core(["-h"], tmp_path)
    assert r.returncode == 0 and "launch" in r.stdout and "cancel" in r.stdout
    r = _core(["launch", "-h"], tmp_path)
    assert r.returncode == 0 and "--skipbadfiles" in r.stdout and "--maxchunks" in r.stdout


def test_units_are_readable():
    from hpckit.core.units import format_bytes, format_rate, plural

    assert format_rate(812) == "812 Hz" and format_rate(48_200) == "48.2 kHz" and format_rate(3.1e6) == "3.1 MHz"
    assert format_bytes(512) == "512 B" and format_bytes(12_400) == "12.4 kB" and format_bytes(3.2e6) == "3.2 MB"
    assert plural(1, "chunk") == "1 chunk" and plural(2, "chunk") == "2 chunks" and plural(1000, "event") == "1,000 events"


def test_run_spec_one_default_each_and_case_insensitive_schema(tmp_path):
    from hpckit.core.errors import HpckitError
    from hpckit.run import RunSpec

    assert RunSpec(ANALYSIS, tmp_path, schema="NanoAOD").schema == "nanoaod"
    assert RunSpec(ANALYSIS, tmp_path, schema="BASE").schema == "base"
    with pytest.raises(HpckitError, match="unknown schema 'root'"):
        RunSpec(ANALYSIS, tmp_path, schema="root")
    assert RunSpec.default("chunksize") == 100_000 and RunSpec.default("skipbadfiles") is False
