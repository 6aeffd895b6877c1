"""Where staged files land on a node, for sites without a shared file system (CHTC, the OSG;
``cluster-noshare`` here).

On such a site a compute node sees neither the run directory nor the client's home, so the files a worker
job needs from the launch (the ``hpckit pack`` tarball, the engine's keys) are copied onto the job's node by
the scheduler once the job runs (Slurm: ``sbcast --jobid``; :meth:`Scheduler.stage`), into a directory of its
own inside the user's own directory of node-local scratch (:func:`user_dir`), with a ``ready`` marker written
last. The job script waits for the marker
(``templates/common/stage_wait.sh.j2``) and removes the directory when it ends. Pure: paths only; the
copying is :mod:`hpckit.launch.staging`.
"""

from __future__ import annotations

from hpckit.deploy.backends import stages_files
from hpckit.deploy.schedulers import scheduler_class
from hpckit.deploy.site import Site

READY = "ready"  # written last: the job starts its worker once it is there
TARBALL = "env.tar.gz"
KEYS = "keys"  # the engine's credentials (Dask's TLS certificate and key, Parsl's CurveZMQ keys)
WAIT_SECONDS = 600  # how long a job waits for its files before it fails saying so


def staged(site: Site, backend: str) -> bool:
    """True when a launch of ``backend`` on ``site`` copies its jobs' files onto their nodes: a site whose
    scheduler can (``site.staged``) and an engine whose pool knows its jobs (``stages_files``)."""
    return site.staged and stages_files(backend)


def node_scratch(site: Site) -> str:
    """The node-local directory staged files go under: a plain absolute path, as it is on every node (the
    copy is addressed from the client, where the node's ``$TMPDIR`` is unknown; the Site model refuses
    anything else on a staged site)."""
    return site.env_delivery.node_scratch.rstrip("/") or "/"


def user_dir(site: Site, uid: int) -> str:
    """The user's own directory in the node's scratch (``templates/common/macros.j2: own_dir`` makes it 0700 and
    refuses one another user made): node scratch is shared with every user of the node."""
    return f"{node_scratch(site)}/hpckit-{uid}"


def job_dir(site: Site, job_id: str, uid: int) -> str:
    """The job's staging directory on its node, as the client (user ``uid``) addresses it."""
    return f"{user_dir(site, uid)}/stage-{job_id}"


def job_dir_shell(site: Site) -> str:
    """The same directory as the job script computes it (its user's directory, the scheduler's job id)."""
    var = scheduler_class(site.scheduler).stage_job_var
    return f'"$hpckit_mine"/stage-"${var}"'
