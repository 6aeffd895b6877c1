"""Container images of one locked environment: Apptainer definitions and OCI Containerfiles.

Pure parts (no side effects): :class:`ContainerSpec` (the few site facts a build needs),
:func:`render_definition`, :func:`plan_build` (definition text + exact command lines) and
:func:`run_command` (how a worker starts a command in the image). :func:`build` then prepares a build
context (definition, ``hpckit.lock``, a wheelhouse so the build needs no network) and runs the plan
where the runtime is installed, or says which runtime is missing and prints the commands to run on
the site.
"""

from __future__ import annotations

from hpckit.core.errors import HpckitError

import json
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import jinja2

from hpckit.deploy.envlock import Lock, local_code, python_minor, read_lock, wheelhouse

Runtime = Literal["apptainer", "shifter", "podman-hpc", "podman", "none"]
RUNTIMES: tuple[str, ...] = ("apptainer", "shifter", "podman-hpc", "podman", "none")
PREFIX = "/opt/hpckit"
WHEELS = f"{PREFIX}/wheels"  # inside the image: Apptainer binds the host's /tmp (another user's files) during %post
LOCAL_BASE = "localhost/hpckit-debian:bookworm"  # made by scripts/debian-base.sh
LABEL_NS = "org.hpckit"


class ContainerError(HpckitError, RuntimeError):
    """A container cannot be built as asked (bad site, missing runtime, missing base image...)."""


@dataclass(frozen=True)
class ContainerSpec:
    """The site facts a container build needs. A site file's ``container:`` section maps onto it."""

    runtime: Runtime = "podman"
    image: str | None = None  # name of the analysis image on the site (tag, or .sif path)
    base: str | None = None  # base image; default: the official python image for the lock's Python
    binds: tuple[str, ...] = ()  # site paths bound into the container: /cvmfs, scratch ...
    build_command: str | None = None  # overrides the runtime's default build command (a template)

    def __post_init__(self):
        if self.runtime not in RUNTIMES:
            raise ContainerError(f"unknown container runtime {self.runtime!r}; expected one of {', '.join(RUNTIMES)}")
        object.__setattr__(self, "binds", tuple(self.binds))

    @classmethod
    def from_mapping(cls, data: dict, where: str = "container") -> "ContainerSpec":
        known = {"runtime", "image", "base", "binds", "build_command"}
        extra = set(data) - known
        if extra:
            raise ContainerError(f"{where}: unknown field(s) {', '.join(sorted(extra))}; known: {', '.join(sorted(known))}")
        binds = data.get("binds") or ()
        if isinstance(binds, str) or not all(isinstance(b, str) for b in binds):
            raise ContainerError(f"{where}.binds: expected a list of paths, got {binds!r}")
        return cls(**{k: v for k, v in data.items() if v is not None})


def site_container(name: str) -> ContainerSpec:
    """The container facts of site ``name`` (built-in or user site, validated by the Site model).

    The one place that knows the site model, so builds stay independent of the rest of it.
    """
    from hpckit.deploy.site import SiteError, load_site

    try:
        loaded = load_site(name)
    except SiteError as exc:
        raise ContainerError(str(exc)) from None
    c = loaded.site.container
    if c.runtime == "none":
        where = ", ".join(str(f) for f in loaded.files) or name
        raise ContainerError(f"site {name} has no container section ({where}); "
                             f"give --runtime instead of --site, or add a container: section to the site")
    return ContainerSpec(runtime=c.runtime, image=c.image, binds=tuple(c.binds), base=c.base)


# -- rendering (pure) -----------------------------------------------------------------------------

def _env() -> jinja2.Environment:
    # container definitions keep their own line layout (no block trimming): %sections are line-based
    from hpckit.deploy.render import make_environment

    return make_environment("containers", trim=False)


def default_base(lock: Lock) -> str:
    return f"docker.io/library/python:{python_minor(lock.python)}-slim-bookworm"


