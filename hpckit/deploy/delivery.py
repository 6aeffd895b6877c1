"""How the locked environment reaches the workers (a site's ``env_delivery``), decided before anything is
submitted.

* :func:`client_lock` - the lock the client runs: ``env_delivery.lock``, else ``./hpckit.lock`` when it
  exists (the running environment must match it), else hpckit's closure plus its worker packages
  (:func:`default_lock`; ``hpckit build`` and ``hpckit pack`` make the same one by default).
* :func:`resolve` (pure) - the site with concrete values the templates render: ``venv`` workers run the
  client's interpreter by absolute path; ``image: built`` becomes the lock's tag; the tarball's path and
  the lock hash the worker job checks.
* :func:`preflight` - what can be checked from here, each a :class:`Check` with its fix: the image
  exists for the runtime and carries the lock's label; the tarball exists, is complete, and was packed
  from the same lock for the same Python and platform. ``launch`` stops at the first failure
  (:class:`DeliveryError`); ``doctor`` prints them all.

Workers check their installed versions against the lock anyway (:func:`hpckit.deploy.envlock.check_environment`),
so an image or tarball whose label says the right lock but whose contents differ is refused there.
"""

from __future__ import annotations

import gzip
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from hpckit.deploy.checks import Check
from hpckit.deploy.envlock import (
    DEFAULT_LOCK,
    Lock,
    LockError,
    differences,
    installed,
    local_code,
    make_lock,
    normalize,
    python_minor,
    read_lock,
)
from hpckit.deploy.site import Site
from hpckit.core.errors import HpckitError

__all__ = ["BUILT", "DeliveryError", "Check", "Prepared", "client_lock", "default_lock", "fix_command",
           "preflight", "prepare", "resolve", "tarball_manifest"]

BUILT = "built"  # container.image: the image `hpckit build --site NAME` made from the client's lock
# What a worker imports besides hpckit's closure, where the client has it: the engines (TaskVine's vine_worker
# is not a Python package) and the XRootD reader (without it a tarball or image cannot open root:// inputs).
WORKER_REQUIREMENTS = ("distributed", "parsl", "fsspec-xrootd")
MANIFEST = "hpckit-env.json"


class DeliveryError(HpckitError, RuntimeError):
    """The environment the site's workers would run is missing or is not the client's; nothing was submitted."""


# ------------------------------------------------------------------------------------------------
# the client's lock


def default_lock(require: list[str] | tuple[str, ...] = ()) -> Lock:
    """hpckit's closure plus the worker packages installed here (distributed, parsl, fsspec-xrootd) and ``require``:
    what workers import. ``hpckit build``, ``hpckit pack`` and ``hpckit launch`` share it by default."""
    have = installed()
    workers = [r for r in WORKER_REQUIREMENTS if normalize(r) in have and r not in require]
    return make_lock(require=[*workers, *require], closure=True)


def _expand(path: str) -> str | None:
    p = os.path.expanduser(os.path.expandvars(path))
    return None if "$" in p else p


def client_lock(site: Site, cwd: str | Path = ".") -> tuple[Lock, str]:
    """(lock, where it came from). A lock file must describe the running environment: a client whose
    versions differ from it would send work that its own workers cannot unpickle."""
    path = site.env_delivery.lock
    if path is None and (Path(cwd) / DEFAULT_LOCK).is_file():
        path = str(Path(cwd) / DEFAULT_LOCK)
    if path is None:
        return default_lock(), "hpckit's closure in this environment (hpckit env lock --closure -r distributed -r parsl)"
    expanded = _expand(path)
    if expanded is None:
        raise DeliveryError(f"env_delivery.lock {path}: variables not set here")
    try:
        lock = read_lock(expanded)
    except LockError as exc:
        raise DeliveryError(str(exc)) from None
    diff = differences(lock.fingerprint())
    if diff:
        lines = "\n".join(f"  {n}: lock {want}, here {have}" for n, want, have in diff)
        raise DeliveryError(
            f"this environment differs from the lock {expanded} in {len(diff)} package(s):\n{lines}\n"
            f"fix: lock again (hpckit env lock -o {expanded}) and rebuild/repack, or install the locked versions")
    return lock, expanded


