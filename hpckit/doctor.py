"""`hpckit doctor --site NAME`: checks before anyone burns queue time. Each check passes, fails (with the
fix) or is skipped (with why: the scheduler cannot tell, the tool is not here, the site does not use it).

Public API: :func:`run_checks` (site name, overrides, backend) -> list of :class:`Check`.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Callable

from hpckit.deploy import load_site
from hpckit.deploy.checks import Check, command_output as _cmd
from hpckit.deploy.network import describe, interface_addresses, port_free
from hpckit.deploy.sharing import needs_shared_filesystem
from hpckit.deploy.schedulers import scheduler_for
from hpckit.deploy.site import Site
from hpckit.engines import Engine, get
from hpckit.core.errors import LaunchError

__all__ = ["Check", "run_checks"]


SCHEDULER_HINT = "run on {site}'s login/submit node (launch would fall back to a local run here)"


def check_scheduler(site: Site) -> list[Check]:
    sched = scheduler_for(site)
    cmds = sched.doctor_commands
    if not sched.batch:
        return [Check("scheduler", "pass", "local site: no batch scheduler needed")]
    missing = [c for c in cmds if shutil.which(c) is None]
    if missing:
        return [Check("scheduler commands", "fail", f"{', '.join(missing)} not on PATH",
                      SCHEDULER_HINT.format(site=site.name))]
    return [Check("scheduler commands", "pass", ", ".join(cmds) + " found")]


def check_account(site: Site) -> list[Check]:
    """A site whose scheduler refuses jobs without an account (``account_required``) needs one set."""
    if not site.account_required:
        return []
    if site.account:
        return [Check("account", "pass", f"account {site.account!r} set")]
    return [Check("account", "fail", f"site {site.name} needs an account and none is set",
                  f"--set account=<your project> (or account: in ~/.config/hpckit/sites/{site.name}.yaml)")]


def check_interface(site: Site) -> list[Check]:
    iface = site.network.interface
    if not iface:
        return [Check("network interface", "skip", "the site names no interface (workers use any address)")]
    have = interface_addresses()
    if have is None:
        return [Check("network interface", "skip", "cannot list this host's interfaces: psutil is not installed",
                      "pip install psutil")]
    if iface not in have:
        return [Check("network interface", "fail", f"{iface} is not on this host (here: {describe(have)})",
                      f"run from a node that has {iface}, or --set network.interface=<one of the above>")]
    if not have[iface]:
        return [Check("network interface", "fail", f"{iface} has no IP address", "bring it up or pick another interface")]
    return [Check("network interface", "pass", f"{iface} has {', '.join(have[iface])}")]


def bind_host(site: Site) -> str:
    """The address this machine's engine ports bind for ``site``."""
    return "127.0.0.1" if site.loopback or not site.batch else "0.0.0.0"


def check_ports(site: Site) -> list[Check]:
    host = bind_host(site)
    out = []
    if site.network.port_range:
        lo, hi = site.network.port_range
        free = [p for p in range(lo, hi + 1) if port_free(host, p)]
        need = min(site.max_workers or 1, hi - lo + 1)
        if len(free) >= need:
            out.append(Check("worker ports", "pass", f"{len(free)} of {lo}-{hi} free here (need {need})"))
        else:
            out.append(Check("worker ports", "fail", f"only {len(free)} of {lo}-{hi} free here, need {need}",
                             "stop what holds them (ss -ltnp) or --set network.port_range=[low,high]"))
    if not out:
        out.append(Check("worker ports", "pass", "no fixed port range; dask/parsl pick free ports"))
    return out


def check_container(site: Site) -> list[Check]:
    out = []
    c = site.container
    if c.runtime != "none" and site.wrap_in_container:
        exe = c.runtime
        if shutil.which(exe) is None:
            hint = "module load apptainer (on compute nodes)" if exe == "apptainer" else f"use a node with {exe}"
            out.append(Check("container runtime", "skip" if site.batch else "fail",
                             f"{exe} not on PATH here (it must exist on the compute nodes)", hint))
        else:
            out.append(Check("container runtime", "pass", f"{exe} found"))
    # the image / tarball / interpreter themselves: check_delivery (the checks launch makes)
    if not out:
        out.append(Check("container runtime", "pass", "no container runtime used"))
    return out


