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
