"""Where a file lives: local paths, ``file://`` and ``root://`` (XRootD) URLs.

One place that knows the URL forms hpckit reads, so the fileset checks them in the driver (before any
worker starts), the reader opens them, and ``hpckit doctor`` groups them by storage endpoint.
XRootD reading goes through uproot's fsspec source (PyPI ``fsspec-xrootd`` + the ``xrootd`` client wheel,
the ``hpckit[xrootd]`` extra).
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable

from hpckit.core.errors import HpckitError

REMOTE_SCHEMES = ("root",)
SCHEMES = ("file", *REMOTE_SCHEMES)
INSTALL_XROOTD = "pip install 'hpckit[xrootd]'"

_URL = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$")
_SCHEME_ONE_SLASH = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):/(?!/)")
_HOST = re.compile(r"^(?:[^@/\s]+@)?(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)(?::(?P<port>[^/]*))?$")


class RemoteSupportMissing(HpckitError, ImportError):
    """A root:// fileset, but the XRootD client packages are not installed."""


class BadURL(HpckitError, ValueError):
    """A file name that is not a readable path or URL (the message says what is wrong with it)."""


@dataclass(frozen=True)
class Location:
    scheme: str  # "" for a plain local path
    endpoint: str  # "root://host:port" for XRootD, "local" for local files
    path: str

    @property
    def remote(self) -> bool:
        return self.scheme in REMOTE_SCHEMES


def parse(name: str) -> Location:
    """Split a file name into scheme, storage endpoint and path; :class:`BadURL` says what is malformed."""
    if not isinstance(name, str) or not name.strip():
        raise BadURL(f"file name must be a non-empty string, got {name!r}")
    m = _URL.match(name)
    if m is None:
        if _SCHEME_ONE_SLASH.match(name) and not os.path.exists(name):
            raise BadURL(f"{name!r} looks like a URL with one slash after the scheme; write scheme://host/...")
        return Location("", "local", name)
    scheme, rest = m.group("scheme").lower(), m.group("rest")
    if scheme not in SCHEMES:
        raise BadURL(f"unknown URL scheme {scheme!r} in {name!r}; hpckit reads local paths, "
                     + ", ".join(f"{s}://" for s in SCHEMES) + " URLs")
    if scheme == "file":
        host, _, path = rest.partition("/")
        if host not in ("", "localhost") or not path:
            raise BadURL(f"{name!r}: a file URL is file:///absolute/path (no host)")
        return Location("file", "local", "/" + path)
    hostport, slash, path = rest.partition("/")
    hm = _HOST.match(hostport)
    if not hostport or hm is None:
        raise BadURL(f"{name!r}: no valid host in the URL; write {scheme}://host[:port]//path/file.root")
    port = hm.group("port")
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        raise BadURL(f"{name!r}: port {port!r} is not a number in 1-65535")
    if not slash or not path.strip("/"):
        raise BadURL(f"{name!r}: no file path after the host; write {scheme}://host[:port]//path/file.root")
    if any(c.isspace() for c in name):
        raise BadURL(f"{name!r}: URLs cannot contain spaces")
    endpoint = f"{scheme}://{hm.group('host')}" + (f":{port}" if port else "")
    return Location(scheme, endpoint, "/" + path)


def is_remote(name: str) -> bool:
    m = _URL.match(name) if isinstance(name, str) else None
    return m is not None and m.group("scheme").lower() in REMOTE_SCHEMES


def local_path(name: str) -> str | None:
    """The local path of a plain path or file:// URL; None for remote URLs."""
    if is_remote(name):
        return None
    if name.lower().startswith("file://"):
        return parse(name).path
    return name


def local_identity(name: str) -> str | None:
    """A local file's identity, (size, mtime ns, inode, device): a rewrite or a rename over it changes it. None
    for a remote file, or one that cannot be stat'ed. What says a cached handle or metadata is still the file's."""
    path = local_path(name)
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_dev}"


def have_remote_support() -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in ("fsspec_xrootd", "XRootD"))
    except (ImportError, ValueError):
        return False


def require_remote_support(names: Iterable[str]) -> None:
    """Fail at once, with the install line, when a root:// file is listed but cannot be read here."""
    first = next((n for n in names if is_remote(n)), None)
    if first is not None and not have_remote_support():
        raise RemoteSupportMissing(
            f"{first} is an XRootD URL but the XRootD client is not installed; install it with: {INSTALL_XROOTD}"
        )


# -- the XRootD client -----------------------------------------------------------------------------
# hpckit retries and fails over between replicas itself, so the client should report a dead server at
# once instead of re-connecting for minutes, and check request timeouts every second (its default, 15 s,
# makes a 5 s timeout fire after 15 s). Variables the user set (XRD_...) win.
# Requests made without a timeout of their own (fsspec-xrootd's server query before a first vector read)
# get the client's RequestTimeout (default 1800 s): it is set to the run's timeout as well.
_CLIENT_DEFAULTS = {"TimeoutResolution": 1, "ConnectionRetry": 1}
_configured: dict[str, int] = {}


def configure_xrootd_client(timeout: int | None = None) -> None:
    """Tune the process's XRootD client (cheap to call before every open)."""
    wanted = dict(_CLIENT_DEFAULTS)
    if timeout:
        wanted["RequestTimeout"] = max(1, int(timeout))
    todo = {k: v for k, v in wanted.items() if _configured.get(k) != v and f"XRD_{k.upper()}" not in os.environ}
    if not todo:
        return
    try:
        from XRootD.client import EnvPutInt
    except ImportError:
        return
    for key, value in todo.items():
        EnvPutInt(key, value)
        _configured[key] = value


def drop_remote_handle(uproot_file: Any) -> None:
    """Forget fsspec-xrootd's cached handle of an uproot file after an error, without waiting on the
    server (a frozen one would block a close for the whole timeout): the next open makes a new one.
    fsspec-xrootd keeps handles per URL across uproot.open calls, so a retry would otherwise reuse the
    broken one."""
    try:
        source = uproot_file.source
        fs, url = source._fs, source._fs.unstrip_protocol(source._file_path)
        item = fs._readonly_filehandle_cache._cache.pop(url, None)
    except Exception:  # noqa: BLE001 - not fsspec-xrootd, or its internals changed: nothing cached to drop
        return
    if item is not None:
        try:
            item.handle.close(callback=lambda *args: None)
        except Exception:  # noqa: BLE001
            pass


_NOT_FOUND = re.compile(r"\[3011\]|no such file", re.I)
_IS_DIR = re.compile(r"\[3016\]|is a directory", re.I)
_REFUSED = re.compile(r"\[3010\]|\[3030\]|auth|permission denied|not authorized", re.I)


def describe_error(name: str, err: BaseException) -> tuple[str, bool]:
    """A message naming ``name`` for a failure to open it, and whether retrying cannot help."""
    text = f"{type(err).__name__}: {err}".strip()
    if isinstance(err, FileNotFoundError) or _NOT_FOUND.search(text):
        return f"file not found: {name} ({text})", True
    if isinstance(err, IsADirectoryError) or _IS_DIR.search(text):
        return f"{name} is a directory, not a ROOT file ({text})", True
    if is_remote(name) and _REFUSED.search(text):
        return f"the server refused {name}: {text} (a grid credential may be missing or the path not exported)", True
    if is_remote(name) and "expired" in text.lower():
        return f"no answer from the server of {name} within the timeout (xrootdtimeout): {text}", False
    return f"cannot open {name} as a ROOT file: {text}", False
