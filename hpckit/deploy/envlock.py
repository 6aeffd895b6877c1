"""One locked environment: the lock file, its fingerprint, and the worker-side check.

The lock is a plain ``pip install -r`` requirements file: one ``name==version`` line per installed
distribution, preceded by ``#`` comment lines that record the Python version, the platform and the lock's
hash. The hash covers only the pins and the Python ``major.minor`` (never timestamps or paths), so two
environments with the same packages have the same hash wherever they were locked.

A :class:`Fingerprint` (hash + pins) travels with every launch as plain JSON. A worker calls
:func:`check_environment` (or runs its task through :func:`guarded`) before it unpickles any of the
client's objects, and refuses work with an :class:`EnvironmentMismatch` that lists each differing
package as (name, client version, worker version), instead of failing later with an unpickling error.
"""

from __future__ import annotations

import functools
import hashlib
import json
import pickle
import os
import platform
import re
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from hpckit.core.child import safe_path_env
from hpckit.io.paths import atomic_write, umask_mode
from hpckit.core.errors import HpckitError

LOCK_HEADER = "# hpckit lock"
DEFAULT_LOCK = "hpckit.lock"
# The installer itself is never pinned: every venv brings its own, and pinning it would make pip
# replace itself mid-install.
NEVER_PIN = frozenset({"pip"})
MISSING = "not installed"


class LockError(HpckitError, ValueError):
    """A lock cannot be made, read or satisfied."""


class EnvironmentMismatch(HpckitError, RuntimeError):
    """The worker's environment differs from the client's; raised before any work is unpickled."""

    def __init__(self, differences: list[tuple[str, str, str]], lock_hash: str = ""):
        self.differences = differences
        self.lock_hash = lock_hash
        lines = [f"  {n}: client {c}, worker {w}" for n, c, w in differences]
        super().__init__(
            f"worker environment differs from the client's (lock {lock_hash or '?'}); refusing work. "
            f"{len(differences)} differing package(s):\n" + "\n".join(lines)
        )

    def __reduce__(self):  # keep it picklable so executors can send it back to the client
        return (EnvironmentMismatch, (self.differences, self.lock_hash))


