"""The Dask dashboard of a pool, for its owner only.

The scheduler's HTTP server binds to loopback of the host that runs it (the rendered
``dashboard_address``: ``127.0.0.1:0``), and every request must carry the pool's token: once in the
link (``?token=...``), which sets a cookie for that port and redirects to the page without the token,
then as that cookie (the page's scripts and its websocket). Anything else gets 403. Other users of the
login node can reach loopback ports, so the token is what keeps them out; it is random, made per pool,
and kept in the pool's 0700 run directory. From a laptop: ``ssh -N -L PORT:127.0.0.1:PORT <login node>``
(printed by `hpckit up`), then open the link.
"""

from __future__ import annotations

import hmac
import secrets
import socket
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

COOKIE = "hpckit-dashboard-{port}"


def _handlers() -> tuple[type, type]:
    from tornado import web

    class Forbidden(web.RequestHandler):
        def prepare(self) -> None:
            self.set_status(403)
            self.finish("403: this dashboard needs its token (the link `hpckit up` or hpckit.cluster printed)\n")

    class SetCookie(web.RequestHandler):
        def initialize(self, name: str, token: str) -> None:
            self.name, self.token = name, token

        def prepare(self) -> None:
            self.set_cookie(self.name, self.token, httponly=True, samesite="Strict", path="/")
            parts = urlsplit(self.request.uri)
            query = {k: v for k, v in parse_qs(parts.query).items() if k != "token"}
            self.redirect(urlunsplit(("", "", parts.path, urlencode(query, doseq=True), "")))

    return Forbidden, SetCookie


def gate(server: Any, token: str) -> None:
    """Make the HTTP server of a Dask ``server`` (its scheduler) answer only requests that carry ``token``."""
    app = getattr(server, "http_application", None)
    if app is None or getattr(app, "_hpckit_gated", False):
        return
    forbidden, set_cookie = _handlers()
    name = COOKIE.format(port=server.http_server.port)
    find = app.find_handler

    def find_handler(request: Any, **kwargs: Any) -> Any:
        given = parse_qs(urlsplit(request.uri).query).get("token", [""])[0]
        if given and hmac.compare_digest(given, token):
            return app.get_handler_delegate(request, set_cookie, {"name": name, "token": token})
        cookie = request.cookies.get(name)
        if cookie is not None and hmac.compare_digest(cookie.value, token):
            return find(request, **kwargs)
        return app.get_handler_delegate(request, forbidden)

    app.find_handler = find_handler
    app._hpckit_gated = True


def scheduler_of(pool: Any) -> Any:
    """The in-process Dask scheduler of a pool (dask-jobqueue and LocalCluster run it here), else None."""
    cluster = getattr(pool, "cluster", None)
    return getattr(cluster, "scheduler", None) if cluster is not None else None


def protect(pool: Any, token: str | None = None) -> str | None:
    """Gate the pool's dashboard with a new token (returned); None when there is no dashboard."""
    sched = scheduler_of(pool)
    server = getattr(sched, "http_server", None)
    if server is None:
        return None
    token = token or secrets.token_urlsafe(24)
    gate(sched, token)
    return token


def port_of(pool: Any) -> int | None:
    server = getattr(scheduler_of(pool), "http_server", None)
    return getattr(server, "port", None)


def link(session: Any) -> str | None:
    """``http://127.0.0.1:PORT/status?token=...`` for the pool of ``session`` (None: no dashboard)."""
    token = getattr(session, "dashboard_token", None)
    port = port_of(session.pool) if session.pool is not None else None
    if not token or not port:
        return None
    return f"http://127.0.0.1:{port}/status?token={token}"


def tunnel_command(port: int, host: str | None = None) -> str:
    """The ssh command that brings the dashboard's loopback port to the same port on a laptop."""
    return f"ssh -N -L {port}:127.0.0.1:{port} {host or socket.getfqdn()}"
