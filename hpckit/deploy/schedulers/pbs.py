"""PBS Pro / Torque: ``#PBS``, qsub/qstat/qdel, dask-jobqueue's PBSCluster, Parsl's PBSProProvider
(TorqueProvider for ``pbs.flavor: torque``), vine_factory ``-T pbs`` (``torque``)."""

from __future__ import annotations

import re
import shutil

from hpckit.deploy.checks import Check, command_output
from hpckit.deploy.schedulers.base import JobState, JobStatus, Scheduler, run_command

_STATE = {"Q": JobState.PENDING, "H": JobState.PENDING, "W": JobState.PENDING, "T": JobState.PENDING,
          "S": JobState.SUSPENDED, "R": JobState.RUNNING, "B": JobState.RUNNING, "E": JobState.COMPLETING,
          "C": JobState.COMPLETED, "F": JobState.COMPLETED, "X": JobState.COMPLETED, "U": JobState.UNKNOWN}


class PBSScheduler(Scheduler):
    """Log paths come from ``qstat -f`` (Error_Path) when it says; otherwise PBS's default ``<name>.e<id>`` in
    ``log_dir`` (where jobs were submitted from)."""

    name = "pbs"
    directive_prefix = "#PBS "
    submit_command = "qsub"
    status_command = "qstat"
    queue_command = "qstat"
    cancel_command = "qdel"
    dask_cluster_class = "dask_jobqueue.PBSCluster"
    parsl_provider_name = "PBSProProvider"
    taskvine_batch_type_name = "pbs"

    @classmethod
    def parsl_provider(cls, site) -> str:
        return "TorqueProvider" if site.pbs.flavor == "torque" else cls.parsl_provider_name

    @classmethod
    def taskvine_batch_type(cls, site) -> str:
        return "torque" if site.pbs.flavor == "torque" else cls.taskvine_batch_type_name

    @classmethod
    def job_name_directive(cls, name: str) -> str:
        return f"-N {name}"

    def submit(self, script, cwd=None) -> str:
        return self._submit(["qsub", str(script)], cwd)

    def _default_log(self, job_id: str, kind: str) -> str | None:
        if self.log_dir is None:
            return None
        num = job_id.split(".")[0]
        hits = sorted(self.log_dir.glob(f"*.{kind}{num}"))
        return str(hits[0]) if hits else None

    def status(self, job_ids) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        for j in job_ids:
            r = run_command(["qstat", "-f", str(j)], timeout=15)
            if r.returncode != 0 or "job_state" not in r.stdout:
                out[j] = JobStatus(j, JobState.GONE, reason="the scheduler no longer lists it",
                                   stdout_path=self._default_log(j, "o"), stderr_path=self._default_log(j, "e"))
                continue
            f = {k.strip(): v.strip() for k, v in re.findall(r"^\s*([\w.]+)\s*=\s*(.*)$", r.stdout, re.M)}
            state = _STATE.get(f.get("job_state", "U"), JobState.UNKNOWN)
            exit_code = f.get("Exit_status") or f.get("exit_status")
            if state is JobState.COMPLETED and exit_code not in (None, "0"):
                state = JobState.FAILED
            err = f.get("Error_Path", "").split(":", 1)[-1] or self._default_log(j, "e")
            std = f.get("Output_Path", "").split(":", 1)[-1] or self._default_log(j, "o")
            out[j] = JobStatus(j, state, exit_code, f.get("comment"), std, err)
        return out

    def queued(self, job_ids) -> list[str]:
        left = super().queued(job_ids)
        if shutil.which("squeue") and all(j.isdigit() for j in job_ids):
            # PBS front end over Slurm (Debian's slurm-wlm-torque): qstat says C while Slurm still lists
            # the job as COMPLETING; the ids are Slurm's, so ask squeue too
            from hpckit.deploy.schedulers.slurm import SlurmScheduler

            left = sorted(set(left) | set(SlurmScheduler().queued(job_ids)), key=job_ids.index)
        return left

    def doctor_checks(self, site) -> list[Check]:
        if not site.queue:
            return []
        rc, text = command_output(["qstat", "-Q", site.queue])
        if rc == 0:
            return [Check("queue", "pass", f"qstat -Q knows queue {site.queue!r}")]
        last = text.splitlines()[-1] if text else rc
        return [Check("queue", "fail", f"qstat -Q does not know queue {site.queue!r}: {last}",
                      "--set queue=<name from qstat -Q>")]