def normalize(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def python_minor(version: str | None = None) -> str:
    v = version or platform.python_version()
    return ".".join(v.split(".")[:2])


def lock_hash(pins: Mapping[str, str], python: str) -> str:
    """sha256 over the sorted ``name==version`` pins and the Python ``major.minor``."""
    h = hashlib.sha256()
    h.update(f"python=={python_minor(python)}\n".encode())
    for name in sorted(pins):
        h.update(f"{name}=={pins[name]}\n".encode())
    return "sha256:" + h.hexdigest()


def installed() -> dict[str, metadata.Distribution]:
    """Installed distributions by normalised name (first on sys.path wins, as for imports)."""
    out: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        out.setdefault(normalize(name), dist)
    return out


def _hpckit_source() -> str | None:
    """The project directory of the hpckit being imported, when it runs from a checkout."""
    root = Path(__file__).resolve().parents[2]
    return str(root) if (root / "pyproject.toml").is_file() and (root / "hpckit").is_dir() else None


def _hpckit_version() -> str:
    import hpckit

    return hpckit.__version__


def _hpckit_requirements() -> list[str]:
    """hpckit's own requirements: from the checkout being imported, else from the installed metadata."""
    src = _hpckit_source()
    if src:
        import tomllib

        return list(tomllib.loads((Path(src) / "pyproject.toml").read_text())["project"].get("dependencies", []))
    try:
        return list(metadata.requires("hpckit") or [])
    except metadata.PackageNotFoundError:
        return []


def _closure(roots: Iterable[str], dists: Mapping[str, metadata.Distribution]) -> set[str]:
    """Names of the installed distributions reachable from ``roots`` through their requirements."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = []
    for r in roots:
        req = Requirement(r)
        todo.append((normalize(req.name), frozenset(req.extras)))
    done_extras: dict[str, set[str]] = {}
    while todo:
        name, extras = todo.pop()
        if name == "hpckit":
            reqs = _hpckit_requirements()
        elif name in dists:
            reqs = dists[name].requires or []
        else:
            continue
        new_extras = set(extras) - done_extras.get(name, set())
        if name in seen and not new_extras:
            continue
        seen.add(name)
        done_extras.setdefault(name, set()).update(extras)
        for spec in reqs:
            req = Requirement(spec)
            if req.marker is not None:
                envs = [{"extra": e} for e in (sorted(extras) or [""])]
                if not any(req.marker.evaluate(env) for env in envs):
                    continue
            todo.append((normalize(req.name), frozenset(req.extras)))
    return seen


@dataclass
class Lock:
    """Pinned versions of an environment, plus where and for which Python it was made."""

    pins: dict[str, str]
    python: str = field(default_factory=platform.python_version)
    platform: str = field(default_factory=lambda: f"{sys.platform}-{platform.machine()}")
    requires: list[str] = field(default_factory=list)
    local: dict[str, str] = field(default_factory=dict)  # name -> where it was installed from

    @property
    def hash(self) -> str:
        return lock_hash(self.pins, self.python)

    def fingerprint(self) -> "Fingerprint":
        return Fingerprint(python=python_minor(self.python), pins=dict(self.pins))

    def text(self) -> str:
        libc = "-".join(p for p in platform.libc_ver() if p) or "unknown libc"
        lines = [
            f"{LOCK_HEADER}: made by `hpckit env lock`; install with `pip install --no-deps -r` this file",
            f"# python: {self.python} ({platform.python_implementation().lower()})",
            f"# platform: {self.platform} ({libc})",
            f"# hash: {self.hash}",
        ]
        lines += [f"# require: {r}" for r in self.requires]
        lines += [f"# local: {n} from {src}" for n, src in sorted(self.local.items())]
        lines += [f"{n}=={self.pins[n]}" for n in sorted(self.pins)]
        return "\n".join(lines) + "\n"

    def write(self, path: str | Path) -> Path:
        """Write atomically: a failed write leaves no half-written lock behind."""
        path = Path(path)
        atomic_write(path, self.text().encode(), mode=umask_mode())
        return path


def make_lock(require: Iterable[str] = (), closure: bool = False) -> Lock:
    """Pin the current environment.

    ``closure=False`` pins every installed distribution (except pip); ``closure=True`` pins only hpckit,
    the ``require`` entries and what they need, as installed. Each ``require`` entry is a requirement
    string (``name[extra]>=1``) that must be satisfied by what is installed, so the lock stays exact.
    """
    from packaging.requirements import InvalidRequirement, Requirement

    dists = installed()
    require = list(require)
    for r in require:
        try:
            req = Requirement(r)
        except InvalidRequirement as exc:
            raise LockError(f"--require {r!r} is not a valid requirement: {exc}") from None
        name = normalize(req.name)
        if name not in dists:
            raise LockError(f"--require {r!r}: {req.name} is not installed; install it, then lock again")
        have = dists[name].version
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            raise LockError(f"--require {r!r}: installed {req.name} is {have}, which does not satisfy it")

    names = _closure(["hpckit", *require], dists) if closure else set(dists) | {"hpckit"}
    names -= NEVER_PIN
    pins: dict[str, str] = {}
    local: dict[str, str] = {}
    for name in names:
        if name == "hpckit":
            pins[name] = _hpckit_version()
            local[name] = _hpckit_source() or _local_source(dists.get(name)) or ""
            if not local[name]:
                del local[name]
            continue
        dist = dists.get(name)
        if dist is None:
            continue  # a requirement that is not installed (e.g. an unused optional marker)
        pins[name] = dist.version
        src = _local_source(dist)
        if src:
            local[name] = src
    return Lock(pins=pins, requires=require, local=local)


def _local_source(dist: metadata.Distribution | None) -> str | None:
    """Where a distribution was installed from, if not from an index (PEP 610 direct_url.json)."""
    if dist is None:
        return None
    raw = dist.read_text("direct_url.json")
    if not raw:
        return None
    try:
        url = json.loads(raw).get("url", "")
    except ValueError:
        return None
    return url.removeprefix("file://") or None


def _import_names(dist_name: str, dist: metadata.Distribution | None) -> list[str]:
    """The top-level modules a distribution provides (top_level.txt, RECORD), else its name as a module."""
    names: set[str] = set()
    if dist is not None:
        top = dist.read_text("top_level.txt")
        if top:
            names |= {n.strip() for n in top.splitlines() if n.strip()}
        for f in dist.files or ():
            head = f.parts[0] if f.parts else ""
            if len(f.parts) > 1 and ".dist-info" not in head and not head.startswith(("__", ".")) \
                    and head.isidentifier():
                names.add(head)
            elif len(f.parts) == 1 and f.suffix == ".py" and f.stem.isidentifier():
                names.add(f.stem)
    if not names:
        names.add(normalize(dist_name).replace("-", "_"))
    return sorted(names)


def code_digest(module: str) -> str | None:
    """sha256 of the ``.py`` files of an importable top-level module or package (relative path + bytes),
    without importing it; None when it cannot be found here."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    files: list[tuple[str, Path]] = []
    for root in spec.submodule_search_locations or ():
        base = Path(root)
        files += [(str(f.relative_to(base)), f) for f in base.rglob("*.py") if "__pycache__" not in f.parts]
    if not files and spec.origin and spec.origin.endswith(".py"):
        files = [(Path(spec.origin).name, Path(spec.origin))]
    if not files:
        return None
    h = hashlib.sha256()
    for rel, f in sorted(files):
        try:
            h.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
        except OSError:
            continue
    return "sha256:" + h.hexdigest()


def local_code(lock: "Lock") -> dict[str, str]:
    """Distribution name -> digest of its code as importable here, for the lock's packages installed from a
    local path (``lock.local``: hpckit from a checkout, a physicist's own package). Their version does not
    change when their code does, so a tarball or image built from older code would pass the version check
    and run the old code: this is what tells them apart."""
    dists = installed()
    out: dict[str, str] = {}
    for name in sorted(lock.local):
        digests = [d for d in (code_digest(m) for m in _import_names(name, dists.get(name))) if d]
        if digests:
            out[name] = digests[0] if len(digests) == 1 else "sha256:" + hashlib.sha256(
                "\n".join(digests).encode()).hexdigest()
    return out


def env_key(lock_hash: str, code: Mapping[str, str]) -> str:
    """What a packed environment is known by on a node (its unpack directory): the lock hash, and the code of
    its local packages when it has some (a repack with new code of the same versions is a new environment)."""
    if not code:
        return lock_hash
    joined = lock_hash + "".join(f"\n{n} {d}" for n, d in sorted(code.items()))
    return "sha256:" + hashlib.sha256(joined.encode()).hexdigest()


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)\s*$")


