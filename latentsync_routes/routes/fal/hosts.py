"""fal-client's process-wide knobs, in one place: the host override and the deadline-bound HTTP clients.

The host override points fal-client at one origin (``LATENTSYNC_ROUTES_FAL_BASE_URL``) for one job's code only.

The contract: every fal host the route uses is that one origin, with fal's *own* paths at its root and no
prefixes. fal's hosts serve disjoint paths, as fal-client 1.0.3 builds them (``client.py``):

=========================  ==================================  =============================================
host (fal-client constant)  real                                paths the route sends there
=========================  ==================================  =============================================
queue (QUEUE_URL_FORMAT)    ``https://queue.fal.run/``          ``/fal-ai/latentsync``, ``.../requests/{id}...``
rest (REST_URL)             ``https://rest.fal.ai``             ``/storage/auth/token``, ``/storage/upload/...``
cdn (CDN_URL)               ``https://v3.fal.media``            ``/files/upload[/multipart]``, ``/files/...``
Platform API                ``https://api.fal.ai``              ``/v1/models/...``
=========================  ==================================  =============================================

The sync-run host (RUN_URL_FORMAT, ``https://fal.run/``) shares the queue's paths; the route never calls
it, and at one origin a ``POST /fal-ai/latentsync`` is the queue's submit. So a gateway that forwards
fal's paths, or any fake serving them at its root (``latentsync_routes.testing.FakeFal`` does), works.

It is its own module because it patches fal-client's process-wide host constants, a concern apart from
driving a job: :func:`fal_hosts` is the one place that redirects fal-client. Importing this module does
not import fal-client.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ...errors import ConfigurationError

# The fal route's logger, as before this code had a module of its own.
log = logging.getLogger("latentsync_routes.routes.fal")

SUPPORTED_FAL_CLIENT = "1.0.3"
#: fal stores no request payloads when a request carries it (https://docs.fal.ai/model-apis/payloads).
STORE_IO_HEADER = "X-Fal-Store-IO"
HOST_CONSTANTS = ("QUEUE_URL_FORMAT", "RUN_URL_FORMAT", "REST_URL", "CDN_URL")

_HOSTS: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("latentsync_fal_hosts", default=None)
_INSTALL_LOCK = threading.Lock()


def host_urls(base_url: str) -> dict[str, str]:
    """fal-client's four host constants for one origin at ``base_url``: all of them the origin itself."""
    base = base_url.rstrip("/")
    return {"QUEUE_URL_FORMAT": f"{base}/", "RUN_URL_FORMAT": f"{base}/", "REST_URL": base, "CDN_URL": base}


class _HostURL(str):
    """A host constant that reads the override of the current context (fal-client only uses ``+``/f-strings)."""

    #: which of fal-client's host constants this one stands for (a key of :func:`fal_hosts`' table)
    constant: str

    def __new__(cls, default: str, name: str) -> _HostURL:
        obj = super().__new__(cls, default)
        obj.constant = name
        return obj

    def _value(self) -> str:
        hosts = _HOSTS.get()
        return hosts[self.constant] if hosts else str.__str__(self)

    def __str__(self) -> str:
        return self._value()

    def __format__(self, spec: str) -> str:
        return format(self._value(), spec)

    def __add__(self, other: str) -> str:
        return self._value() + other

    def __repr__(self) -> str:
        return repr(self._value())


def _install_host_constants() -> Any:
    """Wrap fal-client's host constants once (idempotent); refuse an fal-client without them."""
    import fal_client
    import fal_client.client as module

    version = getattr(fal_client, "__version__", "unknown")
    missing = [name for name in HOST_CONSTANTS if not isinstance(getattr(module, name, None), str)]
    if missing:
        raise ConfigurationError(
            f"LATENTSYNC_ROUTES_FAL_BASE_URL needs fal-client {SUPPORTED_FAL_CLIENT}; the installed {version} lacks "
            f"{', '.join(missing)}",
            route="fal",
        )
    if version != SUPPORTED_FAL_CLIENT:
        log.warning("fal-client %s is untested with the base URL override (tested: %s)", version, SUPPORTED_FAL_CLIENT)
    with _INSTALL_LOCK:
        for name in HOST_CONSTANTS:
            current = getattr(module, name)
            if not isinstance(current, _HostURL):
                setattr(module, name, _HostURL(current, name))
    return module


@contextmanager
def fal_hosts(base_url: str | None) -> Iterator[None]:
    """Point fal-client at ``base_url`` for the code running in this block, and only that code.

    Trade-off: fal-client's host constants are process globals; swapping them (as tests' ``patch_fal_client``
    does) would redirect every thread's fal traffic while any job runs. Instead each is replaced once by a
    context-aware string and the override lives in a ContextVar, so other threads and tasks keep the real
    hosts. Limits: threads fal-client starts do not inherit it (multipart parts follow server-given URLs),
    the CDN token manager snapshots the REST URL on first use (inside this block, on the route's own
    client), and ``str`` methods on the constants (unused by fal-client) see the real host.
    """
    if base_url is None:
        yield
        return
    _install_host_constants()
    token = _HOSTS.set(host_urls(base_url))
    try:
        yield
    finally:
        _HOSTS.reset(token)


def bound_to_deadlines(sync: Any) -> None:
    """Give a fal-client ``SyncClient`` httpx clients whose requests end at the job's deadline, and that
    carry ``X-Fal-Store-IO: 0`` on every request (uploads and the submit included: fal stores no payloads).

    fal-client 1.0.3 builds its API client in the cached property ``_client`` and a CDN client per upload
    in ``_get_cdn_client``, both with one fixed timeout; the same clients are built here with the
    :func:`~latentsync_routes.deadlines.deadline_transport` around fal-client's own transport.
    """
    import fal_client
    import fal_client.client as module
    import httpx

    from ...deadlines import deadline_transport

    version = getattr(fal_client, "__version__", "unknown")
    if version != SUPPORTED_FAL_CLIENT or not hasattr(module, "BackupDomainTransport"):
        log.warning("fal-client %s: uploads and polls are bounded by its own timeouts, not the job deadline", version)
        sync._client.headers[STORE_IO_HEADER] = "0"  # built once here, not in racing job threads
        return
    headers = {"Authorization": sync._auth.header_value, "User-Agent": module.USER_AGENT, STORE_IO_HEADER: "0"}
    sync.__dict__["_client"] = httpx.Client(
        transport=deadline_transport(module.BackupDomainTransport()),
        headers=headers,
        timeout=sync.default_timeout,
        follow_redirects=True,
    )

    def cdn_client() -> httpx.Client:
        token = sync._token_manager.get_token()
        return httpx.Client(
            transport=deadline_transport(httpx.HTTPTransport()),
            timeout=sync.default_timeout,
            headers={
                "Authorization": f"{token.token_type} {token.token}",
                "User-Agent": module.USER_AGENT,
                STORE_IO_HEADER: "0",
            },
        )

    object.__setattr__(sync, "_get_cdn_client", cdn_client)  # SyncClient is a frozen dataclass
