"""Parsl configuration for a site, rendered by hpckit (SITE, SOURCES below).

    import parsl
    from parsl_config import get_config   # or: from parsl_config import config
    parsl.load(get_config())
"""

from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.launchers import SingleNodeLauncher
from parsl.providers import CondorProvider

SITE = 'lpc'
SCHEDULER = 'htcondor'
SOURCES = ['https://github.com/CoffeaTeam/lpcjobqueue (cluster.py, schedd.py, bootstrap.sh)']  # where the facts come from
VERIFIED_ON = '2026-11-26'

# Directives added to every block's job script (site values validated: no spaces, quotes or shell characters).
SCHEDULER_OPTIONS = "\n".join([
    'universe = vanilla',
    '+SingularityImage = "/cvmfs/unpacked.cern.ch/registry.hub.docker.com/coffeateam/coffea-dask-almalinux9:latest"',
    'use_x509userproxy = true',
    'should_transfer_files = YES',
    'when_to_transfer_output = ON_EXIT_OR_EVICT',
    'periodic_remove = (JobStatus == 2) && ((time() - EnteredCurrentStatus) > 28800)',
])

# Shell run before the worker pool starts.
WORKER_INIT = "\n".join([
    'export HPCKIT_SCRATCH=/srv',
    'mkdir -p "$HPCKIT_SCRATCH"',
])


def _address():
    return None  # workers probe every address of the submitting host


def get_config(run_dir: str = "runinfo") -> Config:
    """A fresh parsl.Config for the site SITE."""
    return Config(
        executors=[
            HighThroughputExecutor(
                label='hpckit-lpc',
                address=_address(),
                encrypted=True,  # CurveZMQ between interchange and workers; keys in run_dir (0700)
                cores_per_worker=1,
                mem_per_worker=2.0,
                max_workers_per_node=1,
                worker_port_range=(10000, 10070),
                provider=CondorProvider(
                    nodes_per_block=1,
                    init_blocks=0,
                    min_blocks=0,
                    max_blocks=200,
                    walltime='08:00:00',
                    cores_per_slot=1,
                    mem_per_slot=2.0,
                    worker_init=WORKER_INIT,
                    scheduler_options=SCHEDULER_OPTIONS,
                    launcher=SingleNodeLauncher(),
                ),
            )
        ],
        run_dir=run_dir,
    )


config = get_config()
