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
from parsl.providers import LocalProvider

SITE = 'local'
SCHEDULER = 'local'
SOURCES = ['hpckit default (no facility)']  # where the facts come from
GATHERED_ON = '2026-11-26'  # when the facts were taken from SOURCES
CHECKED = 'run on this machine by the test suite (tests/test_launch_local.py)'

# Directives added to every block's job script (site values validated: no spaces, quotes or shell characters).
SCHEDULER_OPTIONS = "\n".join([
])

POOL_TMP_INIT = 'export TMPDIR={}'

# Shell run before the worker pool starts.
WORKER_INIT = "\n".join([
    'export PYTHONSAFEPATH=1',
    'HPCKIT_SCRATCH="${TMPDIR:-/tmp}"/hpckit-"$(id -u)"',
    'mkdir -p -m 700 "$HPCKIT_SCRATCH" 2>/dev/null || { echo "hpckit: cannot create $HPCKIT_SCRATCH on $(hostname); fix: --set scratch=<a writable directory>" >&2; exit 78; }',
    '{ [ "$(stat -c \'%u %F\' -- "$HPCKIT_SCRATCH" 2>/dev/null)" = "$(id -u) directory" ] && chmod 700 "$HPCKIT_SCRATCH"; } || { echo "hpckit: $HPCKIT_SCRATCH on $(hostname) is not this user\'s own directory (another user made it, or it is a link): refusing to put the run\'s files there; fix: --set scratch=<a directory of yours>" >&2; exit 78; }',
    'export HPCKIT_SCRATCH',
])

# Workers run the site's python by path (inside its container, if any), not whatever
# process_worker_pool.py the job's PATH finds. Parsl formats LAUNCH_CMD twice (its options, then each
# block's id), so the braces of shell variables are doubled twice.
WORKER_PYTHON = 'python3'

LAUNCH_CMD = (WORKER_PYTHON.replace("{", "{{{{").replace("}", "}}}}")
              + " -m parsl.executors.high_throughput.process_worker_pool "
              + DEFAULT_LAUNCH_CMD.split(" ", 1)[1])


def _address():
    return "127.0.0.1"


def get_config(run_dir: str = "runinfo", pool_tmp: str | None = None) -> Config:
    """A fresh parsl.Config for the site SITE. ``pool_tmp``: the TMPDIR of this machine's worker pool."""
    worker_init = WORKER_INIT
    if pool_tmp:  # hpckit makes and removes it: Parsl's pool leaves its multiprocessing pymp-* directory behind
        worker_init += "\n" + POOL_TMP_INIT.format(shlex.quote(pool_tmp))
    return Config(
        executors=[
            HighThroughputExecutor(
                label='hpckit-local',
                address=_address(),
                encrypted=True,  # CurveZMQ between interchange and workers; keys in run_dir (0700)
                cores_per_worker=1,
                launch_cmd=LAUNCH_CMD,
                provider=LocalProvider(
                    init_blocks=1,
                    min_blocks=0,
                    max_blocks=1,
                    worker_init=worker_init,
                    launcher=SingleNodeLauncher(),
                ),
            )
        ],
        run_dir=run_dir,
    )


config = get_config()
