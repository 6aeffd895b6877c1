"""HTCondor: submit-description ``key = value`` headers, condor_submit/condor_q/condor_rm, dask-jobqueue's
HTCondorCluster, Parsl's CondorProvider, vine_factory ``-T condor``. Not exercised here (no HTCondor daemons)."""

from __future__ import annotations

import contextlib
import json

from typing import Any

from hpckit.deploy.schedulers.base import JobState, JobStatus, Scheduler, run_command

_STATE = {1: JobState.PENDING, 2: JobState.RUNNING, 3: JobState.REMOVED, 4: JobState.COMPLETED,
          5: JobState.PENDING, 6: JobState.FAILED, 7: JobState.SUSPENDED}


class HTCondorScheduler(Scheduler):
    name = "htcondor"
    label = "HTCondor"
    transfers_job_files = True  # should_transfer_files / transfer_input_files
    directive_prefix = None  # header lines are submit commands, "key = value"
    submit_command = "condor_submit"
    status_command = "condor_q"
    queue_command = "condor_q"
    cancel_command = "condor_rm"
    dask_cluster_class = "dask_jobqueue.HTCondorCluster"
    parsl_provider_name = "CondorProvider"
    taskvine_batch_type_name = "condor"
    script_suffix = ".sub"
    submit_template = "htcondor/submit.sub.j2"

    @classmethod
    def validate(cls, site) -> None:
        super().validate(site)
        if site.worker.disk is None:
            raise ValueError("an htcondor site needs worker.disk")
        if cls.starts_container(site) and not site.container.image:
            what = ("htcondor.singularity_image_attr" if site.htcondor.singularity_image_attr
                    else "htcondor.universe 'container'")
            raise ValueError(f"{what} needs container.image")

    @classmethod
    def job_facts(cls, site, mode: str, job: dict[str, Any]) -> dict[str, Any]:
        # dask-jobqueue, Parsl's CondorProvider and vine_factory write request_* themselves
        return {"resources": mode == "script", "select": True}

    @classmethod
    def parsl_provider_args(cls, site, job) -> dict[str, Any]:
        args: dict[str, Any] = {"cores_per_slot": site.job_cores, "mem_per_slot": round(site.job_memory / 1e9, 3)}
        if site.htcondor.requirements:
            args["requirements"] = site.htcondor.requirements
        return args

    @classmethod
    def starts_container(cls, site) -> bool:
        # +SingularityImage or the container universe: HTCondor starts the container around the job
        return bool(site.htcondor.singularity_image_attr or site.htcondor.universe == "container")

    def status(self, job_ids) -> dict[str, JobStatus]:
        """One ``condor_q`` for all of ``job_ids``, then one ``condor_history`` for those it no longer lists."""
        ads = self._ads(["condor_q", "-json", *job_ids], job_ids)
        gone = [j for j in job_ids if j not in ads]
        if gone:
            ads.update(self._ads(["condor_history", "-json", "-limit", str(len(gone)), *gone], gone))
        out: dict[str, JobStatus] = {}
        for j in job_ids:
            ad = ads.get(j)
            if ad is None:
                out[j] = JobStatus(j, JobState.GONE, reason="condor_q/condor_history do not list it")
                continue
            state = _STATE.get(int(ad.get("JobStatus", 0)), JobState.UNKNOWN)
            code = ad.get("ExitCode")
            if state is JobState.COMPLETED and code not in (None, 0):
                state = JobState.FAILED
            out[j] = JobStatus(j, state, None if code is None else str(code), ad.get("HoldReason"),
                               ad.get("Out"), ad.get("Err"))
        return out

    @staticmethod
    def _ads(cmd: list[str], job_ids: list[str]) -> dict[str, dict]:
        """{job id: its ClassAd} from one condor_q/condor_history -json call (cluster ids: "123" or "123.0")."""
        if not job_ids:
            return {}
        ads: list = []
        with contextlib.suppress(ValueError):
            ads = json.loads(run_command(cmd, timeout=30).stdout or "[]") or []
        by_cluster = {str(ad.get("ClusterId")): ad for ad in reversed(ads) if isinstance(ad, dict)}
        return {j: by_cluster[j.split(".")[0]] for j in job_ids if j.split(".")[0] in by_cluster}
