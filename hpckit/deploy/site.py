"""Sites as validated data.

A site is one YAML file (``sites/<name>.yaml`` shipped with hpckit, or a file in a user directory) that
describes a facility: its scheduler, account/queue, node shape, worker shape, network, container and how
the Python environment reaches the workers. This module loads it, layers it and validates it:

    built-in ``sites/<name>.yaml``
      < user file ``<dir>/<name>.yaml`` for each dir in ``$HPCKIT_SITES_PATH`` (``:``-separated, leftmost
        wins) and then ``~/.config/hpckit/sites``
      < ``--set key.path=value`` overrides (value parsed as YAML)

A user file with the same name as a built-in site is merged key by key over it (so it can set just
``account``); a user file with a new name is a complete site. Every leaf value remembers which layer it
came from (:attr:`LoadedSite.origins`), and validation errors name that layer's file, the key path and what
was expected.

Units are parsed, not passed through:

* walltime: ``"HH:MM:SS"``, ``"D-HH:MM:SS"`` or ``"HH:MM"`` (hours and minutes); minutes and seconds must
  be 0-59. Stored as seconds (:class:`Walltime`).
* memory/disk: ``"512GB"`` (decimal, 10^9), ``"4GiB"`` (binary, 2^30) or Slurm-style ``"4G"``/``"500M"``/
  ``"100K"``/``"1T"`` (binary, as Slurm reads them). A bare number is rejected (is it bytes or MB?).
  Stored as bytes (:class:`Bytes`).

Public API: :func:`load_site`, :func:`list_sites`, :func:`site_paths`, :class:`Site`, :class:`LoadedSite`,
:class:`SiteError`, :func:`parse_walltime`, :func:`parse_memory`, :func:`parse_set`.
"""

from __future__ import annotations

from hpckit.core.errors import HpckitError

import datetime as _dt
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from hpckit.deploy.backends import BACKENDS
from hpckit.deploy.schedulers import SCHEDULERS
from hpckit.io.paths import read_limited
from hpckit.core.resources import data_dir

__all__ = [
    "Bytes",
    "LoadedSite",
    "Site",
    "SiteError",
    "Walltime",
    "format_memory",
    "format_walltime",
    "list_sites",
    "load_site",
    "parse_memory",
    "parse_set",
    "parse_walltime",
    "site_paths",
]


class SiteError(HpckitError, ValueError):
    """A site could not be found, parsed or validated. The message says where and what was expected."""


# --------------------------------------------------------------------------------------------------
# units

_WALLTIME_RE = re.compile(r"^(?:(?P<d>\d+)-)?(?P<h>\d+):(?P<m>\d+)(?::(?P<s>\d+))?$")


def parse_walltime(value: Any) -> int:
    """Parse ``"HH:MM:SS"``, ``"D-HH:MM:SS"`` or ``"HH:MM"`` into seconds; minutes/seconds must be 0-59."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"expected a walltime string like '01:30:00' or '1-00:00:00', got {value!r}")
    m = _WALLTIME_RE.match(value.strip())
    if not m:
        raise ValueError(f"expected a walltime like 'HH:MM:SS', 'D-HH:MM:SS' or 'HH:MM', got {value!r}")
    d, h, mi, s = (int(m.group(k) or 0) for k in "dhms")
    if mi > 59:
        raise ValueError(f"walltime {value!r}: minutes must be 0-59, got {mi}")
    if s > 59:
        raise ValueError(f"walltime {value!r}: seconds must be 0-59, got {s}")
    if d and h > 23:
        raise ValueError(f"walltime {value!r}: hours must be 0-23 when days are given, got {h}")
    total = ((d * 24 + h) * 60 + mi) * 60 + s
    if total <= 0:
        raise ValueError(f"walltime {value!r} must be longer than zero")
    return total


def format_walltime(seconds: int) -> str:
    """Seconds -> ``HH:MM:SS`` (hours may exceed 24; Slurm, PBS and Parsl all accept that)."""
    h, rest = divmod(int(seconds), 3600)
    m, s = divmod(rest, 60)
    return f"{h:02d}:{m:02d}:{s:02d}"


_MEM_RE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<u>[KMGTkmgt](?:i?[Bb])?|[Bb])$")
_DECIMAL = {"K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_BINARY = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_memory(value: Any) -> int:
    """Parse a size into bytes: ``GB`` is 10^9, ``GiB`` is 2^30, Slurm-style bare ``G`` is 2^30."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(
            f"expected a size with a unit like '4GiB', '512GB' or Slurm-style '4G', got {value!r}"
        )
    m = _MEM_RE.match(value.strip())
    if not m:
        raise ValueError(f"expected a size with a unit like '4GiB', '512GB' or Slurm-style '4G', got {value!r}")
    n, unit = float(m.group("n")), m.group("u")
    if unit.upper() == "B":
        factor = 1
    else:
        letter = unit[0].upper()
        rest = unit[1:].lower()
        factor = _DECIMAL[letter] if rest == "b" else _BINARY[letter]  # "" (Slurm) and "ib" are binary
    nbytes = int(n * factor)
    if nbytes <= 0:
        raise ValueError(f"size {value!r} must be larger than zero")
    return nbytes


