"""`hpckit env lock`, `hpckit build`, `hpckit pack`: one locked environment, three deliveries."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

from hpckit.core.errors import MissingExtra

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
env_app = typer.Typer(no_args_is_help=True, help="The locked analysis environment.")


def _fail(msg: str, code: int = 1) -> None:
    from hpckit.cli.common import fail

    fail(msg, code)


@env_app.command("lock")
def env_lock(
    output: Path = typer.Option(Path("hpckit.lock"), "--output", "-o", help="Where to write the lock."),
    require: List[str] = typer.Option([], "--require", "-r", help="An extra requirement of the analysis (installed)."),
    closure: bool = typer.Option(False, "--closure", help="Pin only hpckit, --require and what they need."),
) -> None:
    """Pin the current environment (every installed distribution, Python, platform) in a pip -r file."""
    from hpckit.deploy.envlock import LockError, make_lock

    try:
        lock = make_lock(require=require, closure=closure)
        lock.write(output)
    except LockError as exc:
        _fail(str(exc))
    console.print(f"wrote {output}: {len(lock.pins)} packages, Python {lock.python}, {lock.hash}", highlight=False)


def build_cmd(
    site: Optional[str] = typer.Option(None, "--site", help="Site whose container section to use."),
    runtime: Optional[str] = typer.Option(None, "--runtime", help="apptainer | podman | podman-hpc | shifter"),
    base: Optional[str] = typer.Option(None, "--base", help="Base image (must already exist locally for podman)."),
    lock_file: Optional[Path] = typer.Option(
        None, "--lock", help="Lock file; default: ./hpckit.lock if present, else hpckit's closure + worker packages."),
    tag: Optional[str] = typer.Option(None, "--tag", help="Image tag (or .sif name for apptainer)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only render the definition and print the commands."),
    output_dir: Path = typer.Option(Path("."), "--output-dir", help="Where archives/.sif files and contexts go."),
) -> None:
    """Render the container definition from the lock and build it with the site's runtime."""
    from dataclasses import replace

    from hpckit.deploy.container import ContainerError, ContainerSpec, build, plan_build, site_container
    from hpckit.deploy.envlock import LockError, read_lock

    try:
        spec = site_container(site) if site else ContainerSpec(runtime=runtime or "podman")
        if base:
            spec = replace(spec, base=base)
        if lock_file is None and Path("hpckit.lock").is_file():
            lock_file = Path("hpckit.lock")
        if lock_file is not None:
            lock = read_lock(lock_file)
        else:  # the lock `hpckit launch` uses by default (hpckit.deploy.delivery)
            from hpckit.deploy.delivery import default_lock

            lock = default_lock()
        if tag is None and site and (runtime or spec.runtime) == "apptainer":
            # `image: built` names a .sif of this lock: the printed apptainer line makes that file
            from hpckit.deploy import delivery, load_site

            loaded = load_site(site).site
            if loaded.container.image == delivery.BUILT and delivery.built_image(loaded, lock).endswith(".sif"):
                tag = delivery.built_image(loaded, lock)
        if dry_run:
            plan = plan_build(lock, spec, runtime, tag)
            for name, text in plan.files.items():
                console.print(f"# ---- {name}", markup=False, highlight=False)
                console.print(text, markup=False, highlight=False)
            console.print("# build commands (in a context holding the definition, hpckit.lock and wheels/):")
            console.print(plan.shell(), markup=False, highlight=False)
            for note in plan.notes:
                console.print(f"# {note}", markup=False, highlight=False)
            return
        result = build(lock, spec, runtime, tag, output_dir=output_dir)
    except (ContainerError, LockError, MissingExtra) as exc:
        _fail(str(exc))
    plan = result.plan
    if not result.built:
        err.print(f"[yellow]{result.missing} is not installed here[/]; the build context is in {result.context}. "
                  "Copy it to the site and run there:", highlight=False)
        console.print(f"cd {result.context}\n{plan.shell()}", markup=False, highlight=False)
        raise typer.Exit(2)
    console.print(f"built {plan.tag} ({plan.runtime}) in {result.seconds:.1f} s from {lock_file or 'the default lock'} "
                  f"({lock.hash})",
                  highlight=False)
    if plan.artifact:
        console.print(f"wrote {output_dir / plan.artifact}", highlight=False)
    for note in plan.notes:
        console.print(note, markup=False, highlight=False)


def pack_cmd(
    lock_file: Optional[Path] = typer.Option(None, "--lock", help="Lock file; default: ./hpckit.lock if present, else hpckit's closure + worker packages."),
    output: Path = typer.Option(Path("env.tar.gz"), "--output", "-o", help="The tarball to write."),
    require: List[str] = typer.Option([], "--require", "-r", help="Extra requirement (without --lock)."),
    check: Optional[Path] = typer.Option(None, "--check", help="Check a packed tarball instead of packing."),
    module: List[str] = typer.Option([], "--module", "-m", help="Module to import in --check (default: listed)."),
    fast: bool = typer.Option(False, "--fast", help="No byte-compiled files, gzip level 1: a larger-per-byte but "
                              "faster pack, for throwaway tarballs (tests); workers compile on first import."),
) -> None:
    """Pack the locked environment as a relocatable tarball (run it with ENV/run_in_env CMD)."""
    from hpckit.deploy.envlock import LockError
    from hpckit.deploy.envpack import PackError, check as check_tarball, pack

    try:
        if check is not None:
            res = check_tarball(check, module or None)
            if not res.ok:
                _fail(f"{check} failed its check:\n{res.output}")
            console.print(f"{check}: ok, Python {res.python}, imported {', '.join(res.modules)} "
                          f"(unpack {res.unpack_seconds:.1f} s, imports {res.import_seconds:.1f} s)", highlight=False)
            return
        if lock_file is None and not require and Path("hpckit.lock").is_file():
            lock_file = Path("hpckit.lock")  # the lock `hpckit launch` uses when it is there
        res = pack(lock_file, output, require=require, **({"compile": False, "compresslevel": 1} if fast else {}))
    except (LockError, PackError, MissingExtra) as exc:
        _fail(str(exc))
    console.print(f"wrote {res.path}: {res.size / 2**20:.1f} MiB, {res.packages} packages, {res.lock_hash}, "
                  f"in {res.seconds:.1f} s", highlight=False)
