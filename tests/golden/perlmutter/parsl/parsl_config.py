"""Parsl configuration for a site, rendered by hpckit (SITE, SOURCES below).

    import parsl
    from parsl_config import get_config   # or: from parsl_config import config
    parsl.load(get_config())
"""

import shlex

from parsl.config import Config
from parsl.executors import HighThroughputExecutor
from parsl.executors.high_throughput.executor import DEFAULT_LAUNCH_CMD
from parsl.launchers import SingleNodeLauncher
from parsl.providers import SlurmProvider
from parsl.addresses import address_by_interface

SITE = 'perlmutter'
SCHEDULER = 'slurm'
SOURCES = ['https://docs.nersc.gov/systems/perlmutter/architecture/', 'https://docs.nersc.gov/filesystems/perlmutter-scratch/', 'https://docs.nersc.gov/services/cvmfs/', 'https://docs.nersc.gov/jobs/policy/', 'https://docs.nersc.gov/jobs/workflow/', 'https://docs.nersc.gov/development/containers/', 'https://docs.nersc.gov/development/containers/podman-hpc/overview/']  # where the facts come from
GATHERED_ON = '2026-11-26'  # when the facts were taken from SOURCES
CHECKED = 'not checked live (no network or account here): values copied from the documents in `source`; the rendered files are checked against tests/golden; `unverified` lists values from secondary sources'

# Directives added to every block's job script (site values validated: no spaces, quotes or shell characters).
SCHEDULER_OPTIONS = "\n".join([
    '#SBATCH --qos=regular',
    '#SBATCH --constraint=cpu',
    '#SBATCH --cpus-per-task=128',
    '#SBATCH --mem=457764M',
    '#SBATCH --module=cvmfs',
])

# Shell run before the worker pool starts.
WORKER_INIT = "\n".join([
    'unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV',
    'export PATH=/usr/local/bin:/usr/bin:/bin',
    'export PYTHONSAFEPATH=1',
    'HPCKIT_SCRATCH="${SCRATCH}"/hpckit-"$(id -u)"',
    'mkdir -p -m 700 "$HPCKIT_SCRATCH" 2>/dev/null || { echo "hpckit: cannot create $HPCKIT_SCRATCH on $(hostname); fix: --set scratch=<a writable directory>" >&2; exit 78; }',
    '{ [ "$(stat -c \'%u %F\' -- "$HPCKIT_SCRATCH" 2>/dev/null)" = "$(id -u) directory" ] && chmod 700 "$HPCKIT_SCRATCH"; } || { echo "hpckit: $HPCKIT_SCRATCH on $(hostname) is not this user\'s own directory (another user made it, or it is a link): refusing to put the run\'s files there; fix: --set scratch=<a directory of yours>" >&2; exit 78; }',
    'export HPCKIT_SCRATCH',
])

# Workers run the site's python by path (inside its container, if any), not whatever
# process_worker_pool.py the job's PATH finds. Parsl formats LAUNCH_CMD twice (its options, then each
# block's id), so the braces of shell variables are doubled twice.
WORKER_PYTHON = 'podman-hpc run --rm --net host "${HPCKIT_IMAGE:?export HPCKIT_IMAGE=<the image hpckit build --site perlmutter made>}" python3'

LAUNCH_CMD = (WORKER_PYTHON.replace("{", "{{{{").replace("}", "}}}}")
              + " -m parsl.executors.high_throughput.process_worker_pool "
              + DEFAULT_LAUNCH_CMD.split(" ", 1)[1])


def _address():
    try:
        return address_by_interface('hsn0')
    except OSError:  # not on a node with that interface: let workers probe every address
        return None


def get_config(run_dir: str = "runinfo", pool_tmp: str | None = None) -> Config:
    """A fresh parsl.Config for the site SITE. ``pool_tmp``: the TMPDIR of this machine's worker pool."""
    worker_init = WORKER_INIT
    return Config(
        executors=[
            HighThroughputExecutor(
                label='hpckit-perlmutter',
                address=_address(),
                encrypted=True,  # CurveZMQ between interchange and workers; keys in run_dir (0700)
                cores_per_worker=4,
                mem_per_worker=15.0,
                max_workers_per_node=32,
                drain_period=6450,  # stop taking tasks, finish the running ones, end before the walltime
                launch_cmd=LAUNCH_CMD,
                provider=SlurmProvider(
                    nodes_per_block=1,
                    init_blocks=0,
                    min_blocks=0,
                    max_blocks=8,
                    walltime='02:00:00',
                    exclusive=False,
                    worker_init=worker_init,
                    scheduler_options=SCHEDULER_OPTIONS,
                    launcher=SingleNodeLauncher(),
                ),
            )
        ],
        run_dir=run_dir,
    )


config = get_config()