def format_memory(nbytes: int) -> str:
    """Bytes -> the shortest exact string among ``NTiB``/``NGiB``/``NMiB``/``NGB``/``NMB``/``NKiB``/``NB``."""
    for unit, factor in (("TiB", 2**40), ("GiB", 2**30), ("GB", 10**9), ("MiB", 2**20), ("MB", 10**6), ("KiB", 2**10)):
        if nbytes % factor == 0:
            return f"{nbytes // factor}{unit}"
    return f"{nbytes}B"


Walltime = Annotated[int, BeforeValidator(parse_walltime), PlainSerializer(format_walltime, return_type=str)]
Bytes = Annotated[int, BeforeValidator(parse_memory), PlainSerializer(format_memory, return_type=str)]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(v: Any) -> Any:
    # A newline in a value would end an '#SBATCH' comment or a submit-description line and start a new
    # command: refuse control characters in every string of a site.
    if isinstance(v, str) and _CONTROL.search(v):
        raise ValueError(f"control characters (newline, tab, ...) are not allowed, ; got {shorten(v)}")
    return v


Str = Annotated[str, BeforeValidator(_no_control)]

# sbatch/qsub read '#SBATCH'/'#PBS' lines themselves, without a shell: shell quotes would reach them
# literally, so a directive value is validated instead of quoted. These characters are inert in a
# directive, on a shell command line and in a Python literal.
_DIRECTIVE_CHARS = r"A-Za-z0-9_@%+=:,./\-"
_DIRECTIVE = re.compile(rf"^[{_DIRECTIVE_CHARS}]+$")
_CONSTRAINT = re.compile(rf"^[{_DIRECTIVE_CHARS}&|]+$")  # Slurm features: gpu&hbm80g, a|b
_DIRECTIVE_LINE = re.compile(rf"^[{_DIRECTIVE_CHARS}]+(?: [{_DIRECTIVE_CHARS}]+)*$")  # -l filesystems=home:eagle
_INTERFACE = re.compile(r"^[A-Za-z0-9_.:@-]+$")
_SUBMIT_KEY = re.compile(r"^\+?[A-Za-z_][A-Za-z0-9_.]*$")
MAX_SHOWN = 80


