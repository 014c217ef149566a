"""The page answers only requests addressed to it: the ``Host`` header must name its bind address.

Why: a page on 127.0.0.1 is still reachable from any web site the same person visits, by DNS rebinding
(``evil.example`` first resolves to the attacker, then to 127.0.0.1; the browser then lets that site's
script read the page, run jobs and read the history). The browser still sends ``Host: evil.example``, so a
server that answers only the names of its own address refuses it. Loopback names are always accepted
(no other site can make a browser send them); a wildcard bind (``0.0.0.0``) adds this machine's names
and addresses; ``--share`` adds the public link's host once Gradio has one.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names of a bind, not a bind


def _machine_names() -> set[str]:
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    for name in list(names):
        try:
            names |= {str(info[4][0]).lower() for info in socket.getaddrinfo(name, None)}
        except OSError:
            continue
    return names


def allowed_hosts(bind: str) -> set[str]:
    """The ``Host`` names (without port) a page bound to ``bind`` answers."""
    bind = bind.strip().strip("[]").lower()
    names = set(LOOPBACK_NAMES)
    if bind in _WILDCARDS:
        names |= _machine_names()
    else:
        names.add(bind)
    return names


def host_of(header: str) -> str:
    """``example.com:7860`` -> ``example.com``; ``[::1]:7860`` -> ``::1``; lower case."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") > 1:  # a bare IPv6 address
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            return value
    return value.rsplit(":", 1)[0] if ":" in value else value


class HostCheck:
    """ASGI middleware: a request whose ``Host`` is not one of ``allowed`` gets 421 and reaches nothing."""

    def __init__(self, app: ASGIApp, allowed: set[str]) -> None:
        self.app = app
        self.allowed = allowed  # the same set object: ``allow`` adds the share link's host later

    def allow(self, host: str) -> None:
        self.allowed.add(host_of(host))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        host = host_of(bytes(headers.get(b"host", b"")).decode("latin-1"))
        if host in self.allowed:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        body = b"this page answers only requests addressed to its own host (Host header refused)\n"
        await send(
            {
                "type": "http.response.start",
                "status": 421,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