# ------------------------------------------------------------------------------------------------
# resolution (pure)


def built_tag(lock: Lock) -> str:
    from hpckit.deploy.container import default_tag

    return default_tag(lock)


def built_image(site: Site, lock: Lock) -> str:
    """What ``container.image: built`` means for the site's runtime: the lock's tag in podman's (or
    podman-hpc's migrated) storage; ``<registry>/hpckit-env:<hash>`` for shifter; for Apptainer
    ``docker://<registry>/...`` or a .sif in ``env_delivery.path`` (a directory) or the scratch."""
    tag = built_tag(lock)
    name = tag.rsplit("/", 1)[-1]
    c = site.container
    if c.runtime == "shifter":
        return f"{c.registry.rstrip('/')}/{name}" if c.registry else tag
    if c.runtime == "apptainer":
        if c.registry:
            return f"docker://{c.registry.rstrip('/')}/{name}"
        where = site.env_delivery.path or site.scratch
        sif = name.replace(":", "_") + ".sif"
        return f"{where.rstrip('/')}/{sif}" if where else sif
    return tag


def resolve(site: Site, lock: Lock, executable: str = sys.executable) -> Site:
    """The site with what the templates need filled in (pure; ``site`` is not changed):

    * ``venv``: ``python`` = ``env_delivery.path``/bin/python, or the client's ``executable``;
    * ``image``: ``container.image: built`` -> the lock's tag (a .sif for Apptainer); ``python`` -> the
      image's own interpreter by path (``/opt/hpckit/env/bin/python3``);
    * ``tarball``: ``python`` = the unpacked interpreter (``$HPCKIT_ENV_DIR/bin/python3``);
    * every mode: ``env_delivery.lock_hash``.
    """
    d = site.env_delivery
    env = {"lock_hash": lock.hash}
    update: dict = {}
    if d.mode == "venv":
        update["python"] = f"{d.path.rstrip('/')}/bin/python" if d.path else executable
    elif d.mode == "tarball":
        update["python"] = "$HPCKIT_ENV_DIR/bin/python3"
        if d.path and "$" not in d.path and not os.path.isabs(os.path.expanduser(d.path)):
            env["path"] = os.path.abspath(d.path)  # the job runs elsewhere: name the file the client means
    elif d.mode == "image" and site.python == "python3":
        from hpckit.deploy.container import PREFIX

        update["python"] = f"{PREFIX}/env/bin/python3"  # where hpckit images keep it, whatever PATH says
    if site.container.image == BUILT:
        update["container"] = site.container.model_copy(update={"image": built_image(site, lock)})
    update["env_delivery"] = d.model_copy(update=env)
    return site.model_copy(update=update)


# ------------------------------------------------------------------------------------------------
# fixes


def fix_command(site: Site, kind: str, lock_src: str, target: str = "") -> str:
    """The exact command that makes what is missing: ``build`` (an image) or ``pack`` (a tarball)."""
    lock_arg = f" --lock {shlex.quote(lock_src)}" if os.path.isfile(lock_src) else ""
    if kind == "pack":
        return f"hpckit pack{lock_arg} -o {shlex.quote(target)}"
    cmd = f"hpckit build --site {shlex.quote(site.name)}{lock_arg}"
    if site.container.runtime == "shifter":
        name = target.rsplit("/", 1)[-1]
        cmd += f" && podman push {target} <registry>/{name} && shifterimg pull <registry>/{name}"
    elif site.container.runtime == "apptainer":
        cmd += " --runtime apptainer"
    return cmd


# ------------------------------------------------------------------------------------------------
# checks