def shorten(value: Any, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` cut to ``limit`` characters, so an error message never carries a huge value."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}...<{len(text)} chars>"


def _matching(rx: re.Pattern, what: str) -> Any:
    def check(v: Any) -> Any:
        _no_control(v)
        if isinstance(v, str) and not rx.match(v):
            raise ValueError(f"{what}; got {shorten(v)}")
        return v

    return BeforeValidator(check)


_DIRECTIVE_WHAT = (
    "a scheduler directive value may hold only letters, digits and _@%+=:,./- (sbatch and qsub read it "
    "without a shell, so spaces, quotes and shell characters are refused rather than quoted)"
)
Directive = Annotated[str, _matching(_DIRECTIVE, _DIRECTIVE_WHAT)]
Constraint = Annotated[str, _matching(_CONSTRAINT, _DIRECTIVE_WHAT.replace("_@%+=:,./-", "_@%+=:,./-&|"))]
DirectiveLine = Annotated[
    str, _matching(_DIRECTIVE_LINE, _DIRECTIVE_WHAT.replace("spaces,", "more than single spaces between words,"))
]
Interface = Annotated[str, _matching(_INTERFACE, "a network interface name holds only letters, digits and _.:@-")]
SubmitKey = Annotated[str, _matching(_SUBMIT_KEY, "an HTCondor submit command is a name like request_gpus or +MyAttr")]


def _one_of(value: str, known: Any, what: str) -> str:
    if value not in known:
        raise ValueError(f"unknown {what} {value!r}; expected one of " + ", ".join(repr(k) for k in known))
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, validate_default=True)


# --------------------------------------------------------------------------------------------------
# the model


class Node(_Strict):
    """The shape of one compute node (or, for HTCondor, of the largest slot worth asking for)."""

    cores: int | None = Field(None, gt=0, description="physical cores per node; null = all local cores")
    usable_cores: int | None = Field(None, gt=0, description="cores a job may use (e.g. Frontier: 64 - 8 = 56)")
    memory: Bytes | None = Field(None, description="memory per node")
    gpus: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _usable(self) -> Node:
        if self.usable_cores is not None and self.cores is not None and self.usable_cores > self.cores:
            raise ValueError(f"usable_cores ({self.usable_cores}) exceeds cores ({self.cores})")
        return self

    @property
    def job_cores(self) -> int | None:
        return self.usable_cores or self.cores


class Worker(_Strict):
    """One worker process (a Dask worker, a Parsl worker, a vine_worker) and how many share one batch job."""

    cores: int = Field(1, gt=0)
    memory: Bytes | None = Field(None, description="memory per worker; null = share the node's (local only)")
    disk: Bytes | None = None
    per_job: int = Field(1, gt=0, description="worker processes per batch job (one job = per_job workers)")


class Adapt(_Strict):
    """Workers that follow the work: grow while chunks wait, released when idle (dask-jobqueue ``adapt``,
    Parsl's min/max blocks). Used when a launch or pool gives neither --workers nor --adapt."""

    minimum: int = Field(1, ge=1, description="workers kept up while idle")
    maximum: int = Field(gt=0, description="most workers while chunks wait")

    @model_validator(mode="after")
    def _ordered(self) -> "Adapt":
        if self.minimum > self.maximum:
            raise ValueError(f"adapt.minimum ({self.minimum}) exceeds adapt.maximum ({self.maximum})")
        return self


class Network(_Strict):
    interface: Interface | None = Field(None, description="network interface workers bind to (lo, hsn0, ...)")
    port_range: tuple[int, int] | None = Field(None, description="[low, high] ports workers may listen on")
    heartbeat_s: int | None = Field(None, ge=5, description="seconds without a heartbeat after which a worker is "
                                    "declared lost and its tasks run elsewhere (a node cut off; null: the engine's "
                                    "default, 300 s for Dask, 120 s for Parsl)")

    @field_validator("port_range")
    @classmethod
    def _ports(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None:
            lo, hi = v
            if not (1024 <= lo < hi <= 65535):
                raise ValueError(f"port_range must be [low, high] with 1024 <= low < high <= 65535, got {list(v)}")
        return v


class Container(_Strict):
    runtime: Literal["none", "apptainer", "shifter", "podman-hpc", "podman"] = "none"
    image: Str | None = Field(
        None, description="image the workers run; 'built' = the one `hpckit build --site NAME` made from the lock")
    binds: list[Str] = Field(default_factory=list, description="host paths (or host:container) to mount")
    options: list[Str] = Field(default_factory=list, description="extra arguments to the runtime")
    base: Str | None = Field(None, description="base image `hpckit build` starts from (default: python:<X.Y>-slim)")
    registry: Str | None = Field(None, description="where a 'built' image is pushed for runtimes that pull "
                                                   "(shifter, apptainer docker://), e.g. docker.io/<user>")

    @model_validator(mode="after")
    def _image(self) -> Container:
        if self.runtime != "none" and not self.image:
            raise ValueError(f"container runtime {self.runtime!r} needs an image (container.image, or 'built')")
        return self


class EnvDelivery(_Strict):
    """How the analysis' Python environment reaches the workers (resolved by hpckit.deploy.delivery).

    * ``venv``: workers share the file system and run ``path``/bin/python, or, without a path, the
      client's own interpreter by absolute path;
    * ``image``: workers run in ``container.image`` (``built``: the image of the client's lock);
    * ``tarball``: the ``hpckit pack`` tarball at ``path`` is unpacked once per node into
      ``node_scratch`` and the worker runs from it;
    * ``none``: the site's ``python`` as found on the worker's PATH.
    """

    mode: Literal["none", "image", "tarball", "venv"] = "none"
    path: Str | None = Field(None, description="tarball (or venv directory) path (may use $VARS)")
    lock: Str | None = Field(None, description="lock file of the client's environment (default: ./hpckit.lock "
                                                "if present, else hpckit's closure with its worker packages)")
    node_scratch: Str = Field("${TMPDIR:-/tmp}", description="node-local directory the tarball is unpacked into")
    base_path: Str = Field("/usr/local/bin:/usr/bin:/bin",
                           description="PATH of image/tarball worker jobs before modules (nothing of the client's)")
    lock_hash: Str | None = Field(None, description="filled in by launch: the client's lock hash")

    @model_validator(mode="after")
    def _path(self) -> EnvDelivery:
        if self.mode == "tarball" and not self.path:
            raise ValueError("env_delivery mode 'tarball' needs a path (env_delivery.path, or launch --env FILE)")
        return self


class PBSOptions(_Strict):
    flavor: Literal["pro", "torque"] = Field("pro", description="pro: -l select=...; torque: -l nodes=N:ppn=M")
    select_extra: Directive | None = Field(None, description="appended to the select chunk, e.g. system=polaris")
    place: Directive | None = Field(None, description="-l place=..., e.g. scatter")


class HTCondorOptions(_Strict):
    universe: Literal["vanilla", "container"] = "vanilla"
    x509_proxy: bool = Field(False, description="use_x509userproxy = true (the proxy itself is never written)")
    # false: HTCondor transfers the job's files (should_transfer_files), though some paths may be shared (LPC's
    # scratch); implied by the site's own shared_filesystem: false
    shared_filesystem: bool = True
    singularity_image_attr: bool = Field(False, description="set +SingularityImage to container.image")
    requirements: Str | None = None
    submit: dict[SubmitKey, Str] = Field(default_factory=dict, description="extra submit commands")


class Site(_Strict):
    """A validated site. Field meanings are in the YAML files under ``sites/``."""

    name: Str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: Str = ""
    scheduler: Str = Field(description="a key of hpckit.deploy.schedulers.SCHEDULERS")
    source: list[Str] = Field(min_length=1, description="where the facts come from")
    gathered_on: _dt.date = Field(description="when the facts were taken from `source` (not a live check)")
    checked: Str = Field(description="what was checked and how: run here by which tests, or read from the docs only")
    unverified: list[Str] = Field(default_factory=list, description="key paths whose values are not verified")
    default_backend: Str = Field("dask", description="a key of hpckit.deploy.backends.BACKENDS")
    shared_filesystem: bool = Field(True, description="compute nodes see the login node's files (home, "
                                                      "project, scratch); false: CHTC/OSG-like, only node-local")

    account: Directive | None = None
    account_required: bool = Field(False, description="jobs are refused without an account (-A)")
    partition: Directive | None = Field(None, description="Slurm -p")
    qos: Directive | None = Field(None, description="Slurm -q")
    queue: Directive | None = Field(None, description="PBS -q")
    constraint: Constraint | None = Field(None, description="Slurm -C")
    walltime: Walltime | None = None
    node: Node = Field(default_factory=Node)
    worker: Worker = Field(default_factory=Worker)
    max_workers: int | None = Field(None, gt=0, description="most worker processes at once (null: one per core, local)")
    adapt: Adapt | None = Field(None, description="scale between adapt.minimum and adapt.maximum workers "
                                                   "with the load (null: a fixed number of workers)")
    network: Network = Field(default_factory=Network)
    scratch: Str | None = Field(None, description="worker scratch directory (may use $VARS)")
    modules: list[Str] = Field(default_factory=list, description="`module load` each, before the worker")
    worker_init: list[Str] = Field(default_factory=list, description="shell lines run before the worker (raw shell)")
    container: Container = Field(default_factory=Container)
    env_delivery: EnvDelivery = Field(default_factory=EnvDelivery)
    python: Str = Field("python3", description="python executable on the worker (inside the container)")
    extra_directives: list[DirectiveLine] = Field(default_factory=list, description="extra scheduler directives, verbatim")
    pbs: PBSOptions = Field(default_factory=PBSOptions)
    htcondor: HTCondorOptions = Field(default_factory=HTCondorOptions)

    @model_validator(mode="before")
    @classmethod
    def _older_provenance(cls, data: Any) -> Any:
        """Site files written before ``checked`` said ``verified_on: DATE`` for facts never re-read: still
        accepted, the date taken as when the facts were gathered, with ``checked`` saying so."""
        if isinstance(data, dict) and "verified_on" in data:
            data = dict(data)
            data.setdefault("gathered_on", data.pop("verified_on"))
            data.pop("verified_on", None)
            data.setdefault("checked", "not recorded (an older site file: its verified_on date is taken as "
                                       "when the facts were gathered, not as a live check)")
        return data

    @field_validator("default_backend")
    @classmethod
    def _known_backend(cls, v: str) -> str:
        return _one_of(v, BACKENDS, "backend")

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, v: str) -> str:
        return _one_of(v, SCHEDULERS, "scheduler")

    @model_validator(mode="after")
    def _consistent(self) -> Site:
        s = self.scheduler
        mine = SCHEDULERS[s]
        for other in SCHEDULERS.values():
            for k in other.own_settings if other is not mine else ():
                if getattr(self, k) is not None:
                    raise ValueError(f"{k!r} is a {other.label} setting but scheduler is {s!r}"
                                     + mine.setting_hints.get(k, ""))
        mine.validate(self)
        if self.adapt is not None and self.max_workers is not None and self.adapt.maximum > self.max_workers:
            raise ValueError(f"adapt.maximum ({self.adapt.maximum}) exceeds max_workers ({self.max_workers})")
        if self.env_delivery.mode == "image" and self.container.runtime == "none":
            raise ValueError("env_delivery mode 'image' needs a container runtime")
        if self.staged and not re.match(r"^/[A-Za-z0-9_./-]*$", self.env_delivery.node_scratch):
            raise ValueError(f"env_delivery.node_scratch {self.env_delivery.node_scratch!r} must be a plain absolute "
                             "path on a site without a shared file system (files are copied there from the login "
                             "node, which cannot expand the node's variables); fix: --set env_delivery.node_scratch=/tmp")
        jc = self.node.job_cores
        if jc is not None and self.job_cores > jc:
            raise ValueError(
                f"worker.cores x worker.per_job = {self.job_cores} exceeds the node's usable cores ({jc})"
            )
        if self.node.memory is not None and self.job_memory is not None and self.job_memory > self.node.memory:
            raise ValueError(
                f"worker.memory x worker.per_job = {format_memory(self.job_memory)} exceeds node.memory "
                f"({format_memory(self.node.memory)})"
            )
        return self

    # derived shapes -------------------------------------------------------------------------------
    @property
    def job_cores(self) -> int:
        """Cores one batch job asks for: worker.cores x worker.per_job."""
        return self.worker.cores * self.worker.per_job

    @property
    def job_memory(self) -> int | None:
        """Bytes one batch job asks for: worker.memory x worker.per_job."""
        return None if self.worker.memory is None else self.worker.memory * self.worker.per_job

    def jobs_for(self, workers: int) -> int:
        """The one conversion from workers to batch jobs: whole jobs of ``worker.per_job`` workers."""
        return max(1, math.ceil(workers / self.worker.per_job))

    @property
    def max_jobs(self) -> int | None:
        """Batch jobs needed for max_workers workers."""
        return None if self.max_workers is None else self.jobs_for(self.max_workers)

    @property
    def batch(self) -> bool:
        """True when workers run as batch jobs (any scheduler but ``local``)."""
        return SCHEDULERS[self.scheduler].batch

    @property
    def staged(self) -> bool:
        """True when the launch copies what jobs need onto their nodes (no shared file system, and a scheduler
        that can copy into a running job: :mod:`hpckit.deploy.staging`)."""
        sched = SCHEDULERS[self.scheduler]
        return not self.shared_filesystem and sched.batch and sched.stage_job_var is not None

    @property
    def loopback(self) -> bool:
        """True when workers bind to loopback (interface lo): use address 127.0.0.1 everywhere."""
        return self.network.interface == "lo"

    @property
    def wrap_in_container(self) -> bool:
        """True when the worker command itself must be wrapped in the container runtime.

        False when there is no container, or when HTCondor starts the container for us
        (``+SingularityImage`` or the container universe).
        """
        return self.container.runtime != "none" and not SCHEDULERS[self.scheduler].starts_container(self)

    def lifetime(self) -> tuple[int, int] | None:
        """(lifetime, stagger) in seconds for workers, so they retire before the walltime kills them.

        The margin is 10% of the walltime, at least 60 s and at most 10 min; the stagger (random spread
        so workers do not all retire at once) is a quarter of the margin, and lifetime + stagger stays
        below the walltime.
        """
        if self.walltime is None:
            return None
        margin = int(min(600, max(60, self.walltime * 0.1)))
        if margin >= self.walltime:
            margin = self.walltime // 2
        stagger = margin // 4
        return self.walltime - margin, stagger


# --------------------------------------------------------------------------------------------------
# loading


MAX_SITE_BYTES = 1 << 20  # a site is a page of YAML; 1 MiB is far above any real one


class _Loader(yaml.SafeLoader):
    """SafeLoader without YAML 1.1 base-60 numbers (``12:00:00`` stays a string, not 43200) and without
    anchors and aliases: a site never needs them, and an alias bomb (a few lines that expand to
    billions of nodes) would otherwise eat the memory of whoever formats the value."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            kind = "aliases (*name)" if isinstance(event, yaml.AliasEvent) else "anchors (&name)"
            raise yaml.composer.ComposerError(
                None, None, f"YAML {kind} are not allowed in site files; write the value out", event.start_mark
            )
        return super().compose_node(parent, index)


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?"
               r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def _yaml_load(text: str, where: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except RecursionError:
        raise SiteError(f"{where}: nested too deeply to be a site file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        if mark is None:
            raise SiteError(f"{where}: YAML syntax error: {exc}") from None
        lines = text.splitlines()
        line = lines[mark.line] if mark.line < len(lines) else ""
        if len(line) > 200:  # a one-line 100 MB file must not become a 100 MB message
            line, mark.column = line[:200] + " ...", min(mark.column, 200)
        problem = getattr(exc, "problem", None) or str(exc)
        ctx = getattr(exc, "context", None)
        msg = f"{ctx}, {problem}" if ctx else problem
        raise SiteError(
            f"{where}:{mark.line + 1}:{mark.column + 1}: YAML syntax error: {msg}\n"
            f"    {mark.line + 1} | {line}\n"
            f"      {' ' * len(str(mark.line + 1))} {' ' * mark.column}^"
        ) from None


def site_paths() -> list[Path]:
    """User site directories, highest priority first: ``$HPCKIT_SITES_PATH`` entries, then ~/.config/hpckit/sites."""
    paths = [Path(p).expanduser() for p in os.environ.get("HPCKIT_SITES_PATH", "").split(os.pathsep) if p]
    paths.append(Path("~/.config/hpckit/sites").expanduser())
    return paths


def _site_files(name: str) -> list[tuple[str, Path]]:
    """(layer label, file) for ``name``, lowest priority first: built-in, then user dirs (last = highest)."""
    found: list[tuple[str, Path]] = []
    builtin = data_dir("sites") / f"{name}.yaml"
    if builtin.is_file():
        found.append(("built-in", builtin))
    for d in reversed(site_paths()):
        f = d / f"{name}.yaml"
        if f.is_file():
            found.append(("user", f))
    return found


def list_sites() -> list[str]:
    """Names of every site, built-in and user, sorted."""
    names = {p.stem for p in data_dir("sites").glob("*.yaml")}
    for d in site_paths():
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.yaml"))
    return sorted(names)


def parse_set(item: str) -> tuple[list[str], Any]:
    """``"worker.cores=4"`` -> (["worker", "cores"], 4); the value is parsed as YAML (``[a, b]`` is a list)."""
    if "=" not in item:
        raise SiteError(f"--set {item!r}: expected key.path=value")
    key, _, raw = item.partition("=")
    path = [p for p in key.strip().split(".")]
    if not path or any(not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p) for p in path):
        raise SiteError(f"--set {item!r}: {key!r} is not a key path like 'account' or 'worker.cores'")
    try:
        value = yaml.load(raw, Loader=_Loader) if raw.strip() else None  # noqa: S506
    except yaml.YAMLError:
        value = raw  # not YAML: keep the text as it is
    if isinstance(value, (dict, list)) and not raw.strip().startswith(("[", "{")):
        value = raw
    return path, value


def _merge(base: dict, over: dict, origins: dict[str, str], layer: str, prefix: str = "") -> dict:
    out = dict(base)
    for k, v in over.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and isinstance(out.get(k), dict) and v:
            out[k] = _merge(out[k], v, origins, layer, key + ".")
        else:
            out[k] = v
            for o in [o for o in origins if o == key or o.startswith(key + ".")]:
                del origins[o]
            _record(v, key, origins, layer)
    return out


def _record(v: Any, key: str, origins: dict[str, str], layer: str) -> None:
    if isinstance(v, dict) and v:
        for k, sub in v.items():
            _record(sub, f"{key}.{k}", origins, layer)
    else:
        origins[key] = layer


@dataclass
class LoadedSite:
    """A validated :class:`Site` and, for each leaf key path, the layer its value came from."""

    site: Site
    origins: dict[str, str] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def origin(self, key: str) -> str:
        """Layer of ``key`` (e.g. ``"worker.cores"``): a file path, ``--set``, or ``default``."""
        while key:
            if key in self.origins:
                return self.origins[key]
            key = key.rpartition(".")[0]
        return "default"

    def flat(self) -> list[tuple[str, Any, str]]:
        """(key path, value as in YAML, origin) for every leaf of the merged, validated site."""
        rows: list[tuple[str, Any, str]] = []

        def walk(d: Any, prefix: str) -> None:
            if isinstance(d, dict) and d:
                for k, v in d.items():
                    walk(v, f"{prefix}{k}.")
            else:
                key = prefix[:-1]
                rows.append((key, d, self.origin(key)))

        walk(self.site.model_dump(mode="json"), "")
        return rows


def _format_errors(exc: ValidationError, origins: dict[str, str], fallback: str) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc)
        # the layer that set this key (or its closest parent); model-level checks name the site file
        probe, where = key, None
        while probe:
            if probe in origins:
                where = origins[probe]
                break
            probe = probe.rpartition(".")[0]
        where = where or fallback
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not a site field; check the spelling)"
        elif err["type"] == "literal_error":
            msg = f"expected {err['ctx']['expected']}"
        got = err.get("input")
        got_s = "" if err["type"] in ("missing",) or isinstance(got, dict) or "; got " in msg else f" (got {shorten(got)})"
        lines.append(f"{where}: {key or '<site>'}: {msg}{got_s}")
    return "invalid site:\n  " + "\n  ".join(lines)


def load_site(name_or_path: str | os.PathLike, overrides: list[str] | dict[str, Any] | None = None) -> LoadedSite:
    """Load, layer and validate a site.

    ``name_or_path`` is a site name (looked up built-in < user dirs) or a path to a YAML file.
    ``overrides`` are ``"key.path=value"`` strings (as from ``--set``) or a ``{"key.path": value}`` dict;
    they win over every file. Raises :class:`SiteError` naming the file, the key path and what was expected,
    or, for an unknown name, listing the known sites.
    """
    origins: dict[str, str] = {}
    data: dict = {}
    p = Path(name_or_path)
    if str(name_or_path).endswith((".yaml", ".yml")) or p.is_file() or (os.sep in str(name_or_path) and p.exists()):
        if not p.exists():
            raise SiteError(f"site file {p} does not exist")
        files = [("file", p)]
    else:
        name = str(name_or_path)
        files = _site_files(name)
        if not files:
            raise SiteError(
                f"unknown site {name!r}; known sites: {', '.join(list_sites())} "
                f"(user sites go in $HPCKIT_SITES_PATH or ~/.config/hpckit/sites as <name>.yaml)"
            )
    for _layer, f in files:
        doc = _yaml_load(read_limited(f, MAX_SITE_BYTES, SiteError, "site file").decode("utf-8", "replace"), str(f))
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise SiteError(f"{f}: expected a mapping of site keys at the top level, got {type(doc).__name__}")
        data = _merge(data, doc, origins, str(f))
    if isinstance(overrides, dict):
        items = [(k.split("."), v) for k, v in overrides.items()]
    else:
        items = [parse_set(o) for o in overrides or []]
    for path, value in items:
        nested: Any = value
        for k in reversed(path):
            nested = {k: nested}
        data = _merge(data, nested, origins, "--set")
    data.setdefault("name", Path(files[-1][1]).stem)
    try:
        site = Site.model_validate(data)
    except ValidationError as exc:
        raise SiteError(_format_errors(exc, origins, str(files[-1][1]))) from None
    return LoadedSite(site=site, origins=origins, files=[f for _, f in files])
