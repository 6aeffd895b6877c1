"""One class per scheduler: every fact renderers, doctor and launch read is on it, and job states are typed."""

from __future__ import annotations

import pytest

from hpckit.deploy import load_site
from hpckit.deploy.schedulers import SCHEDULERS, JobState, JobStatus, scheduler_class


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_has_every_fact(name):
    cls = scheduler_class(name)
    assert cls.name == name
    assert cls.dask_cluster_class.count(".") >= 1 and cls.parsl_provider_name.endswith("Provider")
    assert cls.taskvine_batch_type_name and cls.submit_command
    if cls.batch:
        assert cls().commands and all(cls().commands)
        assert cls.status_command and cls.cancel_command and cls.queue_command


def test_site_scheduler_names_come_from_the_classes():
    assert set(SCHEDULERS) == {"slurm", "pbs", "htcondor", "local"}
    assert scheduler_class("pbs").parsl_provider(load_site("pbs-local").site) in ("PBSProProvider", "TorqueProvider")
    with pytest.raises(ValueError, match="unknown scheduler 'lsf'"):
        scheduler_class("lsf")


def test_job_states_are_typed_with_terminal_ones_named():
    assert JobState.parse("CANCELLED by 1000") is JobState.CANCELLED
    assert JobState.parse("COMPLETED+") is JobState.COMPLETED and JobState.parse("weird") is JobState.UNKNOWN
    assert {s for s in JobState if s.terminal} >= {JobState.FAILED, JobState.TIMEOUT, JobState.GONE}
    assert not JobState.PENDING.terminal and not JobState.RUNNING.terminal
    st = JobStatus("7", "FAILED")
    assert st.state is JobState.FAILED and st.terminal and st.summary() == "job 7: FAILED"


def test_doctor_fails_on_unset_required_account(monkeypatch, tmp_path):
    from hpckit.doctor import run_checks

    monkeypatch.setenv("PATH", str(tmp_path))
    checks = {c.name: c for c in run_checks("perlmutter")}
    assert checks["account"].result == "fail" and "--set account=" in checks["account"].fix
    checks = {c.name: c for c in run_checks("perlmutter", ["account=m1234"])}
    assert checks["account"].result == "pass"


def test_no_scheduler_name_is_compared_outside_the_scheduler_classes():
    """Scheduler facts live in hpckit/deploy/schedulers/ (and each scheduler's own templates/<name>/):
    nothing else asks which scheduler a site has."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    compare = re.compile(r"\.scheduler\s*(==|!=|in\s|not\s+in\s)|\.(pbs\.flavor|htcondor\.universe)\s*(==|!=)")
    own = {repo / "hpckit" / "deploy" / "schedulers", *(repo / "templates" / n for n in SCHEDULERS)}
    found = [f"{p.relative_to(repo)}:{i}: {line.strip()}"
             for p in [*repo.glob("hpckit/**/*.py"), *repo.glob("templates/**/*.j2")]
             if not any(d in p.parents for d in own)
             for i, line in enumerate(p.read_text().splitlines(), 1) if compare.search(line)]
    assert not found, "\n".join(found)


@pytest.mark.slurm
def test_slurm_status_of_every_job_is_one_squeue(tmp_path, monkeypatch):
    """Two real jobs (one failed with exit 3) and an unknown id: one squeue call says all three, with the
    exit code as Slurm writes it and the log paths with %j filled in (the real run_command, counted)."""
    import subprocess
    import time

    from hpckit.deploy.schedulers import slurm as slurm_module
    from hpckit.deploy.schedulers import SlurmScheduler
    from slurm_util import require_slurm

    require_slurm()
    ids = [subprocess.run(["sbatch", "--parsable", "-J", "hpckit-test-status", "-o", str(tmp_path / "w-%j.out"),
                           "-e", str(tmp_path / "w-%j.err"), "--wrap", cmd], capture_output=True, text=True,
                          check=True).stdout.strip().split(";")[0] for cmd in ("exit 3", "true")]
    sched = SlurmScheduler()
    deadline = time.monotonic() + 120
    while sched.queued(ids) and time.monotonic() < deadline:
        time.sleep(0.5)
    calls = []
    real = slurm_module.run_command
    monkeypatch.setattr(slurm_module, "run_command", lambda cmd, **kw: calls.append(cmd) or real(cmd, **kw))
    st = sched.status([*ids, "999999999"])
    assert [c[0] for c in calls] == ["squeue"], calls
    failed, done = st[ids[0]], st[ids[1]]
    assert failed.state is JobState.FAILED and failed.exit_code == "3:0", failed
    assert failed.stderr_path == str(tmp_path / f"w-{ids[0]}.err") and failed.stdout_path == str(tmp_path / f"w-{ids[0]}.out")
    assert done.state is JobState.COMPLETED and done.exit_code == "0:0", done
    assert st["999999999"].state is JobState.GONE
