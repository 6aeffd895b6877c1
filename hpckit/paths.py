"""Files and directories that are the user's own: capped reads of input files, private directories.

Shared by the deploy half (site files) and the processor half (filesets, checkpoints), which never
import each other.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "cache_dir", "config_dir", "private_dir", "read_limited", "user_run_root"]


def read_limited(path: str | os.PathLike, limit: int, error: type[Exception], what: str = "file") -> bytes:
    """The bytes of regular file ``path``, or ``error`` when it is missing, not a regular file
    (``/dev/zero``, a FIFO, a directory) or larger than ``limit`` bytes. Never reads more than ``limit + 1``."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise error(f"{what} {p} is not a regular file (a device, pipe or directory cannot be read as one)")
            if st.st_size > limit:
                raise error(f"{what} {p} is {st.st_size:,} bytes, more than the limit of {limit:,} bytes")
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise error(f"{what} {p} does not exist") from None
    except IsADirectoryError:
        raise error(f"{what} {p} is a directory, not a file") from None
    except PermissionError:
        raise error(f"{what} {p} cannot be read (permission denied)") from None
    if len(data) > limit:  # grew while we read it
        raise error(f"{what} {p} is more than the limit of {limit:,} bytes")
    return data


def config_dir() -> Path:
    """``$XDG_CONFIG_HOME/hpckit`` or ``~/.config/hpckit``, created 0700 if missing."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return private_dir(Path(base) / "hpckit", check_parent=False)


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/hpckit`` or ``~/.cache/hpckit``, created 0700 if missing (refused if not ours)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return private_dir(Path(base) / "hpckit", check_parent=False)


def _insecure(st: os.stat_result) -> str | None:
    if st.st_uid != os.getuid():
        return f"owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def private_dir(path: str | os.PathLike, check_parent: bool = False) -> Path:
    """Create ``path`` (and missing parents) mode 0700 and make sure it is the user's own.

    An existing directory owned by someone else, or writable by group or others, is refused with a
    ``PermissionError`` naming it (someone could plant files in it); one that is ours but readable by
    others is tightened to 0700. With ``check_parent`` the parent must not be group/world-writable
    unless it has the sticky bit (like /tmp).
    """
    p = Path(path)
    p.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.stat(p, follow_symlinks=False)
    if stat.S_ISLNK(st.st_mode):
        raise PermissionError(f"{p} is a symbolic link; hpckit wants a real directory it owns")
    problem = _insecure(st)
    if problem:
        raise PermissionError(f"directory {p} is {problem}; use a directory that only you can write")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(p, 0o700)
    if check_parent:
        pst = os.stat(p.parent)
        if pst.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not pst.st_mode & stat.S_ISVTX:
            raise PermissionError(f"directory {p.parent} is writable by others without the sticky bit")
    return p


def user_run_root(scratch: str | os.PathLike) -> Path:
    """``<scratch>/hpckit-runs-<user>``, private (0700): where a launch on a shared scratch puts its
    run directories, so no other user can read the outputs or plant files in them."""
    user = getpass.getuser()
    return private_dir(Path(scratch) / f"hpckit-runs-{user}", check_parent=True)


def atomic_write(path: str | os.PathLike, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to a private (0600) temporary file next to ``path``, fsync, rename: a reader sees the
    old file or the whole new one, and on any error (a full disk, a signal) the temporary file is removed.
    ``mode``: the final permissions (None keeps 0600)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` as the user's umask lets a new file have it."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask
