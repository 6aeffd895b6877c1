"""Render a site for a TaskVine ``vine_factory``: its JSON config, command line and batch options. Pure."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpckit.core.defaults import VINE_PORT
from hpckit.deploy.backends.common import (
    container_prefix,
    directive_argv,
    directive_lines,
    prologue_lines,
    render_template_macro,
)
from hpckit.deploy.network import interface_address
from hpckit.deploy.render import JobMode, job_context
from hpckit.deploy.schedulers import scheduler_class
from hpckit.deploy.site import Site

MODE = JobMode("taskvine", names_jobs=False)  # vine_factory's batch options: no job name, no log paths
WRAPPER_NAME = "vine_worker_wrapper.sh"
# A launch's TaskVine password (in the run directory, 0600, made by the pool): the manager takes only workers
# that present it, and the factory hands it to each worker it starts.
PASSWORD_NAME = "vine.password"
# Rendered off-site with no --manager-host: the factory's own host, as the shell there names it (the factory
# runs beside the manager); never loopback, which a worker on another node would take for itself.
SUBMIT_HOST = "$(hostname -f)"
# a factory run by hand (no launch, so no run directory): its scratch (vine_worker, the wrapper, the
# password it hands to each job) in a fresh directory of the user's own, removed when it ends
OWN_SCRATCH = "$hpckit_scratch"
OWN_SCRATCH_SETUP = ('hpckit_scratch=$(mktemp -d "${TMPDIR:-/tmp}/hpckit-vine-factory.XXXXXX") || exit 1\n'
                     "trap 'rm -rf \"$hpckit_scratch\"' EXIT\n")


@dataclass
class TaskVineRendering:
    """``config`` (vine_factory ``-C`` JSON), ``command`` (argv), ``batch_options`` (``-B``), ``wrapper``.

    ``wrapper`` is the text of a script the factory runs each worker through (prologue and container),
    or None when the site needs neither.
    """

    config: dict[str, Any]
    command: list[str]
    batch_options: str
    wrapper: str | None

    @property
    def command_line(self) -> str:
        """``command`` as one shell-quoted line (:data:`SUBMIT_HOST`, :data:`OWN_SCRATCH` left for the shell)."""
        return " ".join(f'"{a}"' if a in (SUBMIT_HOST, OWN_SCRATCH) else shlex.quote(a) for a in self.command)


def batch_type(site: Site) -> str:
    """vine_factory ``-T`` for the site."""
    return scheduler_class(site.scheduler).taskvine_batch_type(site)


def render_taskvine(
    site: Site,
    manager_host: str | None = None,
    port: int = VINE_PORT,
    config_path: str = "vine_factory.json",
    wrapper_path: str = WRAPPER_NAME,
    sizing: Any = None,
) -> TaskVineRendering:
    """vine_factory config, command line and batch options for workers that dial ``manager_host:port``
    (None: the address of the site's interface here, else :data:`SUBMIT_HOST`; loopback only for a
    loopback-only or local site).

    * config keys (vine_factory.c read_config_file): ``min-workers``, ``max-workers`` (= batch jobs),
      ``workers-per-cycle``, ``timeout``, ``cores``, ``memory``/``disk`` (MB, per job), ``transfer-port``,
      ``worker-extra-options`` (``--wall-time`` from the walltime so workers leave before being killed);
    * batch options: Slurm/PBS: the shared header's directives, shell-quoted, joined by spaces (given to
      sbatch/qsub on its command line); HTCondor: the header's submit commands, joined by newlines
      (how vine_factory inserts them into its submit file is not verified here);
    * the worker runs through ``wrapper_path`` (prologue + container) when the site needs one.

    With ``sizing`` (a launch): ``min-workers = max-workers = sizing.jobs``, the jobs carry
    ``sizing.job_name`` where the scheduler names jobs, the factory's scratch is ``<run dir>/vine-factory``
    and its workers present ``<run dir>/vine.password`` (:data:`PASSWORD_NAME`).
    """
    if manager_host is None:
        manager_host = interface_address(site) or SUBMIT_HOST
    job = job_context(site, "taskvine", MODE)
    config: dict[str, Any] = {
        "min-workers": 0,
        "max-workers": site.max_jobs if site.max_jobs is not None else 1,
        "workers-per-cycle": 5,
        "timeout": 300,
        "cores": site.job_cores,
    }
    if sizing is not None:
        config["min-workers"] = config["max-workers"] = sizing.jobs
    if job["mem_mib"]:
        config["memory"] = job["mem_mib"]
    if job["disk_mib"]:
        config["disk"] = job["disk_mib"]
    if site.network.port_range:
        config["transfer-port"] = f"{site.network.port_range[0]}:{site.network.port_range[1]}"
    if job["lifetime"]:
        config["worker-extra-options"] = f"--wall-time={job['lifetime']}"
    sched = scheduler_class(site.scheduler)
    if sched.batch and sched.directive_prefix is not None:
        extra = []
        if sizing is not None and sizing.job_name and sched.job_name_directive(sizing.job_name):
            extra.append(sched.job_name_directive(sizing.job_name))
        batch_options = directive_argv(site, "taskvine", MODE, extra)
    elif sched.batch:
        batch_options = "\n".join(directive_lines(site, "taskvine", MODE))
    else:
        batch_options = ""
    prologue = prologue_lines(site, "taskvine")
    prefix = container_prefix(site)
    wrapper = None
    if prologue or prefix:
        wrapper = "\n".join(
            ["#!/bin/bash", f"# hpckit: runs each vine_worker for site {site.name} (prologue, container)", "set -e"]
            + prologue
            + [f'{render_template_macro("exec", site)}{prefix}"$@"', ""]
        )
    command = ["vine_factory", "-T", batch_type(site), "-C", config_path]
    if sizing is not None and sizing.run_dir:
        command += ["--scratch-dir", f"{sizing.run_dir}/vine-factory", "--password", f"{sizing.run_dir}/{PASSWORD_NAME}"]
    else:  # vine_factory's default, /tmp/vine-factory-<uid>, is a name another user could make first
        command += ["--scratch-dir", OWN_SCRATCH]
    if batch_options:
        command += ["--batch-options", batch_options]
    if wrapper is not None:
        command += ["--wrapper", f"bash {wrapper_path.rsplit('/', 1)[-1]}", "--wrapper-input", wrapper_path]
    if site.env_delivery.mode == "tarball":
        command += ["--python-env", site.env_delivery.path]
    command += [manager_host, str(port)]
    return TaskVineRendering(config=config, command=command, batch_options=batch_options, wrapper=wrapper)


def files(site: Site, manager_host: str | None, port: int, out_dir: Path | None, sizing: Any) -> dict[str, str]:
    """``vine_factory.json``, ``vine_factory.sh`` (the exact command), and the worker wrapper when needed."""
    base = Path(out_dir) if out_dir is not None else None
    cfg = str(base / "vine_factory.json") if base else "vine_factory.json"
    wrp = str(base / WRAPPER_NAME) if base else WRAPPER_NAME
    r = render_taskvine(site, manager_host, port, config_path=cfg, wrapper_path=wrp, sizing=sizing)
    out = {
        "vine_factory.json": json.dumps(r.config, indent=2) + "\n",
        "vine_factory.sh": (
            "#!/bin/bash\n"
            f"# hpckit: TaskVine factory for site {site.name}; workers dial {r.command[-2]}:{port}\n"
            + (f"exec {r.command_line}\n" if OWN_SCRATCH not in r.command else OWN_SCRATCH_SETUP + f"{r.command_line}\n")
        ),
    }
    if r.wrapper is not None:
        out[WRAPPER_NAME] = r.wrapper
    return out