def check_delivery(site: Site) -> list[Check]:
    """The same checks `launch` makes before submitting (hpckit.deploy.delivery.preflight)."""
    from hpckit.deploy import delivery

    try:
        lock, src = delivery.client_lock(site)
    except delivery.DeliveryError as exc:
        return [Check("client lock", "fail", str(exc).split("\nfix: ")[0], str(exc).partition("\nfix: ")[2])]
    resolved = delivery.resolve(site, lock)
    found = delivery.preflight(resolved, lock, src)
    head = Check("env delivery", "pass", f"{site.env_delivery.mode}; client lock {lock.hash[:19]}... from {src}")
    return [head] + [Check(f.name, f.result, f.detail, f.fix) for f in found]


def _proxy_seconds_left(path: str) -> tuple[int | None, str]:
    if shutil.which("voms-proxy-info"):
        rc, text = _cmd(["voms-proxy-info", "-file", path, "-timeleft"])
        if rc == 0 and text.strip().splitlines()[-1].strip().isdigit():
            return int(text.strip().splitlines()[-1]), "voms-proxy-info"
    if shutil.which("openssl"):
        rc, text = _cmd(["openssl", "x509", "-enddate", "-noout", "-in", path])
        m = re.search(r"notAfter=(.*)", text)
        if rc == 0 and m:
            import datetime as dt

            end = dt.datetime.strptime(m.group(1).strip(), "%b %d %H:%M:%S %Y %Z").replace(tzinfo=dt.timezone.utc)
            return int((end - dt.datetime.now(dt.timezone.utc)).total_seconds()), "openssl x509 -enddate"
    return None, "neither voms-proxy-info nor openssl is here"


def check_x509(site: Site, min_hours: float = 2.0) -> list[Check]:
    if not site.htcondor.x509_proxy:
        return []
    path = os.environ.get("X509_USER_PROXY") or f"/tmp/x509up_u{os.getuid()}"
    fix = "voms-proxy-init -voms cms -valid 192:00"
    if not os.path.isfile(path):
        return [Check("x509 proxy", "fail", f"no proxy at {path} ($X509_USER_PROXY or /tmp/x509up_u<uid>)", fix)]
    left, how = _proxy_seconds_left(path)
    if left is None:
        return [Check("x509 proxy", "skip", f"{path} exists; cannot read its lifetime ({how})")]
    if left < min_hours * 3600:
        return [Check("x509 proxy", "fail", f"{path} has {max(left, 0) / 3600:.1f} h left ({how}), want >= {min_hours:g} h", fix)]
    return [Check("x509 proxy", "pass", f"{path}: {left / 3600:.1f} h left ({how})")]


def check_shared_filesystem(site: Site, engine: Engine, fileset: str | None = None) -> list[Check]:
    """A site without a shared file system, and a launch that would need one: fail naming each piece."""
    if site.shared_filesystem:
        return []
    backend = engine.name
    pieces = needs_shared_filesystem(site, engine, fileset)
    if not pieces:
        return [Check("shared file system", "pass", "the site has none and the launch needs none")]
    return [Check("shared file system", "fail", f"site {site.name} has none, and a {backend} launch reaches the "
                  "nodes through client paths: " + "; ".join(pieces),
                  "inputs from root:// (XRootD), the environment as an image; a launch without a shared file "
                  "system is not supported yet for the rest")]


def run_checks(site_name: str, overrides: list[str] | None = None, backend: str | None = None,
               fileset: str | None = None) -> list[Check]:
    """Every check for ``site_name`` (with ``--set`` overrides) on this machine, in order; with
    ``fileset``, also its storage endpoints and grid credential (hpckit.io.storage_check)."""
    site = load_site(site_name, overrides or []).site
    engine = get(backend or site.default_backend, "backend", LaunchError)
    checks: list[Check] = []
    steps: list[Callable[[], list[Check]]] = [lambda: check_scheduler(site),
                                              lambda: engine.doctor_checks(site, bind_host(site))]
    sched = scheduler_for(site)
    steps.append(lambda: check_account(site))
    if sched.batch and not sched.missing():
        steps.append(lambda: sched.doctor_checks(site))
    steps += [lambda: check_interface(site), lambda: check_ports(site), lambda: check_container(site),
              lambda: check_delivery(site), lambda: check_x509(site),
              lambda: check_shared_filesystem(site, engine, fileset)]
    if fileset is not None:
        from hpckit.io.storage_check import check_fileset_storage

        steps.append(lambda: check_fileset_storage(fileset, credential_required=site.htcondor.x509_proxy))
    for step in steps:
        checks += step()
    return checks
