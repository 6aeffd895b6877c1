"""Where a TaskVine build for the tests lives. ndcctools is not on PyPI, so CI has none (and skips, whatever /tmp
holds); a build made by hand under /tmp/engines/<name> (docs/testing.md) is used only when it works with this
interpreter: a Python that lacks what the build's package imports (conda_pack, which TaskVine's serverless
libraries need) makes the test skip naming that, instead of failing inside a launch."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import pytest


def cctools_build(serverless: bool = True) -> tuple[Path, Path]:
    """(the build's root, its site-packages) or a skip that says why; `serverless`: the run makes a TaskVine
    library (hpckit's default mode), which imports conda_pack in the manager."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.skip("TaskVine is not on PyPI, so CI has no build of its own; a /tmp/engines left on the machine "
                    "is a developer's and not trusted here")
    factories = sorted(glob.glob("/tmp/engines/*/bin/vine_factory"))
    packages = sorted(glob.glob("/tmp/engines/*/lib/python3*/site-packages/ndcctools/taskvine"))
    if not factories or not packages:
        pytest.skip("no TaskVine build under /tmp/engines (ndcctools is not on PyPI, so CI has none)")
    root, site = Path(factories[-1]).parents[1], Path(packages[-1]).parents[1]
    imports = "import ndcctools.taskvine" + (", conda_pack" if serverless else "")
    probe = subprocess.run([sys.executable, "-c", imports], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONPATH": str(site)})
    if probe.returncode:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(f"the TaskVine build in {root} does not work with {sys.executable}: {last}")
    return root, site
