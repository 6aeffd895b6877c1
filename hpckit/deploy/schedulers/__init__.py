"""One class per batch system, each in its own file, holding every fact hpckit needs about it.

Adding a scheduler: a new file here with a :class:`Scheduler` subclass, listed in ``SCHEDULERS``, plus its
``templates/<name>/header.j2`` (the directives). Site validation, renderers (job headers, Parsl provider
arguments), doctor, launch and the dry run read the facts from :func:`scheduler_class` /
:func:`scheduler_for`; nothing outside this package compares scheduler names (tests/test_site_schedulers.py).
This package never imports :mod:`hpckit.deploy.site` at run time (only for type hints): the site model
imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from hpckit.deploy.schedulers.base import TERMINAL_STATES, JobState, JobStatus, Scheduler, SubmitError, run_command
from hpckit.deploy.schedulers.htcondor import HTCondorScheduler
from hpckit.deploy.schedulers.local import LocalScheduler
from hpckit.deploy.schedulers.pbs import PBSScheduler
from hpckit.deploy.schedulers.slurm import SlurmScheduler
from hpckit.core.errors import UsageError

if TYPE_CHECKING:
    from hpckit.deploy.site import Site

__all__ = [
    "HTCondorScheduler", "JobState", "JobStatus", "LocalScheduler", "PBSScheduler", "SCHEDULERS", "Scheduler",
    "SlurmScheduler", "SubmitError", "TERMINAL_STATES", "run_command", "scheduler_class", "scheduler_for",
]

SCHEDULERS: dict[str, type[Scheduler]] = {
    cls.name: cls for cls in (SlurmScheduler, PBSScheduler, HTCondorScheduler, LocalScheduler)
}


def scheduler_class(name: str) -> type[Scheduler]:
    """The class for a site's ``scheduler:`` value."""
    try:
        return SCHEDULERS[name]
    except KeyError:
        raise UsageError(f"unknown scheduler {name!r}; expected one of {', '.join(SCHEDULERS)}") from None


def scheduler_for(site: Site, log_dir: str | Path | None = None) -> Scheduler:
    """An instance of the site's scheduler class (``log_dir``: where job logs land when it does not say)."""
    return scheduler_class(site.scheduler)(log_dir)
