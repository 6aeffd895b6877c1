"""Nothing from a site becomes code: hostile values in every site field, rendered for every backend,
then every generated file EXECUTED (parsl_config.py imported, shell scripts run, the vine_factory
command line run through a shell, the HTCondor job's Arguments run by /bin/sh, Slurm scripts given to
the real `sbatch --test-only`). Each value is either refused with an error naming the field, or inert:
the marker file never appears.

Real parts: Parsl (imported configs), bash, /bin/sh, the local Slurm's sbatch, htcondor2's submit
parser. The worker programs themselves (python3, vine_worker, apptainer, module, ...) are stand-ins on
PATH that record their arguments: starting real workers is not what is tested here.
Not covered on purpose: `worker_init` lines, which are the site's own shell by design (documented).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    from tests.site_util import isolated_sites  # noqa: F401
except ImportError:
    from site_util import isolated_sites  # noqa: F401

from hpckit.deploy import BACKENDS, SiteError, load_site, render_files
from hpckit.core.resources import data_dir

HOSTILE = [
    'x"""; __import__("os").system("touch {M}"); """',
    "$(touch {M})",
    "`touch {M}`",
    "'; touch {M}; '",
    '"; touch {M}; "',
    "x\ntouch {M}",
    "x' + __import__('os').system('touch {M}') + '",
    "{{__import__('os').system('touch {M}')}}",
    "${{IFS}}x;touch${{IFS}}{M}",
    "a b|touch {M}&",
]

# field -> (how the value is placed, companion overrides, schedulers it applies to or None for all)
FIELDS = {
    "description": ("scalar", {}, None),
    "source": ("list", {}, None),
    "unverified": ("list", {}, None),
    "account": ("scalar", {}, None),
    "partition": ("scalar", {}, {"slurm"}),
    "qos": ("scalar", {}, {"slurm"}),
    "constraint": ("scalar", {}, {"slurm"}),
    "queue": ("scalar", {}, {"pbs"}),
    "scratch": ("scalar", {}, None),
    "modules": ("list", {}, None),
    "python": ("scalar", {}, None),
    "extra_directives": ("list", {}, None),
    "network.interface": ("scalar", {}, None),
    "container.image": ("scalar", {"container.runtime": "apptainer"}, None),
    "container.binds": ("list", {"container.runtime": "apptainer", "container.image": "/i.sif"}, None),
    "container.options": ("list", {"container.runtime": "apptainer", "container.image": "/i.sif"}, None),
    "env_delivery.path": ("scalar", {"env_delivery.mode": "tarball"}, None),
    "pbs.select_extra": ("scalar", {}, {"pbs"}),
    "pbs.place": ("scalar", {}, {"pbs"}),
    "htcondor.requirements": ("scalar", {}, {"htcondor"}),
    "htcondor.submit": ("dictvalue", {}, {"htcondor"}),
    "htcondor.submit.key": ("dictkey", {}, {"htcondor"}),
    "name": ("scalar", {}, None),
}
SITES = ["slurm-local", "pbs-local", "polaris", "lpc", "local"]
STUBS = ["python3", "vine_worker", "vine_factory", "process_worker_pool.py", "apptainer", "shifter",
         "podman-hpc", "module", "sbatch", "qsub", "condor_submit"]


def _override(field: str, value: str) -> dict:
    how, companions, _ = FIELDS[field]
    if how == "list":
        return {**companions, field: [value]}
    if how == "dictvalue":
        return {**companions, "htcondor.submit": {"request_gpus": value}}
    if how == "dictkey":
        return {**companions, "htcondor.submit": {value: "1"}}
    return {**companions, field: value}


def _condor_args(value: str) -> list[str]:
    """HTCondor's "new" Arguments syntax: "..." around all, '' and "" doubled, '...' groups."""
    s = value.strip()
    assert s.startswith('"') and s.endswith('"'), value
    s = s[1:-1]
    out, cur, i, quoted, have = [], "", 0, False, False
    while i < len(s):
        c = s[i]
        if c == '"' and s[i : i + 2] == '""':
            cur, i, have = cur + '"', i + 2, True
            continue
        if c == "'":
            if quoted and s[i : i + 2] == "''":
                cur, i = cur + "'", i + 2
                continue
            quoted, i, have = not quoted, i + 1, True
            continue
        if c == " " and not quoted:
            if have:
                out.append(cur)
            cur, have, i = "", False, i + 1
            continue
        cur, i, have = cur + c, i + 1, True
    if have:
        out.append(cur)
    return out


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    d = tmp_path_factory.mktemp("stubs")
    for name in STUBS:
        p = d / name
        p.write_text('#!/bin/sh\necho "stub $(basename "$0") $*" >> "${STUB_LOG:-/dev/null}"\nexit 0\n')
        p.chmod(0o755)
    return d


