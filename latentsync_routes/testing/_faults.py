"""Fault descriptions for the fake provider servers.

A :class:`Fault` is a plain, immutable description of one misbehaviour. Tests
queue faults per endpoint (``fal.faults.submit.append(Fault.status(429))``);
the server pops one per matching request, in order, so a test controls exactly
which attempt fails and how. The faults model what a real client meets in
production: rate limiting at the edge, an ingress proxy page instead of JSON,
a job that is created but whose reply is lost, a reset mid-upload, a slow
reply, a download cut short, and a body that stalls part-way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

FaultKind = Literal[
    "status",
    "nginx",
    "drop",
    "drop_after_accept",
    "gateway_after_accept",
    "hold_reply",
    "reset_during_upload",
    "delay",
    "truncate",
    "stall",
]

#: Faults applied before the endpoint runs, so the provider's state is untouched.
PRE_HANDLER_KINDS: frozenset[str] = frozenset({"status", "nginx", "drop", "reset_during_upload"})


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour for one request. Build with the class methods."""

    kind: FaultKind
    status_code: int | None = None
    json_body: Any = None
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str | None = None
    seconds: float = 0.0
    nbytes: int | None = None
    then: Fault | None = field(default=None)

    @classmethod
    def status(
        cls,
        code: int,
        *,
        json: Any = None,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        retry_after: float | None = None,
        content_type: str | None = None,
    ) -> Fault:
        """Answer with ``code`` instead of running the endpoint (no job is created).

        ``json`` (or raw ``body``) replaces the provider's default error body, which
        is fal's ``{"detail": ...}`` or Replicate's problem+json. ``retry_after``
        adds a ``Retry-After`` header, which Replicate's client honours on GETs.
        """
        hdrs = dict(headers or {})
        if retry_after is not None:
            hdrs["Retry-After"] = _fmt_seconds(retry_after)
        raw = body.encode() if isinstance(body, str) else body
        return cls(
            kind="status",
            status_code=code,
            json_body=json,
            body=raw,
            headers=tuple(hdrs.items()),
            content_type=content_type,
        )

    @classmethod
    def nginx_503(cls, code: int = 503) -> Fault:
        """An ingress proxy error page: HTML with "nginx" in it and no ``x-fal-request-id``.

        fal-client treats exactly this shape (502/503/504) as retryable; a JSON 503
        carrying ``x-fal-request-id`` is not retried. The endpoint does not run.
        """
        return cls(kind="nginx", status_code=code)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without reading on or replying; the endpoint does not run."""
        return cls(kind="drop")

    @classmethod
    def gateway_error_after_accept(cls, code: int = 502) -> Fault:
        """Run the endpoint (a job IS created), then answer a gateway's HTML error page (502/503/504).

        What a proxy in front of the provider sends when the upstream reply is lost: the status says
        "error" although the provider accepted the job, so it must not be read as "nothing created".
        """
        return cls(kind="gateway_after_accept", status_code=code)

    @classmethod
    def hold_reply(cls, seconds: float) -> Fault:
        """Run the endpoint (a job IS created), then hold the reply back for ``seconds``.

        A client killed in that window has made a provider job it never heard of: the crash case a
        journal's ``submitting`` state exists for.
        """
        return cls(kind="hold_reply", seconds=seconds)

    @classmethod
    def drop_after_accept(cls) -> Fault:
        """Run the endpoint (a job IS created), then close the connection with no reply.

        This is the ambiguous-create case: the client sees a transport error, may
        retry (fal-client does, on POST too), and the provider now holds a job the
        caller never learned about.
        """
        return cls(kind="drop_after_accept")

    @classmethod
    def reset_during_upload(cls, after_bytes: int | None = None) -> Fault:
        """Read part of the request body, then reset the TCP connection (RST).

        ``after_bytes`` defaults to half the declared body (at most 64 KiB).
        Nothing is stored.
        """
        return cls(kind="reset_during_upload", nbytes=after_bytes)

    @classmethod
    def delay(cls, seconds: float, then: Fault | None = None) -> Fault:
        """Sleep before handling (to trip client read timeouts), then go on normally.

        ``then`` chains another fault after the delay. The sleep ends early when the
        server closes, so a long delay never hangs test teardown.
        """
        return cls(kind="delay", seconds=seconds, then=then)

    @classmethod
    def truncate(cls, nbytes: int) -> Fault:
        """Run the endpoint, announce the full ``Content-Length``, send only ``nbytes``, close."""
        return cls(kind="truncate", nbytes=nbytes)

    @classmethod
    def stall(cls, seconds: float, after_bytes: int = 1024) -> Fault:
        """Run the endpoint, send the headers and ``after_bytes`` of the body, stop for ``seconds``, then send
        the rest (a CDN that stops mid-transfer). The stop ends early when the server closes."""
        return cls(kind="stall", seconds=seconds, nbytes=after_bytes)

    def describe(self) -> str:
        """Short label used in request logs, e.g. ``status(429)``."""
        if self.kind in ("status", "nginx"):
            text = f"{self.kind}({self.status_code})"
        elif self.kind in ("delay", "stall"):
            text = f"{self.kind}({self.seconds:g})"
        elif self.kind in ("truncate", "reset_during_upload") and self.nbytes is not None:
            text = f"{self.kind}({self.nbytes})"
        else:
            text = self.kind
        return f"{text}+{self.then.describe()}" if self.then is not None else text


def _fmt_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
