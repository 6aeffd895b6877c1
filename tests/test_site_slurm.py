"""Renderings against the real local Slurm (scripts/slurm-local.sh) and its Torque-style qsub.

These tests skip, saying why, when the local Slurm is not up.
"""

from __future__ import annotations

import os
import re
import string
import subprocess
import uuid
from pathlib import Path

import pytest

try:
    from tests.site_util import BACKENDS, isolated_sites, site  # noqa: F401
    from tests.slurm_util import job_field, require_qsub, require_slurm, wait_for_job
except ImportError:
    from site_util import BACKENDS, isolated_sites, site  # noqa: F401
    from slurm_util import job_field, require_qsub, require_slurm, wait_for_job

from hpckit.deploy import render_files
from hpckit.deploy.site import SiteError
from hpckit.deploy.backends.parsl import render_parsl

pytestmark = pytest.mark.slurm


def _sbatch(args: list[str], script: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    path = cwd / f"job-{uuid.uuid4().hex[:8]}.sh"
    path.write_text(script)
    return subprocess.run(["sbatch", *args, str(path)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=30)


def _parsl_slurm_script(site_obj) -> str:
    """The script Parsl's SlurmProvider would submit, from its own template and our rendered config."""
    import importlib.util
    import tempfile

    from parsl.providers.slurm.template import template_string

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "parsl_config.py"
        p.write_text(render_parsl(site_obj))
        spec = importlib.util.spec_from_file_location("pc", p)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        prov = mod.config.executors[0].provider
    return string.Template(template_string).substitute(
        jobname="parsl.test", job_stdout_path="/dev/null", job_stderr_path="/dev/null", nodes=1,
        walltime=prov.walltime, tasks_per_node=1, scheduler_options=prov.scheduler_options,
        worker_init=prov.worker_init, user_script="true",
    )


def test_slurm_local_renderings_pass_sbatch_test_only(tmp_path):
    """`sbatch --test-only` accepts every slurm-local rendering: our worker_job.sh for each backend, the
    dask-jobqueue job_script.sh, and the script Parsl's SlurmProvider builds from our scheduler_options.

    Checks: Slurm parses every directive and could schedule the job on this node. Does not check: that
    the worker inside starts (no scheduler/manager runs here).
    """
    require_slurm()
    s = site("slurm-local")
    scripts = {f"{b}/{n}": t for b in BACKENDS for n, t in render_files(s, b).items()
               if n in ("worker_job.sh", "job_script.sh")}
    scripts["parsl/provider-script"] = _parsl_slurm_script(s)
    assert len(scripts) == 5
    for name, text in scripts.items():
        r = _sbatch(["--test-only"], text, tmp_path)
        assert r.returncode == 0, f"{name}: {r.stderr}"
        assert "to start at" in r.stderr, f"{name}: {r.stderr}"


# Controller-side rejections that mean "parsed fine, but this machine is not that site".
_SITE_ONLY = re.compile(r"invalid partition|Invalid qos|Invalid feature|Invalid account|node configuration is not available"
                        r"|Requested node configuration|Invalid generic resource", re.I)


@pytest.mark.parametrize("name", ["perlmutter", "frontier"])
def test_remote_slurm_sites_parse_in_real_sbatch(name, tmp_path):
    """`sbatch --test-only` on the Perlmutter/Frontier renderings (worker_job.sh per backend, dask job_script.sh).

    Checks: sbatch parses every directive (no 'unrecognized option'); the only rejection allowed is the
    controller saying this machine lacks the site's partition/QOS/feature/node size. Does not check: that
    the real facility accepts it. NERSC's `--module=cvmfs` is a site SPANK plugin option, unknown to this
    Slurm, so that one line is dropped here (and asserted present before dropping).
    """
    require_slurm()
    s = site(name)
    for b in BACKENDS:
        for fname, text in render_files(s, b).items():
            if fname not in ("worker_job.sh", "job_script.sh"):
                continue
            if "--module=cvmfs" in s.extra_directives:
                assert "#SBATCH --module=cvmfs\n" in text
                text = text.replace("#SBATCH --module=cvmfs\n", "")
            r = _sbatch(["--test-only"], text, tmp_path)
            assert "unrecognized option" not in r.stderr and "invalid option" not in r.stderr, r.stderr
            assert r.returncode == 0 or _SITE_ONLY.search(r.stderr), f"{name}/{b}/{fname}: {r.stderr}"


def test_injection_lands_quoted_and_runs_nothing(tmp_path):
    """Submit renderings whose site values carry shell injections to the real Slurm and run them.

    Checks: `account='m1234; touch M1'` and `account=$(touch M4)` are refused (directive values are
    validated, not quoted); `scratch=<dir>/$(touch M2)`, `python='python3; touch M3'` land quoted in our
    worker_job.sh and in dask-jobqueue's job_script.sh; the jobs run (the literal scratch directory
    appears; Slurm records the account) and none of the marker files appears.
    Does not check: values in `worker_init`, which is the site's own shell by design.
    """
    require_slurm()
    markers = [tmp_path / f"owned-{i}" for i in (1, 2, 3, 4)]
    scratch = tmp_path / f"scratch-$(touch {markers[1]})"
    for bad in (f"account=m1234; touch {markers[0]}", f"account=$(touch {markers[3]})"):
        with pytest.raises(SiteError, match="account"):
            site("slurm-local", bad)
    overrides = ["account=m1234", f"scratch={scratch}", f"python=python3; touch {markers[2]}"]
    files = render_files(site("slurm-local", *overrides), "dask")
    files2 = render_files(site("slurm-local", "account=m1234", f"scratch={scratch}"), "taskvine")
    assert "#SBATCH --account=m1234\n" in files["worker_job.sh"]
    jobs = []
    for text in (files["worker_job.sh"], files["job_script.sh"], files2["worker_job.sh"]):
        r = _sbatch(["--parsable"], text, tmp_path,
                    env={"HPCKIT_DASK_SCHEDULER": "tls://127.0.0.1:9", "HPCKIT_DASK_TLS_DIR": "/nonexistent", "HPCKIT_VINE_MANAGER": "127.0.0.1",
                         "HPCKIT_VINE_PORT": "9"})
        assert r.returncode == 0, r.stderr
        jobs.append(r.stdout.strip().split(";")[0])
    for j in jobs:
        wait_for_job(j, timeout=90)
    assert job_field(jobs[0], "Account") == "m1234"
    assert scratch.is_dir(), "the jobs did not run far enough to create the (literal) scratch directory"
    for m in markers:
        assert not m.exists(), f"injected command ran: {m}"


def test_pbs_scripts_run_through_real_qsub(tmp_path):
    """Submit pbs-local renderings through Debian's Torque `qsub` over Slurm and let them run.

    Checks: qsub accepts our worker_job.sh and dask-jobqueue's job_script.sh; Slurm runs them with the
    job name, walltime and CPU count from the #PBS lines; the prologue ran (its output file, written in
    the submission directory because #PBS -o/-e are ignored, has our marker). Does not check: a worker
    connecting (worker_init ends the job before the worker starts), PBS Pro `-l select` semantics.
    """
    require_qsub()
    s = site("pbs-local", 'worker_init=["echo hpckit-ran name=$SLURM_JOB_NAME", "exit 0"]')
    files = render_files(s, "dask")
    results = {}
    for fname, expected_name in (("worker_job.sh", "hpckit-dask"), ("job_script.sh", "dask-worker")):
        path = tmp_path / fname
        path.write_text(files[fname])
        r = subprocess.run(["qsub", str(path)], capture_output=True, text=True, cwd=tmp_path, timeout=30)
        assert r.returncode == 0, r.stderr
        job = r.stdout.strip().split(".")[0]
        assert job.isdigit(), r.stdout
        state = wait_for_job(job, timeout=90)
        results[fname] = (job, state, expected_name)
    for fname, (job, state, expected_name) in results.items():
        assert state == "COMPLETED", f"{fname}: {state}"
        assert job_field(job, "JobName") == expected_name
        assert job_field(job, "TimeLimit") == "00:30:00"
        assert job_field(job, "NumCPUs") == str(s.job_cores)
        outs = list(tmp_path.glob(f"*.o{job}")) + list(tmp_path.glob(f"slurm-{job}.out"))
        assert outs, f"no output file for job {job} in {sorted(p.name for p in tmp_path.iterdir())}"
        assert f"hpckit-ran name={expected_name}" in outs[0].read_text()
