"""The one Jinja environment that renders every hpckit template.

* ``StrictUndefined``: a template that uses an undefined variable fails when it is rendered, with a
  :class:`RenderError` naming the template and the variable.
* Filters for landing values safely:

  - ``sh``: :func:`shlex.quote` (every site or ``--set`` value that lands in shell or in a directive);
  - ``shpath``: like ``sh`` but keeps ``$NAME``, ``${NAME}`` and ``${NAME:-default}`` expansions live
    (for paths such as ``$SCRATCH``); everything else, ``$(...)`` and backticks included, is quoted;
  - ``classad``: a ClassAd/submit-description string literal ``"..."``;
  - ``py``: a Python literal (:func:`repr` of plain data only), for the generated ``parsl_config.py``;
    ``pyident``: a name we chose (class, keyword argument), refused unless it is an identifier.
    Every ``{{ }}`` of a ``.py`` template ends in one of these two (a test checks it).

Templates live in ``data_dir("templates")``; the per-backend modules in :mod:`hpckit.deploy.backends`
call :func:`render_template` with a context from :func:`job_context`.
"""

from __future__ import annotations

from hpckit.core.errors import HpckitError

import math
import re
import shlex
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2

from hpckit.deploy.schedulers import scheduler_class
from hpckit.deploy.site import Site, format_walltime
from hpckit.deploy import staging
from hpckit.core.resources import data_dir

__all__ = ["JobMode", "RenderError", "SCRIPT", "environment", "job_context", "render_template", "shquote", "shpath", "classad_string"]


class RenderError(HpckitError, RuntimeError):
    """A template failed to render; the message names the template and the problem."""


