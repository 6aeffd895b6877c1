"""Which address workers dial back to, from the site's ``network.interface`` and this host's interfaces.

One place for the rule every backend and ``render`` follow: a loopback-only site (interface ``lo``) or a
local one uses 127.0.0.1; any other site names the address of its interface here, else this host's name -
never loopback, which a worker on another node would take for itself.
"""

from __future__ import annotations

import socket

from hpckit.deploy.schedulers import scheduler_class
from hpckit.deploy.site import Site
from hpckit.core.errors import LaunchError

__all__ = ["interface_address", "interface_addresses", "manager_address", "require_interface"]


def interface_addresses() -> dict[str, list[str]] | None:
    """``{interface: [IPv4 addresses first, then IPv6]}`` of this host (network namespace); None without psutil."""
    try:
        import psutil
    except ImportError:
        return None
    out: dict[str, list[str]] = {}
    for name, addrs in psutil.net_if_addrs().items():
        v4 = [a.address for a in addrs if a.family == socket.AF_INET]
        v6 = [a.address for a in addrs if a.family == socket.AF_INET6]
        out[name] = v4 + v6
    return out


def describe(have: dict[str, list[str]]) -> str:
    """``lo (127.0.0.1), eth0 (10.1.2.3), ifb0 (no address)``."""
    return ", ".join(f"{n} ({a[0] if a else 'no address'})" for n, a in have.items())


def require_interface(site: Site) -> None:
    """One line naming the interfaces there are when the site's interface is not on this host (a launch
    would otherwise fail deep inside dask or parsl)."""
    iface = site.network.interface
    have = interface_addresses()
    if not iface or have is None:
        return
    if iface not in have:
        raise LaunchError(f"site {site.name}: network interface {iface} is not on this host (here: {describe(have)}); "
                          f"run on the site's login node, or --set network.interface=<one of those>")
    if not have[iface]:
        raise LaunchError(f"site {site.name}: network interface {iface} has no IP address here; "
                          f"bring it up or --set network.interface=<another>")


def interface_address(site: Site) -> str | None:
    """127.0.0.1 for loopback and local sites, else the IPv4 address of the site's interface on this host
    (None when the site names none or this host lacks it)."""
    if site.loopback or not scheduler_class(site.scheduler).batch:
        return "127.0.0.1"
    have = interface_addresses() or {}
    return next((a for a in have.get(site.network.interface or "", []) if "." in a), None)


def manager_address(site: Site) -> str:
    """The address workers dial back to: :func:`interface_address`, else this host's name (never loopback)."""
    found = interface_address(site)
    if found:
        return found
    fqdn = socket.getfqdn()
    return fqdn if "." in fqdn and not fqdn.startswith("localhost") else socket.gethostname()


def port_free(host: str, port: int) -> bool:
    """Whether ``port`` can be bound on ``host`` here now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