def _run(argv: list[str], timeout: float = 60) -> tuple[int, str]:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return r.returncode, (r.stdout + r.stderr).strip()


def _lock_differences(want: Lock, have_pins: dict[str, str], have_python: str) -> list[str]:
    out = []
    if python_minor(want.python) != python_minor(have_python):
        out.append(f"python: client {python_minor(want.python)}, delivered {python_minor(have_python)}")
    for name in sorted(set(want.pins) | set(have_pins)):
        a, b = want.pins.get(name, "not in lock"), have_pins.get(name, "not in lock")
        if a != b:
            out.append(f"{name}: client {a}, delivered {b}")
    return out


def _podman_lock(runtime: str, image: str) -> Lock | None:
    """The lock file inside a local image (``/opt/hpckit/hpckit.lock``), to say what differs."""
    from hpckit.deploy.container import PREFIX

    rc, text = _run([runtime, "run", "--rm", "--pull=never", "--network=none", "--entrypoint", "cat", image,
                     f"{PREFIX}/hpckit.lock"], timeout=60)
    if rc != 0:
        return None
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".lock", delete=False) as fh:
        fh.write(text + "\n")
    try:
        return read_lock(fh.name)
    except LockError:
        return None
    finally:
        os.unlink(fh.name)


def check_image(site: Site, lock: Lock, lock_src: str) -> list[Check]:
    """The image exists for the site's runtime (as far as this machine can tell) and carries the lock."""
    from hpckit.deploy.container import LABEL_NS

    c = site.container
    image = c.image or ""
    fix = fix_command(site, "build", lock_src, image)
    rt = c.runtime
    if rt in ("podman", "podman-hpc"):
        if shutil.which(rt) is None:
            return [Check("image", "skip", f"{rt} is not on this machine: cannot check {image} here", fix)]
        rc, _ = _run([rt, "image", "exists", image])
        if rc != 0:
            return [Check("image", "fail", f"image {image} does not exist in {rt}'s local storage "
                            f"(workers run it with --pull=never)", fix)]
        rc, label = _run([rt, "image", "inspect", "--format", f'{{{{index .Labels "{LABEL_NS}.lock-hash"}}}}', image])
        label = label.strip() if rc == 0 else ""
        if label in ("", "<no value>"):
            return [Check("image", "fail", f"image {image} has no {LABEL_NS}.lock-hash label: not built by hpckit "
                            "build, so nothing says which environment it holds", fix)]
        if label != lock.hash:
            other = _podman_lock(rt, image)
            diff = _lock_differences(lock, other.pins, other.python) if other else []
            listing = ("; differing packages:\n  " + "\n  ".join(diff)) if diff else ""
            return [Check("image", "fail", f"image {image} was built from lock {label}, the client's lock is "
                            f"{lock.hash}{listing}", fix)]
        rc, code = _run([rt, "image", "inspect", "--format", f'{{{{index .Labels "{LABEL_NS}.code"}}}}', image])
        code = code.strip() if rc == 0 else ""
        if code not in ("", "<no value>"):
            try:
                other = other_code(json.loads(code), lock)
            except ValueError:
                other = f"an unreadable {LABEL_NS}.code label"
            if other:
                return [Check("image", "fail", f"image {image} was built from {other}", fix)]
        return [Check("image", "pass", f"{image} present in {rt}, built from the client's lock {lock.hash[:19]}...")]
    if rt == "apptainer":
        path = _expand(image)
        if "://" in image or path is None:
            return [Check("image", "skip", f"{image} is pulled by apptainer on the nodes: cannot check it here", fix)]
        if not os.path.isfile(path):
            return [Check("image", "fail", f"Apptainer image {path} not found", fix +
                            f" (then on the site: apptainer build {path} docker-archive://<the saved archive>)")]
        swappable = _not_yours(path, "Apptainer image")
        if swappable:
            return [Check("image", "fail", swappable, fix)]
        if shutil.which("apptainer") is None:
            return [Check("image", "skip", f"{path} present; apptainer is not here to read its lock label")]
        rc, text = _run(["apptainer", "inspect", "--json", "--labels", path])
        label = ""
        if rc == 0:
            try:
                data = json.loads(text)
                labels = data.get("data", {}).get("attributes", {}).get("labels", {}) or data
                label = labels.get(f"{LABEL_NS}.lock-hash", "")
            except ValueError:
                label = ""
        if label != lock.hash:
            return [Check("image", "fail", f"{path} was built from lock {label or '(no label)'}, the client's lock "
                            f"is {lock.hash}", fix)]
        return [Check("image", "pass", f"{path} built from the client's lock")]
    if rt == "shifter":
        if image.startswith("localhost/"):
            return [Check("image", "fail", f"shifter pulls images from a registry, and {image} is local",
                            f"--set container.registry=<registry/you>, then {fix_command(site, 'build', lock_src, image)}")]
        if shutil.which("shifterimg") is None:
            return [Check("image", "skip", f"shifterimg is not here: cannot check {image}", fix)]
        rc, text = _run(["shifterimg", "lookup", image.removeprefix("docker:")])
        if rc != 0 or not text:
            return [Check("image", "fail", f"shifter does not have {image} (shifterimg lookup: {text or rc})", fix)]
        return [Check("image", "pass", f"shifter has {image} ({text.splitlines()[0]}); its lock is checked by "
                        "every worker (shifter shows no labels)")]
    return []


