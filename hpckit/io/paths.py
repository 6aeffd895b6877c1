"""Files and directories that are the user's own: capped reads of input files, private directories.

Shared by the deploy half (site files) and the processor half (filesets, checkpoints), which never
import each other.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import stat
import tempfile
from pathlib import Path

from hpckit.core.errors import HpckitError

__all__ = ["UnsafePathError", "atomic_write", "cache_dir", "config_dir", "own_dir", "private_dir", "read_limited",
           "shell_safe_path", "untrusted_file", "user_run_root"]


class UnsafePathError(HpckitError, PermissionError):
    """A directory or file that someone else controls (owns it, can write it, or links to it)."""


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


_SHELL_SAFE = re.compile(r"[A-Za-z0-9/._+@,:=~-]*")


def shell_safe_path(path: str | os.PathLike, what: str = "path") -> str:
    """``path`` unchanged if every character is one that means nothing to a shell, to ``str.format`` or to
    a Slurm/PBS file name pattern: letters, digits and ``/._+@,:=~-``. Engines put such paths into shell
    command lines without quotes (Parsl formats its run directory into the worker command and its
    providers' scripts; batch log directives) and nothing can quote them there, so any other character
    (space, ``$``, backquote, quotes, ``;|&<>(){}[]*?!#%``, newline) is an :class:`UnsafePathError`."""
    s = os.fspath(path)
    if not _SHELL_SAFE.fullmatch(s):
        bad = sorted({c for c in s if not _SHELL_SAFE.fullmatch(c)})
        shown = ", ".join(repr(c) for c in bad[:8])
        raise UnsafePathError(f"{what} {s[:120]!r} holds {shown}: batch engines put it into shell commands "
                              "unquoted; use a path of letters, digits and /._+@,:=~-")
    return s


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


def _trusted_owner(uid: int) -> bool:
    """You, or root (who can do anything anyway)."""
    return uid in (os.getuid(), 0)


def untrusted_file(path: str | os.PathLike, st: os.stat_result, top: str | os.PathLike | None = None) -> str | None:
    """Why the open file ``path`` (``st``: its fstat) is not one to unpickle, or None when it is: a regular
    file owned by you, not writable by group or others, in directories (up to ``top``, else its own) that
    others cannot write (a sticky one like /tmp is fine: nobody can replace your file there). The one check
    behind every pickle hpckit loads from disk (checkpoints) and every record the report reads."""
    p = Path(path)
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file"
    if st.st_uid != os.getuid():
        return f"owned by uid {st.st_uid}, not by you (uid {os.getuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"writable by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    top_parts = len(Path(top).parts) if top is not None else len(p.parent.parts)
    d = p.parent
    while True:
        dst = os.stat(d)
        if dst.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not dst.st_mode & stat.S_ISVTX:
            return f"directory {d} is writable by others"
        if not _trusted_owner(dst.st_uid):
            return f"directory {d} is owned by uid {dst.st_uid}, not by you"
        if d.parent == d or len(d.parts) <= top_parts:
            return None
        d = d.parent


def _walk(path: Path, what: str) -> tuple[Path, list[str]]:
    """Resolve ``path`` one component at a time (like the kernel does), refusing any symbolic link owned by
    another user (its owner could point it anywhere at any time). Returns the deepest existing directory
    and the components below it that do not exist yet."""
    queue = list(Path(os.path.abspath(path)).parts[1:])
    cur, hops = Path("/"), 0
    while queue:
        name = queue.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            cur = cur.parent
            continue
        nxt = cur / name
        try:
            st = os.lstat(nxt)
        except FileNotFoundError:
            return cur, [name, *queue]
        except NotADirectoryError:
            raise UnsafePathError(f"{what} {path}: {cur} is not a directory") from None
        if stat.S_ISLNK(st.st_mode):
            if not _trusted_owner(st.st_uid):
                raise UnsafePathError(f"{what} {path} is reached through the symbolic link {nxt}, owned by uid "
                                      f"{st.st_uid}, not by you: its owner can point it anywhere; use a path of "
                                      "your own")
            hops += 1
            if hops > 40:
                raise UnsafePathError(f"{what} {path}: too many symbolic links")
            target = Path(os.readlink(nxt))
            if target.is_absolute():
                cur, queue = Path("/"), [*target.parts[1:], *queue]
            else:
                queue = [*target.parts, *queue]
            continue
        cur = nxt
    return cur, []


def own_dir(path: str | os.PathLike, what: str = "directory", create: bool = False,
            private: bool = False) -> Path:
    """``path`` if it is a directory only you (or root) control: not owned by another user, not reached
    through another user's symbolic link, not under a directory another user owns where it does not exist
    yet. ``create``: make what is missing (0700). ``private``: also refuse a directory that group or others
    may write (without the sticky bit). Anything else is an :class:`UnsafePathError` naming the path."""
    p = Path(path)
    deepest, missing = _walk(p, what)
    st = os.stat(deepest)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{what} {p}: {deepest} is not a directory")
    if not _trusted_owner(st.st_uid):
        where = f"{deepest}, which" if missing else "it"
        raise UnsafePathError(f"{what} {p} is not yours: {where} is owned by uid {st.st_uid} (you are uid "
                              f"{os.getuid()}); another user could read or replace what hpckit writes there. "
                              "Use a directory of your own")
    writable = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX
    if private and writable:
        raise UnsafePathError(f"{what} {p} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}): "
                              f"others could plant files in it; run `chmod go-w {p}` or use another directory")
    if create and missing:
        (deepest.joinpath(*missing)).mkdir(mode=0o700, parents=True, exist_ok=True)
        return own_dir(p, what, create=False, private=private)
    return p


def private_dir(path: str | os.PathLike, check_parent: bool = False, what: str = "directory") -> Path:
    """Create ``path`` (and missing parents) mode 0700 and make sure it is the user's own.

    An existing directory owned by someone else, or writable by group or others, is refused with a
    ``PermissionError`` naming it (someone could plant files in it); one that is ours but readable by
    others is tightened to 0700. With ``check_parent`` the parent must not be group/world-writable
    unless it has the sticky bit (like /tmp).
    """
    p = Path(path)
    own_dir(p, what, create=True, private=True)  # no other user's directory or symbolic link on the way
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


class WriteError(HpckitError, OSError):
    """A file could not be written (full disk, read-only or foreign directory): names the file and the room left."""

    def __new__(cls, message: str = "", *args: object, **kwargs: object) -> WriteError:
        return super().__new__(cls, message)

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def free_space(path: str | os.PathLike) -> str:
    """``"12.3 MB free"`` on the file system holding ``path`` (its nearest existing parent)."""
    from hpckit.core.units import format_bytes

    p = Path(os.path.abspath(path))
    while not p.exists() and p.parent != p:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return "free space unknown"
    return f"{format_bytes(st.f_bavail * st.f_frsize)} free"


def write_error(path: str | os.PathLike, err: OSError) -> WriteError:
    """One line for a failed write: the file, the reason, and the free space where it matters."""
    import errno

    why = err.strerror or str(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        why += f" ({free_space(path)} on the file system of {Path(path).parent}); free some space or write elsewhere"
    elif err.errno == errno.EROFS:
        why += "; write elsewhere (--output, --run-dir)"
    elif err.errno in (errno.EACCES, errno.EPERM):
        why += f": you may not write in {Path(path).parent}; write elsewhere (--output, --run-dir)"
    out = WriteError(f"cannot write {path}: {why}")
    out.errno = err.errno
    return out


def atomic_write(path: str | os.PathLike, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to a private (0600) temporary file next to ``path``, fsync, rename: a reader sees the
    old file or the whole new one, and on any error (a full disk, a signal) the temporary file is removed.
    ``mode``: the final permissions (None keeps 0600). An OSError becomes a :class:`WriteError` naming
    ``path`` (and the free space when the disk is full)."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".part")
    except OSError as err:
        raise write_error(p, err) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, p)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, WriteError):
            raise write_error(p, exc) from None
        raise


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` as the user's umask lets a new file have it. Read from /proc where it is there: setting the
    umask to read it back would, for an instant, let another thread create a file open to everyone."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return mode & ~int(line.split()[1], 8)
    mask = os.umask(0o077)
    os.umask(mask)
    return mode & ~mask


def write_json(path: str | os.PathLike, data: object) -> None:
    """``data`` as indented JSON, written atomically (:func:`atomic_write`) with the umask's permissions:
    the state files (launch.json, pool.json) that other commands read while a run writes them."""
    import json

    atomic_write(path, (json.dumps(data, indent=2, default=str) + "\n").encode(), umask_mode())