def mountpoints(binds: tuple[str, ...]) -> list[str]:
    """Container-side paths of the binds (``src:dst[:opts]`` -> ``dst``); ones with variables skipped."""
    out = []
    for b in binds:
        parts = b.split(":")
        dst = parts[1] if len(parts) > 1 and parts[1] else parts[0]
        if dst.startswith("/") and "$" not in dst and dst not in out:
            out.append(dst)
    return out


def labels(lock: Lock) -> dict[str, str]:
    """The image's labels; ``code``: the code digests of the lock's local packages (as the wheels about to be
    built from them), which a launch compares with the client's (same versions, other code)."""
    import hpckit

    out = {
        f"{LABEL_NS}.lock-hash": lock.hash,
        f"{LABEL_NS}.python": python_minor(lock.python),
        f"{LABEL_NS}.hpckit-version": lock.pins.get("hpckit", hpckit.__version__),
        f"{LABEL_NS}.packages": str(len(lock.pins)),
    }
    code = local_code(lock)
    if code:
        out[f"{LABEL_NS}.code"] = json.dumps(code, sort_keys=True, separators=(",", ":"))
    return out


def environment(lock: Lock) -> dict[str, str]:
    return {
        "PYTHONNOUSERSITE": "1",
        "HPCKIT_LOCK_HASH": lock.hash,
        "PATH": f"{PREFIX}/env/bin:$PATH",
    }


DEFINITION_FILES = {"apptainer": "hpckit.def", "oci": "Containerfile"}


def render_definition(lock: Lock, spec: ContainerSpec, kind: Literal["apptainer", "oci"], build_hint: str = "") -> str:
    """The Apptainer definition (``kind="apptainer"``) or OCI Containerfile (``"oci"``) for ``lock``."""
    template = {"apptainer": "apptainer.def.j2", "oci": "Containerfile.j2"}[kind]
    return _env().get_template(template).render(
        base=spec.base or default_base(lock),
        lock_hash=lock.hash,
        python_minor=python_minor(lock.python),
        prefix=PREFIX,
        wheels=WHEELS,
        labels=labels(lock),
        environment=environment(lock),
        mountpoints=mountpoints(spec.binds),
        build_hint=build_hint or "(see hpckit build --dry-run)",
    )


@dataclass
class BuildPlan:
    runtime: str
    kind: Literal["apptainer", "oci"]
    definition: str
    definition_name: str
    tag: str
    commands: list[list[str]]  # run in the build context, in order
    notes: list[str] = field(default_factory=list)
    artifact: str | None = None  # a file the build writes (a .sif or a docker-archive), if any
    extra_files: dict[str, str] = field(default_factory=dict)  # more definitions written to the context

    @property
    def files(self) -> dict[str, str]:
        return {self.definition_name: self.definition, **self.extra_files}

    def shell(self) -> str:
        return "\n".join(shlex.join(c) for c in self.commands)


def default_tag(lock: Lock) -> str:
    return f"localhost/hpckit-env:{lock.hash.split(':')[-1][:12]}"