_VERIFIED: dict[tuple, dict] = {}


def tarball_manifest(path: str | Path) -> dict:
    """Read the whole tarball (a truncated gzip shows only at its end) and return its manifest, with the
    platform from its ``hpckit.lock`` when the manifest lacks it. Cached per (path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key in _VERIFIED:
        return _VERIFIED[key]
    manifest = None
    lock_text = None
    try:
        with tarfile.open(p, "r:gz") as tf:
            for member in tf:
                if member.name.removeprefix("./") in (MANIFEST, "hpckit.lock") and member.isfile():
                    data = tf.extractfile(member).read().decode()
                    if member.name.endswith(MANIFEST):
                        manifest = json.loads(data)
                    else:
                        lock_text = data
    except (tarfile.TarError, OSError, EOFError, zlib.error, gzip.BadGzipFile, ValueError) as exc:
        raise DeliveryError(f"env tarball {p} cannot be read to its end ({type(exc).__name__}: {exc}): truncated or "
                            "not a .tar.gz") from None
    if manifest is None:
        raise DeliveryError(f"env tarball {p} has no {MANIFEST}: not made by hpckit pack")
    if "platform" not in manifest and lock_text:
        for line in lock_text.splitlines():
            if line.startswith("# platform: "):
                manifest["platform"] = line.split()[2]
    _VERIFIED[key] = manifest
    return manifest


def other_code(delivered: dict, lock: Lock) -> str | None:
    """What differs between the code of the local packages an image or tarball was made from (``delivered``:
    name -> digest) and the client's now, in words; None when nothing does."""
    here = local_code(lock)
    changed = sorted(n for n in set(delivered) | set(here) if delivered.get(n) != here.get(n))
    if not changed:
        return None
    versions = ", ".join(lock.pins.get(n, "?") for n in changed)
    return (f"other code of {', '.join(changed)} (same version{'s' if len(changed) > 1 else ''} {versions}): its "
            "workers would run the old code")


def _not_yours(path: str, what: str) -> str | None:
    """Why the environment file every worker runs could be swapped by someone else (another user owns it or may
    write it or its directory, e.g. a shared area where anyone may make a directory), or None."""
    from hpckit.io.paths import untrusted_file

    problem = untrusted_file(path, os.stat(path))
    if problem is None:
        return None
    return (f"{what} {path} is {problem}: whoever can replace it chooses the code every worker runs as you; "
            "keep it where only you can write")


