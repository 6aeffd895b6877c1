"""Render a site for dask-jobqueue (or a LocalCluster for the ``local`` site). Pure: nothing starts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpckit.deploy import staging
from hpckit.deploy.backends.common import (
    JOB_START_LINE,
    directive_args,
    htcondor_commands,
    prologue_lines,
    wrapped_python,
)
from hpckit.deploy.render import JobMode
from hpckit.deploy.schedulers import scheduler_class
from hpckit.core.errors import MissingExtra
from hpckit.deploy.site import Site, format_memory

MODE = JobMode("dask", job_name="dask-worker")  # dask-jobqueue writes the script around our directives
STAGES_FILES = True  # on a site without a shared file system: the env tarball and the TLS files, by the scheduler
# keyword arguments that belong to the cluster, not to the Job that writes the script
_CLUSTER_ONLY = ("scheduler_options", "n_workers")
PLACEHOLDER_SCHEDULER = "tcp://<insert-scheduler-address-here>:8786"


@dataclass
class DaskRendering:
    """``cluster_class`` (dotted path), its ``kwargs``, and the ``job_script`` it submits (None for local)."""

    cluster_class: str
    kwargs: dict[str, Any]
    job_script: str | None

    def cluster_type(self) -> type:
        """Import and return the cluster class (:class:`MissingExtra` naming the extra when absent)."""
        from hpckit.core.extras import require_module

        module, _, name = self.cluster_class.rpartition(".")
        return getattr(require_module(module, f"the dask cluster {self.cluster_class}"), name)

    def make_cluster(self, **overrides: Any):
        """Build the real cluster object (starts a scheduler in this process; submits nothing until scaled)."""
        return self.cluster_type()(**{**self.kwargs, **overrides})


def _local(site: Site, sizing: Any = None) -> DaskRendering:
    kwargs: dict[str, Any] = {
        "processes": True,
        "threads_per_worker": site.worker.cores,
        "host": "127.0.0.1",
        "dashboard_address": "127.0.0.1:0",
        "memory_limit": format_memory(site.worker.memory) if site.worker.memory else "auto",
    }
    if sizing is not None:
        kwargs["n_workers"] = sizing.workers
    elif site.max_workers is not None:
        kwargs["n_workers"] = site.max_workers
    return DaskRendering(scheduler_class("local").dask_cluster_class, kwargs, None)


def render_dask(site: Site, sizing: Any = None) -> DaskRendering:
    """Keyword arguments for the dask-jobqueue cluster class of ``site.scheduler``, and its job script.

    * job directives: from ``templates/<scheduler>/header.j2`` (values validated); dask-jobqueue's own
      ``#SBATCH``/``#PBS`` lines are skipped (``job_directives_skip``) so ours are the only ones;
      for HTCondor they are merged into its submit description (``job_extra_directives`` dict);
    * ``job_script_prologue``: ``templates/common/prologue.sh.j2``;
    * ``python``: the site's python inside its container runtime;
    * ``interface``; for a loopback site ``scheduler_options={"host": "127.0.0.1"}``;
    * ``worker_extra_args``: ``--no-dashboard`` (its HTTP server on loopback), ``--lifetime``/``--lifetime-stagger``
      from the walltime (workers retire before the batch system kills them; a launch retires them itself instead,
      see :mod:`hpckit.deploy.retire`), the worker port range.

    ``job_script`` is what the cluster would submit, built by dask-jobqueue's own Job class with a
    placeholder scheduler address, so no scheduler is started.

    With ``sizing`` (a launch): the jobs carry ``sizing.job_name``, write their logs into ``sizing.log_dir``
    and the scheduler's dashboard binds like the site (loopback for a loopback site).
    """
    sched = scheduler_class(site.scheduler)
    if not sched.batch:
        return _local(site, sizing)
    kwargs: dict[str, Any] = {
        "cores": site.job_cores,
        "memory": format_memory(site.job_memory),
        "processes": site.worker.per_job,
        "python": wrapped_python(site),
        "job_name": sizing.job_name if sizing is not None and sizing.job_name else "dask-worker",
        "shebang": "#!/usr/bin/env bash",
        "job_script_prologue": prologue_lines(site, "dask"),
    }
    if site.network.interface:
        kwargs["interface"] = site.network.interface
    if site.loopback:
        kwargs["scheduler_options"] = {"host": "127.0.0.1"}
    if sizing is not None:
        # a worker lost for real (node failure, preemption) makes its chunk "suspicious"; allow a few more of
        # those than dask's default 3 (a worker retiring before its walltime counts nothing: hpckit.deploy.retire).
        # The scheduler's dashboard stays on loopback (reach it through an ssh tunnel).
        kwargs["scheduler_options"] = {**kwargs.get("scheduler_options", {}), "allowed_failures": 8,
                                       "dashboard_address": "127.0.0.1:0"}
    if site.network.heartbeat_s and sched.batch:  # a worker silent this long is lost: its chunks run elsewhere
        kwargs["scheduler_options"] = {**kwargs.get("scheduler_options", {}),
                                       "worker_ttl": f"{site.network.heartbeat_s}s"}
    # no dashboard, and the worker's HTTP routes (health, metrics), which dask binds to 0.0.0.0 by default,
    # on loopback only
    extra: list[str] = ["--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
    lifetime = site.lifetime()
    if lifetime and sizing is None:
        extra += ["--lifetime", f"{lifetime[0]}s", "--lifetime-stagger", f"{lifetime[1]}s"]
    elif lifetime:
        # a launch retires its workers itself, between chunks, counted from the job's start
        # (hpckit.deploy.retire): dask's --lifetime would close a worker mid-chunk when no other can take its data
        kwargs["job_script_prologue"] = [JOB_START_LINE, *kwargs["job_script_prologue"]]
    if site.network.port_range:
        lo, hi = site.network.port_range
        extra += ["--worker-port", f"{lo}:{hi}"]
    if not site.network.interface:  # listen on the node's outbound address, not every interface (the prologue
        extra += ["--host", '"$HPCKIT_WORKER_HOST"']  # finds it; empty only where no route exists: then all)
    kwargs["worker_extra_args"] = extra
    if site.scratch:
        kwargs["local_directory"] = '"$HPCKIT_SCRATCH"'  # dask-jobqueue joins its command unquoted
    if sched.directive_prefix is None:  # HTCondor: submit commands, merged into its description
        kwargs["disk"] = format_memory(site.worker.disk * site.worker.per_job)
        kwargs["job_extra_directives"] = htcondor_commands(site, "dask", MODE)
    else:
        # dask-jobqueue's own header lines all start with the prefix; skip them and give it ours (quoted, complete)
        kwargs["job_directives_skip"] = [sched.directive_prefix.strip()]
        kwargs["job_extra_directives"] = directive_args(site, "dask", MODE,
                                                        sizing.job_name if sizing is not None else None)
        if staging.staged(site, "dask"):  # no shared file system: logs and working directory on the node
            kwargs["job_extra_directives"] += sched.node_local_directives(staging.node_scratch(site), "dask-worker")
        elif sizing is not None and sizing.log_dir:
            kwargs["job_extra_directives"] += sched.log_directives(sizing.log_dir, "dask-worker")
    rendering = DaskRendering(sched.dask_cluster_class, kwargs, None)
    try:
        rendering.job_script = job_script(rendering)
    except MissingExtra:  # a core install renders the kwargs; the script needs dask-jobqueue's Job class
        rendering.job_script = None
    return rendering


def job_script(rendering: DaskRendering, scheduler_address: str = PLACEHOLDER_SCHEDULER) -> str:
    """The script the cluster submits, from dask-jobqueue's Job class (no scheduler, no submission)."""
    cluster_cls = rendering.cluster_type()
    job_cls = cluster_cls.job_cls
    job_kwargs = {k: v for k, v in rendering.kwargs.items() if k not in _CLUSTER_ONLY}
    return job_cls(scheduler_address, name="dummy-name", **job_kwargs).job_script()


def files(site: Site, manager_host: str | None, port: int, out_dir: Path | None, sizing: Any) -> dict[str, str]:
    """``dask_cluster.json`` (cluster_class + kwargs, ``scale_jobs`` for a launch), and the job script
    dask-jobqueue submits (``job_script.sh``; ``.sub`` for HTCondor; none for the local site)."""
    r = render_dask(site, sizing)
    doc = {"cluster_class": r.cluster_class, "kwargs": r.kwargs}
    if sizing is not None:
        doc["scale_jobs"] = sizing.jobs
    out = {"dask_cluster.json": json.dumps(doc, indent=2) + "\n"}
    if r.job_script is not None:
        out[scheduler_class(site.scheduler).job_script_name()] = r.job_script
    return out