def _run_shell(argv: list[str], cwd: Path, stubs: Path, tmp: Path) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    env = {"PATH": f"{stubs}:/usr/bin:/bin", "HOME": str(tmp), "STUB_LOG": str(cwd / "stub.log"),
           "HPCKIT_DASK_SCHEDULER": "tls://127.0.0.1:9", "HPCKIT_DASK_TLS_DIR": "/nonexistent", "HPCKIT_PARSL_ADDRESSES": "127.0.0.1",
           "HPCKIT_PARSL_PORT": "9", "HPCKIT_VINE_MANAGER": "127.0.0.1", "HPCKIT_VINE_PORT": "9"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def _no_set_e(text: str) -> str:
    # run every line, not just up to the first that fails (a missing module, tarball or venv)
    return re.sub(r"^set -e$", "set +e", text, flags=re.M)


def test_every_py_template_value_goes_through_repr_or_identifier():
    """Every {{ }} in a template that renders Python ends in |py or |pyident (or is a constant)."""
    from jinja2 import nodes

    from hpckit.deploy.render import environment

    env, n = environment(), 0
    for path in data_dir("templates").rglob("*.py.j2"):
        tree = env.parse(path.read_text())
        for out in tree.find_all(nodes.Output):
            for node in out.nodes:
                if isinstance(node, nodes.TemplateData):
                    continue
                n += 1
                ok = isinstance(node, nodes.Const) or (isinstance(node, nodes.Filter) and node.name in ("py", "pyident"))
                assert ok, f"{path.name}:{node.lineno}: a value reaches generated Python without |py: {node}"
    assert n >= 10


def test_hostile_values_refused_or_inert(tmp_path, stubs):
    marker = tmp_path / "PWNED"
    values = [v.format(M=marker) for v in HOSTILE]
    accepted, refused = {}, 0
    for site_name in SITES:
        sched = load_site(site_name).site.scheduler
        for value in values:
            ok = {}
            for field, (_, _, only) in FIELDS.items():
                if only is not None and sched not in only:
                    continue
                over = _override(field, value)
                try:
                    load_site(site_name, over)
                except SiteError as exc:
                    msg = str(exc)
                    key = "htcondor.submit" if field.startswith("htcondor.submit") else field
                    assert key in msg, f"{site_name} {field}={value!r}: error does not name the field: {msg}"
                    assert len(msg) < 2000
                    refused += 1
                    continue
                ok.update(over)
            accepted[(site_name, value)] = ok
    assert refused > 0

    # every accepted hostile value at once, per site and value, rendered for every backend
    py_files, n_exec, n_sbatch = [], 0, 0
    have_sbatch = shutil.which("sbatch") is not None
    for i, ((site_name, value), over) in enumerate(accepted.items()):
        merged = dict(over)
        if "htcondor.submit" in merged:  # the key case and the value case both in one dict
            merged["htcondor.submit"] = {**accepted[(site_name, value)].get("htcondor.submit", {})}
        s = load_site(site_name, merged).site
        for backend in BACKENDS:
            files = render_files(s, backend)
            where = tmp_path / f"r{i}-{backend}"
            where.mkdir()
            for fname, text in files.items():
                (where / fname).write_text(text)
                if fname.endswith(".py"):
                    py_files.append(str(where / fname))
                elif fname.endswith(".sh"):
                    r = subprocess.run(["bash", "-n", str(where / fname)], capture_output=True, text=True)
                    assert r.returncode == 0, f"{site_name}/{backend}/{fname} with {value!r}: {r.stderr}"
                    (where / (fname + ".run")).write_text(_no_set_e(text))
                    args = [str(where / "stubcmd")] if fname == "vine_worker_wrapper.sh" else []
                    _run_shell(["bash", str(where / (fname + ".run")), *args], where / f"cwd-{fname}", stubs, tmp_path)
                    n_exec += 1
                    if have_sbatch and s.scheduler == "slurm" and fname in ("worker_job.sh", "job_script.sh"):
                        r = subprocess.run(["sbatch", "--test-only", str(where / fname)], capture_output=True,
                                           text=True, cwd=where, timeout=60)
                        assert "unrecognized option" not in r.stderr and "invalid option" not in r.stderr, r.stderr
                        n_sbatch += 1
                elif fname.endswith(".json"):
                    json.loads(text)
                elif fname.endswith(".sub"):
                    import htcondor2

                    sub = htcondor2.Submit(text)
                    keys = {k.lower() for k in sub.keys()}
                    for k in keys:  # no command smuggled in as a new line or key
                        assert re.fullmatch(r"(my\.|\+)?[a-z_][a-z0-9_.]*", k), f"{fname}: submit key {k!r}"
                    if "arguments" in keys and sub.get("Executable", sub.get("executable")) == "/bin/sh":
                        argv = _condor_args(sub.get("Arguments", sub.get("arguments")))
                        cmd = (where / "condor-cmd.sh")
                        cmd.write_text(argv[-1])
                        _run_shell(["/bin/sh", str(cmd)], where / "cwd-condor", stubs, tmp_path)
                        n_exec += 1
    # import every generated parsl_config.py in one fresh interpreter
    script = (
        "import runpy, sys\n"
        "for p in sys.argv[1:]:\n"
        "    mod = runpy.run_path(p)\n"
        "    assert type(mod['config']).__name__ == 'Config', p\n"
        "print('imported', len(sys.argv) - 1)\n"
    )
    r = subprocess.run([sys.executable, "-c", script, *py_files], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"imported {len(py_files)}" in r.stdout
    assert len(py_files) == len(accepted) and n_exec > 3 * len(accepted)
    if os.environ.get("CI") or have_sbatch:
        assert n_sbatch > 0
    assert not marker.exists(), "a hostile site value was executed"


def test_issue_case_through_cli(tmp_path):
    """The issue's exploit, as typed: `hpckit render --backend parsl --set source=[...]`, then import it."""
    marker = tmp_path / "PWNED"
    value = f'x"""; __import__("os").system("touch {marker}"); """'
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "hpckit", "render", "--site", "slurm-local", "--backend", "parsl",
                        "--set", "source=" + json.dumps([value]), "--out", str(out)],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-c", "import runpy; m = runpy.run_path('parsl_config.py'); print(m['SOURCES'])"],
                       capture_output=True, text=True, timeout=120, cwd=out)
    assert r.returncode == 0, r.stderr
    assert value in r.stdout  # the value survived as data
    assert not marker.exists()