def check_tarball(site: Site, lock: Lock, lock_src: str) -> list[Check]:
    raw = site.env_delivery.path or ""
    path = _expand(raw)
    fix = fix_command(site, "pack", lock_src, path or raw)
    if path is None:
        return [Check("env tarball", "skip", f"{raw}: variables not set here; checked by each worker job", fix)]
    if not os.path.isfile(path):
        return [Check("env tarball", "fail", f"env tarball {path} not found", fix)]
    swappable = _not_yours(path, "env tarball")
    if swappable:
        return [Check("env tarball", "fail", swappable, fix)]
    try:
        m = tarball_manifest(path)
    except DeliveryError as exc:
        return [Check("env tarball", "fail", str(exc), fix)]
    problems = []
    here_platform = Lock(pins={}).platform
    if m.get("platform") and m["platform"] != here_platform:
        problems.append(f"it is for platform {m['platform']}, the client runs {here_platform}")
    if m.get("lock_hash") != lock.hash:
        fp = m.get("fingerprint") or {}
        diff = _lock_differences(lock, dict(fp.get("pins", {})), fp.get("python", m.get("python", "?")))
        problems.append(f"it was packed from lock {m.get('lock_hash')}, the client's lock is {lock.hash}"
                        + (("; differing packages:\n  " + "\n  ".join(diff)) if diff else ""))
    elif "code" in m:  # same versions: the code of the local packages (hpckit from a checkout, your own)
        other = other_code(m["code"], lock)
        if other:
            problems.append(f"it was packed from {other}")
    if problems:
        return [Check("env tarball", "fail", f"env tarball {path}: " + "; ".join(problems), fix)]
    size = os.path.getsize(path) / 2**20
    return [Check("env tarball", "pass", f"{path} ({size:.0f} MiB) packed from the client's lock, Python "
                    f"{m.get('python')}, {m.get('platform', '?')}")]


def check_venv(site: Site) -> list[Check]:
    py = site.python
    path = _expand(py)
    if path is None or not os.path.isabs(path):
        return [Check("worker python", "skip", f"{py}: not an absolute path here")]
    if not os.access(path, os.X_OK):
        fix = f"python -m venv {Path(path).parent.parent} && {Path(path).parent}/pip install 'hpckit[all]'"
        return [Check("worker python", "fail", f"{path} does not exist or is not executable", fix)]
    return [Check("worker python", "pass", f"workers run {path}")]


def preflight(site: Site, lock: Lock, lock_src: str) -> list[Check]:
    """Every check of a resolved site's delivery that this machine can make."""
    mode = site.env_delivery.mode
    if mode == "image":
        return check_image(site, lock, lock_src)
    if mode == "tarball":
        return check_tarball(site, lock, lock_src)
    if mode == "venv":
        return check_venv(site)
    return []


@dataclass
class Prepared:
    site: Site  # resolved
    lock: Lock
    lock_src: str
    findings: list[Check] = field(default_factory=list)


def prepare(site: Site, check: bool = True, cwd: str | Path = ".") -> Prepared:
    """The client's lock, the resolved site and, with ``check``, its preflight; raises
    :class:`DeliveryError` (message with the fix) at the first failing check."""
    lock, src = client_lock(site, cwd)
    resolved = resolve(site, lock)
    found = preflight(resolved, lock, src) if check else []
    for f in found:
        if f.result == "fail":
            raise DeliveryError(f"{f.detail}\nfix: {f.fix}" if f.fix else f.detail)
    return Prepared(resolved, lock, src, found)


def env_overrides(env_file: str | Path | None) -> list[str]:
    """``launch --env FILE``: tarball delivery of FILE (an ``hpckit pack`` tarball), as site overrides."""
    if env_file is None:
        return []
    return ["env_delivery.mode=tarball", f"env_delivery.path={Path(env_file).resolve()}"]
