"""Render a site as a readable ``parsl_config.py``. Pure: the text is returned, nothing is loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpckit.deploy import staging
from hpckit.deploy.backends.common import container_prefix, directive_lines, prologue_lines
from hpckit.deploy.render import JobMode, job_context, render_template
from hpckit.deploy.schedulers import scheduler_class
from hpckit.deploy.site import Site, format_walltime

MODE = JobMode("parsl", names_jobs=False, walltime=False, nodes=False)  # the provider writes those
STAGES_FILES = True  # on a site without a shared file system: the env tarball and the keys, by the scheduler


# A local worker pool's TMPDIR, a directory hpckit makes and removes (hpckit.engines.parsl.pool_tmp): Parsl's
# process_worker_pool starts a multiprocessing manager whose pymp-* directory outlives the pool. Short, in
# the caller's TMPDIR: the manager's socket path must fit in 108 bytes, which a run directory may not.
POOL_TMP_INIT = 'export TMPDIR={}'


def provider_name(site: Site) -> str:
    """The Parsl provider class for the site."""
    return scheduler_class(site.scheduler).parsl_provider(site)


def _provider_args(site: Site, sizing: Any = None) -> dict[str, Any]:
    sched = scheduler_class(site.scheduler)
    if not sched.batch:
        return {"init_blocks": 1, "min_blocks": 0, "max_blocks": 1}
    args: dict[str, Any] = {
        "nodes_per_block": 1,
        "init_blocks": 0,
        "min_blocks": 0,
        "max_blocks": site.max_jobs,
        "walltime": format_walltime(site.walltime),
    }
    if sizing is not None:  # a launch: exactly these blocks, submitted at parsl.load and kept (ended ones replaced)
        args.update(init_blocks=sizing.jobs, min_blocks=sizing.jobs, max_blocks=sizing.jobs)
    args.update(sched.parsl_provider_args(site, job_context(site, "parsl", MODE)))
    return args


def _drain_period(site: Site) -> int | None:
    """Seconds after a block's worker pool starts when it drains (takes no new task, finishes the running ones
    and exits) before the walltime: the site's worker lifetime, less its stagger (Parsl has no stagger)."""
    lifetime = site.lifetime() if scheduler_class(site.scheduler).batch else None
    return None if lifetime is None else max(1, lifetime[0] - lifetime[1])


def render_parsl(site: Site, sizing: Any = None) -> str:
    """``parsl_config.py`` text for ``site``: a module with ``get_config(run_dir="runinfo")`` and ``config``.

    Provider: SlurmProvider / PBSProProvider (TorqueProvider for ``pbs.flavor: torque``) / CondorProvider /
    LocalProvider, with SingleNodeLauncher (one node per block); HighThroughputExecutor with
    ``address_by_interface(<interface>)`` (``"127.0.0.1"`` for loopback sites); ``worker_init`` from the
    shared prologue; ``scheduler_options`` from the shared scheduler header (Parsl writes job name, nodes,
    walltime and log paths itself); workers inside the site's container via ``launch_cmd``.

    With ``sizing`` (a launch): ``init_blocks = min_blocks = max_blocks = sizing.jobs``; the local site gets
    ``sizing.workers`` workers; the executor label (in every block's job name) is ``sizing.job_name``.
    With a walltime, ``drain_period`` ends each block's pool between tasks before the walltime (Parsl then
    replaces the block: ``min_blocks``).
    """
    job = job_context(site, "parsl", MODE)
    batch = scheduler_class(site.scheduler).batch
    sched_opts = directive_lines(site, "parsl", MODE)
    if job["stage_dir"]:  # Parsl writes logs into its script directory, which the nodes do not see: keep them on the node
        sched = scheduler_class(site.scheduler)
        sched_opts += [sched.directive_prefix + d
                       for d in sched.node_local_directives(staging.node_scratch(site), "hpckit-parsl")]
    prefix = container_prefix(site)
    ctx = {
        "site": site,
        "job": job,
        "provider": provider_name(site),
        "provider_args": _provider_args(site, sizing),
        "label": sizing.job_name if sizing is not None and sizing.job_name else f"hpckit-{site.name}",
        "scheduler_options": sched_opts,
        "has_scheduler_options": batch,
        "worker_init": prologue_lines(site, "parsl"),
        "pool_tmp_init": POOL_TMP_INIT,
        "container_prefix": prefix,
        "interface": site.network.interface,
        "loopback": site.loopback,
        "drain_period": _drain_period(site),
        "max_workers_per_node": site.worker.per_job if batch
        else (sizing.workers if sizing is not None else site.max_workers),
    }
    return render_template("parsl/config.py.j2", **ctx)


def files(site: Site, manager_host: str | None, port: int, out_dir: Path | None, sizing: Any) -> dict[str, str]:
    """``parsl_config.py``."""
    return {"parsl_config.py": render_parsl(site, sizing)}