def read_lock(path: str | Path) -> Lock:
    """Read a lock written by :meth:`Lock.write` (or any file of ``name==version`` lines)."""
    path = Path(path)
    if not path.is_file():
        raise LockError(f"lock file {path} not found; make one with `hpckit env lock --output {path}`")
    pins: dict[str, str] = {}
    python = platform.python_version()
    plat = f"{sys.platform}-{platform.machine()}"
    requires: list[str] = []
    local: dict[str, str] = {}
    for lineno, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            key, _, val = line[1:].strip().partition(": ")
            if key == "python":
                python = val.split()[0]
            elif key == "platform":
                plat = val.split()[0]
            elif key == "require":
                requires.append(val)
            elif key == "local":
                n, _, src = val.partition(" from ")
                local[normalize(n)] = src
            continue
        m = _PIN.match(line)
        if not m:
            raise LockError(f"{path}:{lineno}: expected `name==version`, got {raw!r}")
        pins[normalize(m.group(1))] = m.group(2)
    if not pins:
        raise LockError(f"{path}: no pinned packages")
    return Lock(pins=pins, python=python, platform=plat, requires=requires, local=local)


@dataclass(frozen=True)
class Fingerprint:
    """What a worker must match: Python major.minor and exact versions of the pinned packages."""

    python: str
    pins: dict[str, str]

    @property
    def hash(self) -> str:
        return lock_hash(self.pins, self.python)

    def to_json(self) -> str:
        return json.dumps({"hash": self.hash, "python": self.python, "pins": self.pins}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Fingerprint":
        data = json.loads(text)
        return cls(python=data["python"], pins=dict(data["pins"]))

    def env(self) -> dict[str, str]:
        """Environment variables a launch can set on its workers."""
        return {"HPCKIT_LOCK_HASH": self.hash}


def current_fingerprint(lock: str | Path | Lock | None = None, closure: bool = True) -> Fingerprint:
    """The client's fingerprint: from a lock file (what the workers' image was built from), or else
    from the running environment (hpckit's closure by default)."""
    if isinstance(lock, Lock):
        return lock.fingerprint()
    if lock is not None:
        return read_lock(lock).fingerprint()
    return make_lock(closure=closure).fingerprint()


def differences(fp: Fingerprint, dists: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(name, client version, worker version) for every pinned package that differs here."""
    if dists is None:
        dists = {n: d.version for n, d in installed().items()}
        dists["hpckit"] = _hpckit_version()  # the hpckit being imported is the one that runs
    out: list[tuple[str, str, str]] = []
    here = python_minor()
    if python_minor(fp.python) != here:
        out.append(("python", python_minor(fp.python), here))
    for name in sorted(fp.pins):
        have = dists.get(name, MISSING)
        if have != fp.pins[name]:
            out.append((name, fp.pins[name], have))
    return out


@functools.lru_cache(maxsize=8)
def _check_cached(fp_json: str) -> str:
    fp = Fingerprint.from_json(fp_json)
    diff = differences(fp)
    if diff:
        raise EnvironmentMismatch(diff, fp.hash)
    return worker_environment(fp.hash)


def worker_environment(lock_hash: str) -> str:
    """What a worker reports in the run's metrics once its check passed: the lock hash it runs (its
    installed versions equal the lock's), its interpreter and where its environment came from."""
    import os

    return json.dumps({"lock_hash": lock_hash, "python": sys.executable,
                       "delivered": os.environ.get("HPCKIT_LOCK_HASH", ""),
                       "env_dir": os.environ.get("HPCKIT_ENV_DIR", sys.prefix)}, sort_keys=True)


def check_environment(fp: Fingerprint | str) -> str:
    """Raise :class:`EnvironmentMismatch` if this process's packages differ from ``fp``; else return
    :func:`worker_environment` (JSON) for the metrics.

    Cached per process and fingerprint, so a worker pays for it once (a passing check is cached; a
    failing one is recomputed, which is cheap and keeps the error fresh).
    """
    return _check_cached(fp if isinstance(fp, str) else fp.to_json())


def _run_guarded(fp_json: str, payload: bytes, *args: Any, **kwargs: Any) -> Any:
    check_environment(fp_json)
    fn = pickle.loads(payload)
    return fn(*args, **kwargs)


def guarded(fn: Callable[..., Any], fp: Fingerprint) -> Callable[..., Any]:
    """Wrap ``fn`` for a worker: the check runs before ``fn`` (and whatever it closes over) is unpickled.

    The returned callable pickles with plain :mod:`pickle` and needs only hpckit on the worker.
    """
    import cloudpickle

    return functools.partial(_run_guarded, fp.to_json(), cloudpickle.dumps(fn))


# --------------------------------------------------------------------------------------------------
# Wheels for a lock: used by both the packer and the container builds (no network inside a build).


def wheel_cache() -> Path:
    import os

    from hpckit.io.paths import own_dir

    root = os.environ.get("HPCKIT_CACHE") or str(Path.home() / ".cache" / "hpckit")
    # its wheels are installed into environments that run your code: refuse a cache someone else controls
    return own_dir(Path(root) / "wheels", "wheel cache ($HPCKIT_CACHE)", create=True, private=True)


def _pip_error(stderr: str) -> str:
    keep = [ln.strip() for ln in stderr.splitlines() if ln.strip().startswith("ERROR")]
    return "\n".join(keep[-6:]) or stderr.strip()[-1500:]


def _build_local_wheel(src: Path, dest: Path) -> None:
    """Build a wheel of a local project (hpckit itself, or a package installed from a directory).

    Built from a clean copy holding only what the build needs; force-included data folders that a
    checkout lacks are created empty so hatchling does not refuse.
    """
    import shutil
    import subprocess
    import tempfile
    import tomllib

    if not (src / "pyproject.toml").is_file() and not (src / "setup.py").is_file():
        raise LockError(f"cannot build a wheel from {src}: no pyproject.toml or setup.py there")
    with tempfile.TemporaryDirectory(prefix="hpckit-src-") as tmp:
        copy = Path(tmp) / src.name
        ignore = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", "build", "dist", ".venv", "*.egg-info")
        shutil.copytree(src, copy, ignore=lambda d, names: ignore(d, names) | ({"data", "tests", "bench"} & set(names) if Path(d) == src else set()))
        try:
            cfg = tomllib.loads((copy / "pyproject.toml").read_text())
            forced = cfg["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
        except (KeyError, FileNotFoundError):
            forced = {}
        for rel in forced:
            (copy / rel).mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dest), str(copy)],
            capture_output=True, text=True, env=safe_path_env(),
        )
        if proc.returncode:
            raise LockError(f"building a wheel of {src} failed:\n{_pip_error(proc.stderr)}")


