"""The joining layer: a site's workers (hpckit.deploy) running a processor (hpckit.processor).

* :mod:`hpckit.launch.plan` - run directory, backend, workers -> jobs (once), rendering with the final numbers,
  the dry-run text;
* :mod:`hpckit.engines` (beside this package) - per engine, the pool that starts what was rendered
  (dask-jobqueue / LocalCluster, Parsl, vine_factory) and records job ids as they are submitted;
* :mod:`hpckit.launch.teardown` - signals, cancelling, waiting for workers, `hpckit jobs` / `hpckit cancel`;
* :mod:`hpckit.launch.flow` - :func:`launch` with :class:`LaunchOptions` -> :class:`LaunchResult`;
* :mod:`hpckit.launch.session` - the pool between runs (launch = up + run + down), used by launch and by
  :mod:`hpckit.launch.cluster` (``hpckit.cluster(...)``) and :mod:`hpckit.launch.daemon` (`hpckit up`, named
  through :mod:`hpckit.launch.standing`); :mod:`hpckit.launch.lifeline` cancels a pool's jobs when its owner
  dies; :mod:`hpckit.launch.dashboard` keeps the Dask dashboard on loopback behind a token.
"""

from hpckit.deploy.schedulers import JobState, JobStatus, SubmitError
from hpckit.core.errors import LaunchError
from hpckit.launch.flow import LaunchOptions, LaunchResult, environment_check, launch
from hpckit.launch.plan import BACKENDS, BATCH_BACKENDS, Plan, default_run_dir, size
from hpckit.launch.teardown import Terminated, WorkerTimeout

__all__ = [
    "BACKENDS", "BATCH_BACKENDS", "JobState", "JobStatus", "LaunchError", "LaunchOptions", "LaunchResult", "Plan",
    "SubmitError", "Terminated", "WorkerTimeout", "default_run_dir", "environment_check", "launch", "size",
]
