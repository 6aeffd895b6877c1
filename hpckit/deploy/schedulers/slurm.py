"""Slurm: every fact hpckit needs (``#SBATCH``, sbatch/squeue/scontrol/scancel, dask-jobqueue's
SLURMCluster, Parsl's SlurmProvider, vine_factory ``-T slurm``) and its verbs."""

from __future__ import annotations

from hpckit.deploy.checks import Check, command_output
from hpckit.deploy.schedulers.base import JobState, JobStatus, Scheduler, run_command, squeue_listed
from hpckit.core.errors import LaunchError

# One squeue call for every job of a launch: these fields, "|"-separated (-t all: ended jobs too, while
# the controller still holds them, MinJobAge)
# Comment last: the job's note (job_note_shell) may hold the separator
_FIELDS = ("JobID", "State", "Reason", "exit_code", "STDOUT", "STDERR", "Name", "UserName", "Comment")
_FORMAT = ",".join(f"{f}:|" for f in _FIELDS)


def _exit_code(raw: str) -> str | None:
    """squeue's exit_code is the wait status (768); Slurm's own notation is ``exit:signal`` (3:0)."""
    if not raw.isdigit():
        return None
    status = int(raw)
    return f"{status >> 8}:{status & 0x7F}"


def _expand(path: str, f: dict[str, str]) -> str | None:
    """squeue shows --output/--error as written (``logs/w-%j.out``): fill in the job's own patterns."""
    if not path or path == "(null)":
        return None
    for pattern, value in (("%j", f["JobID"]), ("%A", f["JobID"]), ("%x", f["Name"]), ("%u", f["UserName"])):
        path = path.replace(pattern, value)
    return path.replace("%%", "%")


class SlurmScheduler(Scheduler):
    name = "slurm"
    directive_prefix = "#SBATCH "
    submit_command = "sbatch"
    status_command = "scontrol"
    queue_command = "squeue"
    cancel_command = "scancel"
    label = "Slurm"
    extra_doctor_commands = ("sinfo",)
    dask_cluster_class = "dask_jobqueue.SLURMCluster"
    parsl_provider_name = "SlurmProvider"
    taskvine_batch_type_name = "slurm"
    own_settings = ("partition", "qos", "constraint")
    setting_hints = {"queue": " (use partition/qos for Slurm)"}
    stage_job_var = "SLURM_JOB_ID"
    job_note_shell = 'scontrol update JobId="$SLURM_JOB_ID" Comment="$hpckit_note"'  # the owner may set it

    def stage(self, job_id, source, dest) -> None:
        """``sbcast --jobid``: the controller hands the file to the job's nodes (no shared file system)."""
        r = run_command(["sbcast", f"--jobid={job_id}", "--force", "--preserve", str(source), dest], timeout=300)
        if r.returncode != 0:
            why = (r.stderr or r.stdout).strip().splitlines()
            raise LaunchError(f"sbcast {source} into job {job_id} ({dest}) failed: {why[-1] if why else r.returncode}")

    @classmethod
    def parsl_provider_args(cls, site, job) -> dict:
        return {"exclusive": False}  # cores and memory are requested explicitly in SCHEDULER_OPTIONS

    @classmethod
    def log_directives(cls, log_dir: str, stem: str) -> list[str]:
        if any(ch.isspace() or ch in "'\"" for ch in log_dir):
            raise LaunchError(f"log directory {log_dir!r}: sbatch directives cannot hold whitespace or quotes")
        return [f"--output={log_dir}/{stem}-%j.out", f"--error={log_dir}/{stem}-%j.err"]

    @classmethod
    def node_local_directives(cls, node_dir: str, stem: str) -> list[str]:
        """Logs and working directory in ``node_dir`` (a site without a shared file system: slurmstepd cannot
        open logs, nor enter the submit directory, on a path the node does not have)."""
        return [*cls.log_directives(node_dir, stem), f"--chdir={node_dir}"]

    @classmethod
    def job_name_directive(cls, name: str) -> str:
        return f"--job-name={name}"

    def status(self, job_ids) -> dict[str, JobStatus]:
        """One ``squeue -t all`` for all of ``job_ids``; a job it no longer lists is GONE."""
        rows: dict[str, dict[str, str]] = {}
        if job_ids:
            r = run_command(["squeue", "-h", "-t", "all", "-j", ",".join(map(str, job_ids)), "-O", _FORMAT],
                            timeout=15)
            for line in r.stdout.splitlines() if r.returncode == 0 else ():
                values = [v.strip() for v in line.split("|", len(_FIELDS) - 1)]
                if len(values) >= len(_FIELDS):
                    f = dict(zip(_FIELDS, values))
                    rows[f["JobID"]] = f
        out: dict[str, JobStatus] = {}
        for j in map(str, job_ids):
            f = rows.get(j)
            if f is None:
                out[j] = JobStatus(j, JobState.GONE, reason="the scheduler no longer lists it")
                continue
            note = f["Comment"].removesuffix("|").strip()
            out[j] = JobStatus(j, f["State"], _exit_code(f["exit_code"]), f["Reason"] or None,
                               _expand(f["STDOUT"], f), _expand(f["STDERR"], f),
                               note if note not in ("", "(null)") else None)
        return out

    def queued(self, job_ids) -> list[str]:
        listed = squeue_listed(job_ids)
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
