"""PBS Pro / Torque: ``#PBS``, qsub/qstat/qdel, dask-jobqueue's PBSCluster, Parsl's PBSProProvider
(TorqueProvider for ``pbs.flavor: torque``), vine_factory ``-T pbs`` (``torque``)."""

from __future__ import annotations

import re
import shutil
from typing import Any

from hpckit.deploy.checks import Check, command_output
from hpckit.deploy.schedulers.base import JobState, JobStatus, Scheduler, run_command, squeue_listed

_STATE = {"Q": JobState.PENDING, "H": JobState.PENDING, "W": JobState.PENDING, "T": JobState.PENDING,
          "S": JobState.SUSPENDED, "R": JobState.RUNNING, "B": JobState.RUNNING, "E": JobState.COMPLETING,
          "C": JobState.COMPLETED, "F": JobState.COMPLETED, "X": JobState.COMPLETED, "U": JobState.UNKNOWN}


class PBSScheduler(Scheduler):
    """Log paths come from ``qstat -f`` (Error_Path) when it says; otherwise PBS's default ``<name>.e<id>`` in
    ``log_dir`` (where jobs were submitted from)."""

    name = "pbs"
    label = "PBS"
    directive_prefix = "#PBS "
    submit_command = "qsub"
    status_command = "qstat"
    queue_command = "qstat"
    cancel_command = "qdel"
    dask_cluster_class = "dask_jobqueue.PBSCluster"
    parsl_provider_name = "PBSProProvider"
    taskvine_batch_type_name = "pbs"
    own_settings = ("queue",)

    @staticmethod
    def _pro(site) -> bool:
        return site.pbs.flavor == "pro"

    @classmethod
    def job_facts(cls, site, mode: str, job: dict[str, Any]) -> dict[str, Any]:
        # an engine that writes the node count writes PBS Pro's select line too (Parsl's PBSProProvider, from
        # cpus_per_node and select_options): job["nodes"] is False for it (hpckit.deploy.render.JobMode)
        mem = job["mem_mib"]
        extra = site.pbs.select_extra
        return {"resources": True, "select": job["nodes"] or not cls._pro(site),
                # what follows select=1:ncpus=N (":mem=4096mb:ngpus=1")
                "select_options": (f":mem={mem}mb" if mem else "") + (f":{extra}" if extra else "")}

    @classmethod
    def parsl_provider_args(cls, site, job) -> dict[str, Any]:
        if not cls._pro(site):
            return {}
        return {"cpus_per_node": site.job_cores, "select_options": job["select_options"]}

    @classmethod
    def parsl_provider(cls, site) -> str:
        return cls.parsl_provider_name if cls._pro(site) else "TorqueProvider"

    @classmethod
    def taskvine_batch_type(cls, site) -> str:
        return cls.taskvine_batch_type_name if cls._pro(site) else "torque"

    @classmethod
    def job_name_directive(cls, name: str) -> str:
        return f"-N {name}"

    def _default_log(self, job_id: str, kind: str) -> str | None:
        if self.log_dir is None:
            return None
        num = job_id.split(".")[0]
        hits = sorted(self.log_dir.glob(f"*.{kind}{num}"))
        return str(hits[0]) if hits else None

    def status(self, job_ids) -> dict[str, JobStatus]:
        """One ``qstat -f`` for all of ``job_ids`` (one ``Job Id:`` block each); a job it does not list is GONE."""
        blocks: dict[str, dict[str, str]] = {}
        if job_ids:
            r = run_command(["qstat", "-f", *map(str, job_ids)], timeout=30)
            for block in re.split(r"^Job Id:", r.stdout, flags=re.M)[1:]:
                head, _, body = block.partition("\n")
                f = {k.strip(): v.strip() for k, v in re.findall(r"^\s*([\w.]+)\s*=\s*(.*)$", body, re.M)}
                if "job_state" in f:
                    blocks[head.strip().split(".")[0]] = f
        out: dict[str, JobStatus] = {}
        for j in map(str, job_ids):
            f = blocks.get(j.split(".")[0])
            if f is None:
                out[j] = JobStatus(j, JobState.GONE, reason="the scheduler no longer lists it",
                                   stdout_path=self._default_log(j, "o"), stderr_path=self._default_log(j, "e"))
                continue
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
            left = sorted(set(left) | squeue_listed(job_ids), key=job_ids.index)
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
