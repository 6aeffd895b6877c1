"""Slurm: every fact hpckit needs (``#SBATCH``, sbatch/squeue/scontrol/scancel, dask-jobqueue's
SLURMCluster, Parsl's SlurmProvider, vine_factory ``-T slurm``) and its verbs."""

from __future__ import annotations

import re

from hpckit.deploy.checks import Check, command_output
from hpckit.deploy.schedulers.base import JobState, JobStatus, Scheduler, run_command
from hpckit.errors import LaunchError


class SlurmScheduler(Scheduler):
    name = "slurm"
    directive_prefix = "#SBATCH "
    submit_command = "sbatch"
    status_command = "scontrol"
    queue_command = "squeue"
    cancel_command = "scancel"
    extra_doctor_commands = ("sinfo",)
    dask_cluster_class = "dask_jobqueue.SLURMCluster"
    parsl_provider_name = "SlurmProvider"
    taskvine_batch_type_name = "slurm"

    @classmethod
    def log_directives(cls, log_dir: str, stem: str) -> list[str]:
        if any(ch.isspace() or ch in "'\"" for ch in log_dir):
            raise LaunchError(f"log directory {log_dir!r}: sbatch directives cannot hold whitespace or quotes")
        return [f"--output={log_dir}/{stem}-%j.out", f"--error={log_dir}/{stem}-%j.err"]

    @classmethod
    def job_name_directive(cls, name: str) -> str:
        return f"--job-name={name}"

    def submit(self, script, cwd=None) -> str:
        return self._submit(["sbatch", "--parsable", str(script)], cwd)

    def status(self, job_ids) -> dict[str, JobStatus]:
        out: dict[str, JobStatus] = {}
        for j in job_ids:
            r = run_command(["scontrol", "show", "job", "-o", str(j)], timeout=15)
            if r.returncode != 0 or "JobState=" not in r.stdout:
                out[j] = JobStatus(j, JobState.GONE, reason="the scheduler no longer lists it")
                continue
            f = dict(re.findall(r"(\w+)=(\S*)", r.stdout))
            out[j] = JobStatus(j, f.get("JobState", "UNKNOWN"), f.get("ExitCode"), f.get("Reason"),
                               f.get("StdOut"), f.get("StdErr"))
        return out

    def queued(self, job_ids) -> list[str]:
        if not job_ids:
            return []
        r = run_command(["squeue", "-h", "-o", "%i", "-j", ",".join(job_ids)], timeout=15)
        listed = set(r.stdout.split()) if r.returncode == 0 else set()
        return [j for j in job_ids if j in listed]

    def ids_named(self, job_name: str) -> list[str]:
        """Jobs whose name contains ``job_name`` (Parsl appends to it: ``parsl.<label>.block-0.<time>``)."""
        import getpass

        r = run_command(["squeue", "-h", "-u", getpass.getuser(), "-o", "%i %j"], timeout=15)
        if r.returncode != 0:
            return []
        return [p[0] for p in (line.split(None, 1) for line in r.stdout.splitlines())
                if len(p) == 2 and job_name in p[1]]

    def doctor_checks(self, site) -> list[Check]:
        out: list[Check] = []
        if site.partition:
            rc, text = command_output(["sinfo", "-h", "-p", site.partition, "-o", "%P %a"])
            if rc == 0 and text:
                out.append(Check("partition", "pass", f"{site.partition}: {text.splitlines()[0]}"))
            else:
                rc2, parts = command_output(["sinfo", "-h", "-o", "%P"])
                known = " ".join(sorted(set(parts.split()))) if rc2 == 0 else "?"
                out.append(Check("partition", "fail",
                                 f"sinfo does not know partition {site.partition!r} (known: {known})",
                                 f"--set partition=<one of: {known}>"))
        for kind, value in (("qos", site.qos), ("account", site.account)):
            if not value:
                continue
            rc, text = command_output(["sacctmgr", "-n", "-P", "show", kind, value, "format=name"])
            if rc != 0:
                first = text.splitlines()[0] if text else rc
                out.append(Check(kind, "skip", f"sacctmgr cannot tell whether {kind} {value!r} exists ({first})"))
            elif value in text.split():
                out.append(Check(kind, "pass", f"{kind} {value!r} known to sacctmgr"))
            else:
                fix = ("sacctmgr show assoc user=$USER format=account,qos shows yours" if kind == "account"
                       else "sacctmgr show qos format=name lists them")
                out.append(Check(kind, "fail", f"sacctmgr does not know {kind} {value!r}", f"--set {kind}=<yours>; {fix}"))
        return out