def wheelhouse(lock: Lock, dest: str | Path) -> list[Path]:
    """Put one wheel per pin of ``lock`` into ``dest`` (created), for ``pip install --no-index``.

    Wheels are cached (``$HPCKIT_CACHE/wheels``, default ``~/.cache/hpckit/wheels``); the index is only
    asked when the cache lacks a pin. A pin that no index has raises :class:`LockError` naming it, and
    ``dest`` is left empty-handed (the caller owns and removes it).
    """
    import shutil
    import subprocess
    import tempfile

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    cache = wheel_cache()
    cache.mkdir(parents=True, exist_ok=True)
    local = {n: Path(src) for n, src in lock.local.items() if Path(src).is_dir()}
    index_pins = {n: v for n, v in lock.pins.items() if n not in local}
    for name, src in local.items():
        _build_local_wheel(src, dest)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as req:
        req.write("".join(f"{n}=={v}\n" for n, v in sorted(index_pins.items())))
    try:
        base = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-r", req.name, "-w", str(dest)]
        offline = subprocess.run([*base, "--no-index", "--find-links", str(cache)], capture_output=True, text=True,
                                 env=safe_path_env())
        if offline.returncode:
            online = subprocess.run([*base, "--find-links", str(cache)], capture_output=True, text=True,
                                    env=safe_path_env())
            if online.returncode:
                err = _pip_error(online.stderr)
                missing = re.findall(r"No matching distribution found for (\S+)", err)
                if missing:
                    raise LockError(
                        "the lock names package(s) that no index has: " + ", ".join(missing) + f"\n{err}"
                    )
                raise LockError(f"fetching the lock's wheels failed:\n{err}")
            for whl in dest.glob("*.whl"):  # cache what came from the index, never local builds
                if normalize(whl.name.split("-")[0]) in index_pins and not (cache / whl.name).exists():
                    shutil.copy2(whl, cache / whl.name)
    finally:
        Path(req.name).unlink(missing_ok=True)
    return sorted(dest.glob("*.whl"))


def environment_check(say: Callable[[str], None] = print, lock: Any = None) -> Any:
    """The client's environment fingerprint (of ``lock``, else of what is installed here), checked by every
    worker before it takes work: a worker whose installed versions differ refuses with the list of
    differing packages instead of failing later while unpickling; one that passes reports the lock hash it
    runs (the run's ``worker_environments`` metrics). ``HPCKIT_NO_ENV_CHECK=1`` turns it off."""
    if os.environ.get("HPCKIT_NO_ENV_CHECK") == "1":
        return None
    fp = current_fingerprint(lock)
    what = "the client's lock" if lock is not None else "hpckit and its dependencies"
    say(f"hpckit: environment fingerprint {fp.hash} ({what}) checked on every worker")
    return functools.partial(check_environment, fp.to_json())
