"""Outputs and run directories are the user's own, and a failed write leaves nothing behind."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
from conftest import REPO

from hpckit.io.paths import private_dir, user_run_root

_WRITE = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails with EFBIG, like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
from hpckit.io.outputs import write_results
try:
    write_results(sys.argv[1], {"big": b"x" * 100_000}, {"n": 1}, plots=False)
except OSError as exc:
    print("failed:", exc)
    sys.exit(3)
"""


def test_failed_output_write_leaves_no_part_file(tmp_path):
    out = tmp_path / "out.pkl"
    r = subprocess.run([sys.executable, "-c", _WRITE, str(out)], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(REPO), PYTHONDONTWRITEBYTECODE="1"))
    assert r.returncode == 3 and "File too large" in r.stdout, r.stdout + r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no out.pkl, no .out.pkl.*.part


def test_outputs_follow_the_users_umask(tmp_path):
    """Output files get the permissions the user's umask gives (077: private); the temporary file they
    are written through is private whatever the umask. Run directories are 0700 (below)."""
    from hpckit.io.outputs import write_results

    for mask, mode in ((0o077, 0o600), (0o022, 0o644)):
        old = os.umask(mask)
        try:
            written = write_results(tmp_path / f"o{mask:o}.pkl", {"n": 1}, {"n": 1}, plots=False)
        finally:
            os.umask(old)
        for p in written:
            assert stat.S_IMODE(p.stat().st_mode) == mode, p


def test_private_dir_and_user_run_root(tmp_path):
    shared = tmp_path / "scratch"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o1777)  # like a shared scratch: world-writable, sticky
    root = user_run_root(shared)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700 and root.name.startswith("hpckit-runs-")
    run = private_dir(root / "20260101-abc")
    assert stat.S_IMODE(run.stat().st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    with pytest.raises(PermissionError, match="writable by group or others"):
        private_dir(loose)
    os.chmod(shared, 0o777)  # world-writable without the sticky bit: anyone may replace our directory
    with pytest.raises(PermissionError, match="without the sticky bit"):
        user_run_root(shared)
    if os.getuid() == 0:
        other = tmp_path / "other"
        other.mkdir(mode=0o700)
        os.chown(other, 65534, 65534)
        with pytest.raises(PermissionError, match="owned by uid 65534"):
            private_dir(other)