def plan_build(
    lock: Lock, spec: ContainerSpec, runtime: str | None = None, tag: str | None = None,
    have: frozenset[str] | None = None,
) -> BuildPlan:
    """What to render and run for ``runtime`` (default: the spec's). ``have`` is the set of runtimes
    installed here (default: looked up on PATH); it only matters for apptainer without apptainer."""
    runtime = runtime or spec.runtime
    if runtime not in RUNTIMES:
        raise ContainerError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
    if runtime == "none":
        raise ContainerError("this site runs without containers; ship the environment with `hpckit pack` instead")
    if have is None:
        have = frozenset(r for r in ("apptainer", "podman", "podman-hpc") if shutil.which(r))
    # The site's `image` names what its workers run today; the built image is named by --tag or the lock.
    tag = tag or default_tag(lock)
    oci_build = ["podman", "build", "--pull=never", "--network=none", "-f", "Containerfile", "-t", tag, "."]
    if runtime == "apptainer":
        sif = tag if tag.endswith(".sif") else tag.rsplit("/", 1)[-1].replace(":", "_") + ".sif"
        if "apptainer" in have or "podman" not in have:
            cmd = ["apptainer", "build", "--fakeroot", sif, "hpckit.def"]
            hint = shlex.join(cmd)
            plan = BuildPlan(runtime, "apptainer", render_definition(lock, spec, "apptainer", hint), "hpckit.def",
                             sif, [cmd], artifact=sif)
            return _custom(plan, spec)
        # No apptainer here (or no build rights on the site): build the same environment as an OCI
        # image with podman, save it as an archive, and let the site convert it.
        oci_tag = tag if not tag.endswith(".sif") else default_tag(lock)
        archive = sif.rsplit("/", 1)[-1].removesuffix(".sif") + ".tar"  # written here, next to the context
        cmds = [[*oci_build[:-2], oci_tag, "."], ["podman", "save", "--format", "docker-archive", "-o", archive, oci_tag]]
        site_cmd = f"apptainer build {sif} docker-archive://{archive}"
        return BuildPlan(
            runtime, "oci", render_definition(lock, spec, "oci", shlex.join(cmds[0])), "Containerfile", oci_tag, cmds,
            notes=[f"apptainer is not installed here: the image is built with podman; then on the site: {site_cmd}",
                   "(or, where apptainer can build: apptainer build --fakeroot " + sif + " hpckit.def)"],
            artifact=archive,
            extra_files={"hpckit.def": render_definition(lock, spec, "apptainer", f"apptainer build --fakeroot {sif} hpckit.def")},
        )
    if runtime == "podman-hpc":
        cmds = [["podman-hpc", "build", "--pull=never", "-f", "Containerfile", "-t", tag, "."], ["podman-hpc", "migrate", tag]]
        plan = BuildPlan(runtime, "oci", render_definition(lock, spec, "oci", shlex.join(cmds[0])), "Containerfile", tag, cmds)
        return _custom(plan, spec)
    if runtime == "shifter":
        plan = BuildPlan(runtime, "oci", render_definition(lock, spec, "oci", shlex.join(oci_build)), "Containerfile",
                         tag, [oci_build],
                         notes=[f"Shifter pulls from registries only: podman push {tag} <registry>/{tag.rsplit('/', 1)[-1]}, "
                                f"then on the site: shifterimg pull <registry>/{tag.rsplit('/', 1)[-1]}"])
        return _custom(plan, spec)
    plan = BuildPlan(runtime, "oci", render_definition(lock, spec, "oci", shlex.join(oci_build)), "Containerfile", tag, [oci_build])
    return _custom(plan, spec)


def _custom(plan: BuildPlan, spec: ContainerSpec) -> BuildPlan:
    """A site's own build command (``build_command: "podman-hpc build -t {tag} -f {definition} ."``)."""
    if not spec.build_command:
        return plan
    cmd = shlex.split(spec.build_command.format(tag=plan.tag, definition=plan.definition_name, image=plan.tag))
    return replace(plan, commands=[cmd, *plan.commands[1:]])


def run_command(spec: ContainerSpec, image: str, argv: list[str]) -> list[str]:
    """How a worker runs ``argv`` in ``image`` with the site's binds."""
    binds = list(spec.binds)
    if spec.runtime == "apptainer":
        return ["apptainer", "exec", *(["--bind", ",".join(binds)] if binds else []), image, *argv]
    if spec.runtime == "shifter":
        return ["shifter", f"--image={image}", *[f"--volume={b}" for b in binds], *argv]
    if spec.runtime in ("podman", "podman-hpc"):
        vols = [a for b in binds for a in ("-v", b if ":" in b else f"{b}:{b}")]
        return [spec.runtime, "run", "--rm", "--pull=never", *vols, image, *argv]
    return list(argv)


# -- building (side effects) ----------------------------------------------------------------------

@dataclass
class BuildResult:
    plan: BuildPlan
    built: bool  # False: the runtime is missing here; plan.shell() is what to run on the site
    missing: str | None = None
    seconds: float = 0.0
    context: Path | None = None  # kept only when not built (to copy to the site)


def _podman_image_exists(image: str) -> bool:
    return subprocess.run(["podman", "image", "exists", image], capture_output=True).returncode == 0


