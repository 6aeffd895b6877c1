"""`hpckit doctor --fileset FILE`: can this node read the fileset's storage before a run needs it?

For every distinct storage endpoint (``root://host:port``, or the local filesystem) of the fileset's files
and replicas: the endpoint answers, and one of its files opens. For XRootD, a grid credential (x509 proxy
or WLCG bearer token) must be present where the site says one is needed. Each failure comes with its fix.

Pure-ish: functions take the fileset and the environment and return :class:`Check` rows (the same
shape as ``hpckit.doctor.Check``); nothing here knows sites beyond one ``credential_required`` flag.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from hpckit.io import storage
from hpckit.deploy.checks import Check
from hpckit.core.errors import FileAccessError, HpckitError




def endpoints(fileset: Any) -> dict[str, list[str]]:
    """Endpoint -> its files (primaries first, then replicas), in fileset order."""
    from hpckit.core.errors import FilesetError
    from hpckit.processor.fileset import normalize_fileset

    try:
        specs = normalize_fileset(fileset)
    except FilesetError as err:  # bare file lists name no tree; any name does to find the files
        if "no tree name" not in str(err):
            raise
        specs = normalize_fileset(fileset, "Events")
    out: dict[str, list[str]] = {}
    for spec in specs:
        for name in (spec.filename, *spec.replicas):
            files = out.setdefault(storage.parse(name).endpoint, [])
            if name not in files:
                files.append(name)
    return out


def find_credential(env: Mapping[str, str] | None = None, uid: int | None = None) -> tuple[str | None, str]:
    """(what was found, where it was looked for): an x509 proxy ($X509_USER_PROXY, /tmp/x509up_u<uid>) or a
    WLCG bearer token ($BEARER_TOKEN, $BEARER_TOKEN_FILE, $XDG_RUNTIME_DIR/bt_u<uid>, /tmp/bt_u<uid>)."""
    env = os.environ if env is None else env
    uid = os.getuid() if uid is None else uid
    if env.get("BEARER_TOKEN", "").strip():
        return "bearer token in $BEARER_TOKEN", ""
    places = [
        ("x509 proxy", env.get("X509_USER_PROXY") or f"/tmp/x509up_u{uid}"),
        ("bearer token", env.get("BEARER_TOKEN_FILE") or ""),
        ("bearer token", f"{env['XDG_RUNTIME_DIR']}/bt_u{uid}" if env.get("XDG_RUNTIME_DIR") else ""),
        ("bearer token", f"/tmp/bt_u{uid}"),
    ]
    refused = []
    for kind, path in places:
        if path and os.path.isfile(path) and os.path.getsize(path) > 0:
            problem = _not_private(path, uid)
            if problem is None:
                return f"{kind} {path}", ""
            refused.append(f"{path} {problem}")
    looked = "$BEARER_TOKEN, " + ", ".join(p for _, p in places if p)
    return None, looked + "".join(f"; not used: {r}" for r in refused)


def _not_private(path: str, uid: int) -> str | None:
    """Why a credential file cannot be trusted: another user's (planted in /tmp under your name: your reads
    would go out as them) or readable by others (grid tools refuse such a proxy too); None when it is fine."""
    st = os.stat(path)
    if st.st_uid != uid:
        return f"belongs to uid {st.st_uid}, not you"
    if st.st_mode & 0o077:
        return f"is readable or writable by others (mode {st.st_mode & 0o777:o}; fix: chmod 600 {path})"
    return None


def check_credential(required: bool, endpoints_: Mapping[str, list[str]],
                     env: Mapping[str, str] | None = None) -> list[Check]:
    remote = [e for e in endpoints_ if e != "local"]
    if not remote:
        return []
    found, looked = find_credential(env)
    if found:
        return [Check("grid credential", "pass", f"{found} (for {', '.join(remote)})")]
    if not required:
        return [Check("grid credential", "skip",
                             f"none found ({looked}); the site does not say one is needed (anonymous XRootD)")]
    return [Check(
        "grid credential", "fail", f"the site needs one for {', '.join(remote)}; none found in {looked}",
        "voms-proxy-init -voms <vo> -valid 192:00 (x509 proxy), or htgettoken / oidc-token into "
        "$BEARER_TOKEN_FILE (token)",
    )]


def check_endpoint(endpoint: str, files: list[str], timeout: int = 10) -> list[Check]:
    """The endpoint answers (XRootD: a ping), and one of its files opens (the first; others if it fails)."""
    out: list[Check] = []
    if endpoint != "local":
        if not storage.have_remote_support():
            return [Check(f"storage {endpoint}", "fail", "the XRootD client is not installed",
                                 storage.INSTALL_XROOTD)]
        storage.configure_xrootd_client()
        from XRootD import client

        status, _ = client.FileSystem(endpoint).ping(timeout=timeout)
        if not status.ok:
            host = endpoint.split("://", 1)[1]
            return [Check(f"storage {endpoint}", "fail", f"no answer: {status.message.strip()}",
                                 f"check the host and port, and that this node may reach it (xrdfs {host} ping); "
                                 "or use a replica at another endpoint")]
        out.append(Check(f"storage {endpoint}", "pass", "answers"))
    from hpckit.events.reader import file_uuid

    errors = []
    for name in files[:3]:
        try:
            uuid = file_uuid(name, {"timeout": timeout} if endpoint != "local" else {})
        except FileAccessError as err:
            errors.append(str(err))
            continue
        out.append(Check(f"open file on {endpoint}", "pass", f"{name} (uuid {uuid})"))
        return out
    fix = ("fix the path in the fileset or list a replica" if "not found" in errors[0]
           else "a grid credential may be missing (voms-proxy-init / htgettoken)" if "refused" in errors[0]
           else "check the file is a ROOT file and readable from this node")
    out.append(Check(f"open file on {endpoint}", "fail", "; ".join(errors), fix))
    return out


def check_fileset_storage(fileset: Any, credential_required: bool = False, timeout: int = 10) -> list[Check]:
    """Every storage check for ``fileset`` (a mapping or JSON path), in endpoint order."""
    try:
        eps = endpoints(fileset)
    except (HpckitError, ImportError) as err:
        fix = storage.INSTALL_XROOTD if isinstance(err, ImportError) else "fix the fileset entry named above"
        return [Check("fileset", "fail", str(err), fix)]
    out = [Check("fileset", "pass", f"{sum(map(len, eps.values()))} files at {len(eps)} endpoint(s)")]
    for endpoint, files in eps.items():
        out += check_endpoint(endpoint, files, timeout)
    return out + check_credential(credential_required, eps)
