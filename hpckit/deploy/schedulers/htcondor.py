"""HTCondor: submit-description ``key = value`` headers, condor_submit/condor_q/condor_rm, dask-jobqueue's
HTCondorCluster, Parsl's CondorProvider, vine_factory ``-T condor``. Not exercised here (no HTCondor daemons)."""

from __future__ import annotations

import contextlib
import json

from hpckit.deploy.schedulers.base import JobState, JobStatus, Scheduler, SubmitError, run_command

_STATE = {1: JobState.PENDING, 2: JobState.RUNNING, 3: JobState.REMOVED, 4: JobState.COMPLETED,
          5: JobState.PENDING, 6: JobState.FAILED, 7: JobState.SUSPENDED}


class HTCondorScheduler(Scheduler):
    name = "htcondor"
    directive_prefix = None  # header lines are submit commands, "key = value"
    submit_command = "condor_submit"
    status_command = "condor_q"
    queue_command = "condor_q"
    cancel_command = "condor_rm"
    dask_cluster_class = "dask_jobqueue.HTCondorCluster"
    parsl_provider_name = "CondorProvider"
    taskvine_batch_type_name = "condor"
    script_suffix = ".sub"

    def submit(self, script, cwd=None) -> str:
        out = run_command(["condor_submit", "-terse", str(script)], cwd=str(cwd) if cwd else None)
        if out.returncode != 0:
            raise SubmitError(f"{out.stderr.strip()} (condor_submit exited {out.returncode})")
        return out.stdout.split()[0].split("-")[0].strip()

    def status(self, job_ids) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        for j in job_ids:
            ads: list = []
            for cmd in (["condor_q", "-json", j], ["condor_history", "-json", "-limit", "1", j]):
                r = run_command(cmd, timeout=30)
                with contextlib.suppress(ValueError):
                    ads = json.loads(r.stdout or "[]") or []
                if ads:
                    break
            if not ads:
                out[j] = JobStatus(j, JobState.GONE, reason="condor_q/condor_history do not list it")
                continue
            ad = ads[0]
            state = _STATE.get(int(ad.get("JobStatus", 0)), JobState.UNKNOWN)
            code = ad.get("ExitCode")
            if state is JobState.COMPLETED and code not in (None, 0):
                state = JobState.FAILED
            out[j] = JobStatus(j, state, None if code is None else str(code), ad.get("HoldReason"),
                               ad.get("Out"), ad.get("Err"))
        return out