def test_directive_error_names_field_and_truncates():
    with pytest.raises(SiteError) as exc:
        load_site("slurm-local", {"account": "a b" + "x" * 100_000})
    msg = str(exc.value)
    assert "account" in msg and "--set" in msg and len(msg) < 1000
    load_site("perlmutter", {"constraint": "gpu&hbm80g", "account": "m1234_g"})  # real values still work


# ---- CLI options (not only site fields): every path hpckit puts into an engine's commands ------------------

CLI_BACKENDS = ["dask", "parsl", "taskvine"]


def _dry_launch(tmp_path: Path, backend: str, **opts):
    from conftest import EXAMPLES

    from hpckit.launch import LaunchOptions, launch
    from hpckit.run import RunSpec

    spec = RunSpec(analysis=EXAMPLES / "dimuon.py", fileset=EXAMPLES / "fileset.json", output=opts.pop("output", None),
                   checkpoint=opts.pop("checkpoint", None))
    return launch(LaunchOptions(site=opts.pop("site", "slurm-local"), spec=spec, backend=backend, dry_run=True,
                                workers=1, say=lambda m: None, **opts))


@pytest.mark.parametrize("backend", CLI_BACKENDS)
def test_cli_paths_refused_or_inert(tmp_path, backend):
    """--run-dir, --output, --checkpoint and --set scratch=... with each hostile value, for each backend:
    the run directory (which engines format into shell commands unquoted: Parsl's worker command and
    provider scripts, batch log directives) is refused with one error naming it; output and checkpoint
    paths never reach a rendered file; scratch is quoted everywhere (a site field: see above)."""
    from hpckit.io.paths import UnsafePathError

    marker = tmp_path / "PWNED"
    for i, raw in enumerate(HOSTILE):
        value = raw.format(M=marker)
        with pytest.raises(UnsafePathError, match="run directory") as exc:
            _dry_launch(tmp_path, backend, run_dir=tmp_path / f"x{i}_{value}")
        assert len(str(exc.value)) < 400
        if i % 3:  # rendering is the slow part: a third of the values (each kind of quote) for the rest
            continue
        run_dir = tmp_path / f"run{i}"
        result = _dry_launch(tmp_path, backend, run_dir=run_dir, output=tmp_path / f"o{i}_{value}" / "out.pkl",
                             checkpoint=tmp_path / f"c{i}_{value}", overrides=[f"scratch={tmp_path}/s{i} {value}"])
        assert result.mode == "dry-run"
        for f in run_dir.iterdir():
            if f.is_file() and f.name != "launch.json":
                text = f.read_text()
                assert f"o{i}_" not in text and f"c{i}_" not in text, f"{f.name} holds the output/checkpoint path"
                if f.suffix == ".sh":  # the scratch value is quoted: the script still parses
                    assert subprocess.run(["bash", "-n", str(f)]).returncode == 0
    assert not marker.exists()


