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

SITE = 'slurm-podman'
SCHEDULER = 'slurm'
SOURCES = ["scripts/slurm-local.sh (partition 'debug'), scripts/podman-setup.sh (rootful podman, runc, no registry)"]  # where the facts come from
GATHERED_ON = '2026-11-30'  # when the facts were taken from SOURCES
CHECKED = "workers run in the built image on this machine's Slurm by the test suite (tests/test_delivery_slurm.py)"

# Directives added to every block's job script (site values validated: no spaces, quotes or shell characters).
SCHEDULER_OPTIONS = "\n".join([
    '#SBATCH --partition=debug',
    '#SBATCH --cpus-per-task=1',
    '#SBATCH --mem=1024M',
])

# Shell run before the worker pool starts.
WORKER_INIT = "\n".join([
    'unset PYTHONPATH PYTHONHOME PYTHONSTARTUP PYTHONUSERBASE VIRTUAL_ENV CONDA_PREFIX CONDA_DEFAULT_ENV',
    'export PATH=/usr/local/bin:/usr/bin:/bin',
    'export PYTHONSAFEPATH=1',
    'HPCKIT_SCRATCH=/tmp/hpckit-"$(id -u)"',
    'mkdir -p -m 700 "$HPCKIT_SCRATCH" 2>/dev/null || { echo "hpckit: cannot create $HPCKIT_SCRATCH on $(hostname); fix: --set scratch=<a writable directory>" >&2; exit 78; }',
    '{ [ "$(stat -c \'%u %F\' -- "$HPCKIT_SCRATCH" 2>/dev/null)" = "$(id -u) directory" ] && chmod 700 "$HPCKIT_SCRATCH"; } || { echo "hpckit: $HPCKIT_SCRATCH on $(hostname) is not this user\'s own directory (another user made it, or it is a link): refusing to put the run\'s files there; fix: --set scratch=<a directory of yours>" >&2; exit 78; }',
    'export HPCKIT_SCRATCH',
    'hpckit_job="hpckit-worker-${SLURM_JOB_ID:-${PBS_JOBID:-job}}-$$"',
    'hpckit_stop() { podman ps -q --filter "name=^$hpckit_job-" | xargs -r podman stop --time 2 >/dev/null 2>&1; }',
    'trap hpckit_stop TERM INT HUP',
    'hpckit_podman() { hpckit_n=$((${hpckit_n:-0} + 1)); hpckit_sub=$1; shift; podman "$hpckit_sub" --name "$hpckit_job-$hpckit_n-$(date +%s%N)" "$@" & hpckit_p=$!; hpckit_rc=0; wait "$hpckit_p" || hpckit_rc=$?; if [ "$hpckit_rc" -gt 128 ]; then hpckit_rc=0; wait "$hpckit_p" || hpckit_rc=$?; fi; return "$hpckit_rc"; }',
])

# Workers run the site's python by path (inside its container, if any), not whatever
# process_worker_pool.py the job's PATH finds. Parsl formats LAUNCH_CMD twice (its options, then each
# block's id), so the braces of shell variables are doubled twice.
WORKER_PYTHON = 'hpckit_podman run --rm --init --network=host --pull=never -v /tmp:/tmp "${HPCKIT_IMAGE:?export HPCKIT_IMAGE=<the image hpckit build --site slurm-podman made>}" python3'

LAUNCH_CMD = (WORKER_PYTHON.replace("{", "{{{{").replace("}", "}}}}")
              + " -m parsl.executors.high_throughput.process_worker_pool "
              + DEFAULT_LAUNCH_CMD.split(" ", 1)[1])


def _address():
    return "127.0.0.1"


def get_config(run_dir: str = "runinfo", pool_tmp: str | None = None) -> Config:
    """A fresh parsl.Config for the site SITE. ``pool_tmp``: the TMPDIR of this machine's worker pool."""
    worker_init = WORKER_INIT
    return Config(
        executors=[
            HighThroughputExecutor(
                label='hpckit-slurm-podman',
                address=_address(),
                encrypted=True,  # CurveZMQ between interchange and workers; keys in run_dir (0700)
                cores_per_worker=1,
                mem_per_worker=1.074,
                max_workers_per_node=1,
                drain_period=1575,  # stop taking tasks, finish the running ones, end before the walltime
                launch_cmd=LAUNCH_CMD,
                provider=SlurmProvider(
                    nodes_per_block=1,
                    init_blocks=0,
                    min_blocks=0,
                    max_blocks=4,
                    walltime='00:30:00',
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