def shquote(value: Any) -> str:
    """Quote ``value`` for a POSIX shell (or a Slurm/PBS directive line): :func:`shlex.quote`."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    return shlex.quote(str(value))


_VAR = re.compile(r"\$(?:\{[A-Za-z_][A-Za-z0-9_]*(?::-[A-Za-z0-9_./@%+=,-]*)?\}|[A-Za-z_][A-Za-z0-9_]*)")


def shpath(value: Any) -> str:
    """Quote a path for the shell but keep ``$VAR``/``${VAR}``/``${VAR:-default}`` expansions.

    ``$SCRATCH/x y`` -> ``"$SCRATCH"'/x y'``; ``$(reboot)`` -> ``'$(reboot)'``.
    """
    s = str(value)
    out, pos = [], 0
    for m in _VAR.finditer(s):
        if m.start() > pos:
            out.append(shlex.quote(s[pos : m.start()]))
        name = m.group(0)
        out.append('"' + (name if name.startswith("${") else "${" + name[1:] + "}") + '"')
        pos = m.end()
    if pos < len(s) or not out:
        out.append(shlex.quote(s[pos:]))
    return "".join(out)


def classad_string(value: Any) -> str:
    """A ClassAd string literal: ``"..."`` with backslashes and double quotes escaped."""
    s = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


_SAFE_LITERALS = (str, int, float, bool, type(None), list, tuple, dict)


def pyliteral(value: Any) -> str:
    """A Python literal (:func:`repr`) of a str/number/bool/None or a list/tuple/dict of them.

    Anything else is refused: only these have a ``repr`` that evaluates back to the same plain data.
    """

    def check(v: Any) -> None:
        if not isinstance(v, _SAFE_LITERALS):
            raise RenderError(f"refusing to write a {type(v).__name__} into generated Python (only plain data)")
        if isinstance(v, (list, tuple)):
            for x in v:
                check(x)
        elif isinstance(v, dict):
            for k, x in v.items():
                check(k)
                check(x)

    check(value)
    return repr(value)


def pyident(value: Any) -> str:
    """A Python identifier (a class or keyword name we chose), refused when it is anything else."""
    s = str(value)
    if not s.isidentifier() or not s.isascii():
        raise RenderError(f"refusing to write {s[:60]!r} into generated Python: not an identifier")
    return s


def make_environment(kind: str, trim: bool = True) -> jinja2.Environment:
    """A Jinja environment on ``data_dir(kind)`` with StrictUndefined and the quoting filters; every
    template of hpckit (jobs, configs, container definitions) is rendered by one of these."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir(kind))),
        undefined=jinja2.StrictUndefined,
        trim_blocks=trim,
        lstrip_blocks=trim,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(sh=shquote, shquote=shquote, shpath=shpath, classad=classad_string, py=pyliteral,
                       pyident=pyident)
    return env


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The job and config templates (``templates/``)."""
    return make_environment("templates")


def _failing_template(exc: BaseException, default: str) -> str:
    """The innermost template in the traceback (Jinja rewrites frames to template file names)."""
    name = default
    tb = exc.__traceback__
    root = str(data_dir("templates"))
    while tb is not None:
        fn = tb.tb_frame.f_code.co_filename
        if fn.endswith(".j2"):
            name = fn[len(root) + 1 :] if fn.startswith(root) else fn
        tb = tb.tb_next
    return name


def render_template(name: str, **context: Any) -> str:
    """Render template ``name`` (relative to the templates directory) with ``context``."""
    env = environment()
    try:
        return env.get_template(name).render(**context)
    except jinja2.UndefinedError as exc:
        where = _failing_template(exc, name)
        raise RenderError(f"template {where}: undefined variable: {exc.message}") from None
    except jinja2.TemplateNotFound as exc:
        raise RenderError(f"template {name}: template not found: {exc.name}") from None
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"template {exc.filename or exc.name}:{exc.lineno}: {exc.message}") from None


def _mib(nbytes: int) -> int:
    return math.ceil(nbytes / 2**20)


@dataclass(frozen=True)
class JobMode:
    """Who writes the rest of a job script, and so which directives ours leave out. Each renderer in
    :mod:`hpckit.deploy.backends` has its own (``MODE``): dask-jobqueue takes every Slurm/PBS directive
    from us (its own are skipped) and names its jobs ``dask-worker``; Parsl's provider writes the job name,
    nodes/select, walltime and output paths; vine_factory's batch options carry no job name and no log paths.
    """

    name: str
    names_jobs: bool = True  # a job name given to the renderer is written
    job_name: str | None = None  # the name written otherwise (None with names_jobs: hpckit-<backend>)
    walltime: bool = True  # we write the walltime
    nodes: bool = True  # we write the node count


SCRIPT = JobMode("script")  # our own worker_job.sh: every directive (name, walltime, nodes, cores, memory)


def job_context(site: Site, backend: str, mode: JobMode = SCRIPT, name: str | None = None) -> dict[str, Any]:
    """The derived values templates use, as ``job``; ``mode`` says who writes the rest of the job script
    (:class:`JobMode`; the scheduler's part, :meth:`job_facts`, gets its name)."""
    lifetime = site.lifetime()
    mem = site.job_memory
    disk = None if site.worker.disk is None else site.worker.disk * site.worker.per_job
    default_name = mode.job_name if (mode.job_name or not mode.names_jobs) else f"hpckit-{backend}"
    job = {
        "backend": backend,
        "mode": mode.name,
        "name": name if name and mode.names_jobs else default_name,
        "walltime": None if (site.walltime is None or not mode.walltime) else format_walltime(site.walltime),
        "walltime_s": site.walltime,
        "nodes": mode.nodes,
        "cores": site.job_cores,
        "per_job": site.worker.per_job,
        "worker_cores": site.worker.cores,
        "mem_mib": None if mem is None else _mib(mem),
        "mem_bytes": mem,
        "worker_mem_bytes": site.worker.memory,
        "worker_mem_gb": None if site.worker.memory is None else round(site.worker.memory / 1e9, 3),
        "disk_mib": None if disk is None else _mib(disk),
        "disk_kib": None if disk is None else math.ceil(disk / 1024),
        "lifetime": None if lifetime is None else lifetime[0],
        "lifetime_stagger": None if lifetime is None else lifetime[1],
        "loopback": site.loopback,
        # a site without a shared file system: the job's staging directory, as the job script computes it
        "stage_dir": staging.job_dir_shell(site) if staging.staged(site, backend) else None,
        "stage_wait": staging.WAIT_SECONDS,
        "note_command": scheduler_class(site.scheduler).job_note_shell if staging.staged(site, backend) else None,
    }
    # resources (write cores/memory requests), select (PBS Pro's select line): the scheduler says, per mode
    job.update(scheduler_class(site.scheduler).job_facts(site, mode.name, job))
    return job