def test_cli_run_dir_through_the_command_line(tmp_path):
    """The issue's case, typed: `hpckit launch --backend parsl --run-dir '/tmp/x_$(touch PWN)'`: one error
    line naming the run directory, nothing submitted, nothing created, nothing run."""
    from conftest import EXAMPLES

    marker = tmp_path / "PWN"
    run_dir = tmp_path / f"x_$(touch {marker})"
    for backend in ["parsl", "dask", "taskvine"]:  # parsl first: the one that ran the command
        r = subprocess.run([sys.executable, "-m", "hpckit", "launch", str(EXAMPLES / "dimuon.py"), "--site",
                            "slurm-local", "--backend", backend, "--fileset", str(EXAMPLES / "fileset.json"),
                            "--run-dir", str(run_dir), "--worker-timeout", "20", "--no-status"],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert "error: run directory" in r.stderr and "$" in r.stderr, r.stderr
        assert not run_dir.exists() and not marker.exists()


@pytest.mark.slow
@pytest.mark.slurm
@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", ["dask", "parsl"])
def test_hostile_scratch_real_slurm_workers_start(tmp_path, backend):
    """A legal but hostile scratch (a space and `$(touch M)`), launched for real on the local Slurm: the
    workers start in that directory (once word-split by an unquoted $HPCKIT_SCRATCH in dask-jobqueue's
    command, and every worker exited), the output equals plain uproot's, the marker never appears.
    (TaskVine is not installed here: its rendering is covered above.)"""
    from conftest import EXAMPLES, assert_matches_reference, reference_dimuon
    from launch_util import hpckit as launch_cli
    from launch_util import load
    from slurm_util import require_slurm

    require_slurm()
    marker = tmp_path / "PWNED"
    scratch = f"{tmp_path}/scr atch $(touch {marker})"
    run_dir = tmp_path / "run"
    r = launch_cli(["launch", str(EXAMPLES / "dimuon.py"), "--site", "slurm-local", "--backend", backend,
                    "--workers", "1", "--fileset", str(EXAMPLES / "fileset.json"), "--set", f"scratch={scratch}",
                    "--run-dir", str(run_dir), "--worker-timeout", "90", "--no-status", "--no-plots"],
                   cwd=tmp_path, timeout=280)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_matches_reference(load(run_dir / "out.pkl"), reference_dimuon())
    assert Path(scratch).is_dir(), "the workers did not make the scratch directory under its literal name"
    assert not marker.exists()


def test_a_launched_taskvine_manager_takes_only_workers_with_the_run_password(tmp_path):
    """A TaskVine manager's port is open to any worker that dials it, and workers hand back results the driver
    unpickles. A launch makes a fresh password (0600, in its run directory) for its manager, and its factory
    passes it to every worker it starts (``--password``; vine_factory copies it next to vine_worker as
    ``pwfile``). A plain render, for a user to start by hand, names none."""
    from hpckit.deploy.backends import Sizing
    from hpckit.engines.taskvine import new_password

    site = load_site("cluster-local").site
    run_dir = tmp_path / "run"
    launched = render_files(site, "taskvine", out_dir=run_dir, sizing=Sizing(jobs=3, workers=3, run_dir=str(run_dir)))
    assert f"--password {run_dir}/vine.password" in launched["vine_factory.sh"], launched["vine_factory.sh"]
    assert "--password" not in render_files(site, "taskvine")["vine_factory.sh"]
    run_dir.mkdir()
    first = new_password(run_dir / "vine.password").read_text()
    again = new_password(run_dir / "vine.password")
    assert re.fullmatch(r"[0-9a-f]{64}\n", first) and again.read_text() != first
    assert (again.stat().st_mode & 0o777) == 0o600