def prepare_context(plan: BuildPlan, lock: Lock, directory: Path) -> Path:
    """Write the definition, the lock and the wheelhouse into ``directory`` (a build context)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in plan.files.items():
        (directory / name).write_text(text)
    (directory / "hpckit.lock").write_text(lock.text())
    wheels = wheelhouse(lock, directory / "wheels")
    (directory / "wheels.sha256").write_text(wheels_digest(wheels))
    return directory


def wheels_digest(wheels: list[Path]) -> str:
    """``sha256  name`` per wheel: COPY'd before the install step, so a changed wheel (same version, new
    code) misses podman's layer cache instead of reusing the install of the old one."""
    import hashlib

    return "".join(f"{hashlib.sha256(w.read_bytes()).hexdigest()}  {w.name}\n" for w in sorted(wheels))


def build(
    lock: Lock | str | Path, spec: ContainerSpec, runtime: str | None = None, tag: str | None = None,
    output_dir: str | Path = ".", context: str | Path | None = None,
) -> BuildResult:
    """Build the image for ``lock`` where ``runtime`` is installed.

    When it is not, the build context is written to ``context`` (or ``output_dir/hpckit-build``) and the
    result says which runtime is missing; ``plan.shell()`` is what to run there on the site. Failures
    leave nothing half-written: the temporary context is removed, no image is tagged, an archive is
    only moved into ``output_dir`` once complete.
    """
    import time

    if not isinstance(lock, Lock):
        lock = read_lock(lock)
    plan = plan_build(lock, spec, runtime, tag)
    tool = plan.commands[0][0]
    output_dir = Path(output_dir)
    if not shutil.which(tool):
        where = Path(context) if context else output_dir / "hpckit-build"
        if where.exists() and any(where.iterdir()):
            raise ContainerError(f"{where} exists and is not empty; remove it or pass another --context")
        try:
            prepare_context(plan, lock, where)
        except Exception:
            shutil.rmtree(where, ignore_errors=True)
            raise
        return BuildResult(plan, built=False, missing=tool, context=where)
    if tool == "podman":
        base = spec.base or default_base(lock)
        if not _podman_image_exists(base):
            raise ContainerError(
                f"base image {base} does not exist locally, and builds never pull (--pull=never): "
                f"make it with scripts/debian-base.sh ({LOCAL_BASE}) or `podman pull {base}` where a registry is reachable"
            )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hpckit-build-") as tmp:
        ctx = prepare_context(plan, lock, Path(tmp))
        for i, cmd in enumerate(plan.commands):  # artifacts land in the context, moved out when complete
            proc = subprocess.run(cmd, cwd=ctx, capture_output=True, text=True)
            if proc.returncode:
                tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
                if i > 0 and plan.kind == "oci" and tool == "podman":
                    subprocess.run(["podman", "rmi", "-f", plan.tag], capture_output=True)
                raise ContainerError(f"`{shlex.join(cmd)}` failed:\n{tail}")
        if plan.artifact and (ctx / plan.artifact).exists():
            output_dir.mkdir(parents=True, exist_ok=True)
            shutil.move(str(ctx / plan.artifact), output_dir / plan.artifact)
    return BuildResult(plan, built=True, seconds=time.perf_counter() - t0)


def image_label(image: str, key: str = f"{LABEL_NS}.lock-hash") -> str | None:
    """A label of a local podman image (e.g. the lock hash it was built from)."""
    proc = subprocess.run(["podman", "image", "inspect", "--format", f"{{{{index .Labels {key!r}}}}}".replace("'", '"'), image],
                          capture_output=True, text=True)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def which_runtimes() -> list[str]:
    return [r for r in ("apptainer", "podman", "podman-hpc", "shifter") if shutil.which(r)]


__all__ = [
    "ContainerSpec", "ContainerError", "BuildPlan", "BuildResult", "site_container", "render_definition",
    "plan_build", "run_command", "build", "prepare_context", "default_base", "default_tag", "image_label",
    "LOCAL_BASE", "RUNTIMES", "which_runtimes",
]
