"""Pieces every backend renders from the same templates: directives, prologue, the hand-submittable job."""

from __future__ import annotations

import shlex

from hpckit.deploy.render import SCRIPT, JobMode, job_context, render_template
from hpckit.deploy.schedulers import scheduler_class
from hpckit.deploy.site import Site


JOB_START_ENV = "HPCKIT_JOB_START"
JOB_START_LINE = f'export {JOB_START_ENV}="$(date +%s)"'  # a launch's dask job script: when the job began


def directive_lines(site: Site, backend: str, mode: JobMode, name: str | None = None) -> list[str]:
    """The scheduler header for ``mode`` (see :func:`job_context`) as lines.

    Slurm/PBS lines keep their ``#SBATCH``/``#PBS`` prefix; HTCondor lines are ``key = value``;
    a local site has none.
    """
    header = scheduler_class(site.scheduler).header_template()
    if header is None:
        return []
    text = render_template(header, site=site, job=job_context(site, backend, mode, name))
    return [line for line in text.splitlines() if line.strip()]


def directive_args(site: Site, backend: str, mode: JobMode, name: str | None = None) -> list[str]:
    """Slurm/PBS directives without the prefix (``--account=m1234``), as sbatch/qsub read them: the
    values were validated (:data:`hpckit.deploy.site.Directive`), not quoted. :func:`directive_argv`
    gives them shell-quoted for a command line."""
    prefix = scheduler_class(site.scheduler).directive_prefix
    if prefix is None:
        raise ValueError(f"{site.scheduler} directives are not prefixed lines; use its header lines")
    return [line[len(prefix):] for line in directive_lines(site, backend, mode, name)]


def directive_argv(site: Site, backend: str, mode: JobMode, extra: list[str] = ()) -> str:
    """:func:`directive_args` (plus ``extra`` arguments) as one shell-quoted command-line fragment
    (``--constraint='gpu&hbm80g'``)."""
    args = [*directive_args(site, backend, mode), *extra]
    return " ".join(shlex.join(arg.split(" ")) for arg in args)


def htcondor_commands(site: Site, backend: str, mode: JobMode) -> dict[str, str]:
    """HTCondor header as ``{command: value}``."""
    out: dict[str, str] = {}
    for line in directive_lines(site, backend, mode):
        key, sep, value = line.partition(" = ")
        if not sep:
            raise ValueError(f"htcondor/header.j2 produced a line that is not 'key = value': {line!r}")
        out[key] = value
    return out


def prologue_lines(site: Site, backend: str) -> list[str]:
    """Shell lines run before the worker (modules, scratch, worker_init, environment)."""
    text = render_template("common/prologue.sh.j2", site=site, job=job_context(site, backend))
    return [line for line in text.splitlines() if line.strip()]


def container_prefix(site: Site) -> str:
    """``apptainer exec ... IMAGE `` (trailing space) or ``""``."""
    return render_template_macro("container_prefix", site)


def wrapped_python(site: Site) -> str:
    """The worker's python command, inside the container when the site wraps workers in one."""
    return render_template_macro("python", site)


def render_template_macro(name: str, site: Site) -> str:
    from hpckit.deploy.render import RenderError, environment

    import jinja2

    try:
        module = environment().get_template("common/macros.j2").module
        return str(getattr(module, name)(site))
    except jinja2.UndefinedError as exc:
        raise RenderError(f"template common/macros.j2 ({name}): undefined variable: {exc.message}") from None


def worker_job(site: Site, backend: str) -> dict[str, str]:
    """Our own hand-submittable worker job: ``{"worker_job.sh": text}`` plus ``worker_job.sub`` for HTCondor.

    The job reads the scheduler/manager address from ``HPCKIT_DASK_SCHEDULER`` (with ``HPCKIT_DASK_TLS_DIR``,
    the scheduler's cert.pem and key.pem: Dask workers speak TLS only), ``HPCKIT_PARSL_ADDRESSES``
    + ``HPCKIT_PARSL_PORT`` or ``HPCKIT_VINE_MANAGER`` + ``HPCKIT_VINE_PORT`` (and ``HPCKIT_VINE_PASSWORD``, the
    manager's password file, for a manager hpckit started) in its environment.
    """
    job = job_context(site, backend, SCRIPT)
    sched = scheduler_class(site.scheduler)
    submit = f"{sched.submit_command} worker_job{sched.script_suffix}"
    files = {"worker_job.sh": render_template("worker_job.sh.j2", site=site, job=job, submit_hint=submit,
                                              header=sched.script_header_template())}
    if sched.submit_template is not None:
        files["worker_job.sub"] = render_template(sched.submit_template, site=site, job=job, script_name="worker_job.sh")
    return files
