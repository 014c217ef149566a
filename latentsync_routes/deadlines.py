"""One deadline for every request a job makes, including those the provider SDKs make for us.

The hosted template sets the job's deadline for the code it runs (:func:`deadline_scope`, a ContextVar,
so other jobs' threads keep theirs); :class:`DeadlineTransport` wraps an httpx transport and cuts every
request's connect/read/write/pool timeout to the time left, so an upload or a poll that stalls ends at
the deadline instead of at the SDK's own timeout. A response body is read under the same deadline: each
read's timeout is at most the time left when the request was sent, and the body is cut (as
:class:`DeadlinePassed`) at the first chunk that arrives after the deadline, so a body that trickles or
stalls ends near the deadline, not after it. Threads an SDK starts by itself (fal-client's multipart
parts) do not inherit the scope; their own timeouts still apply.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .errors import DeadlinePassed

if TYPE_CHECKING:
    import httpx

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("latentsync_deadline", default=None)
#: A request is never given less than this (a zero timeout would fail before the first byte).
MIN_REQUEST_S = 0.05


@contextmanager
def deadline_scope(deadline: float) -> Iterator[None]:
    """Bound every request made in this block (``time.monotonic()`` based ``deadline``)."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def time_left() -> float | None:
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


def deadline_transport(inner: httpx.BaseTransport, defaults: dict[str, float] | None = None) -> httpx.BaseTransport:
    """``inner`` with every request's timeouts cut to the current deadline (and ``defaults`` where unset)."""
    import httpx

    class DeadlineTransport(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            limits = dict(request.extensions.get("timeout") or {})
            for name, value in (defaults or {}).items():
                limits[name] = limits.get(name) or value
            left = time_left()
            if left is not None:
                if left <= 0:  # not an httpx error, so no SDK retry loop sleeps on past the deadline
                    raise DeadlinePassed("the job deadline passed; the request was not sent")
                cap = max(MIN_REQUEST_S, left)
                for name in ("connect", "read", "write", "pool"):
                    current = limits.get(name)
                    limits[name] = cap if current is None else min(current, cap)
            request.extensions["timeout"] = limits
            response = inner.handle_request(request)
            deadline = _DEADLINE.get()
            if deadline is not None and isinstance(response.stream, httpx.SyncByteStream):
                response.stream = _deadline_body(response.stream, deadline)
            return response

        def close(self) -> None:
            inner.close()

    return DeadlineTransport()


def _deadline_body(stream: httpx.SyncByteStream, deadline: float) -> httpx.SyncByteStream:
    """``stream`` cut off at ``deadline``: a chunk arriving after it ends the read as :class:`DeadlinePassed`
    (not an httpx error, so no SDK or download retry runs on past the deadline)."""
    import httpx

    class DeadlineBody(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            for chunk in stream:
                if time.monotonic() > deadline:
                    raise DeadlinePassed("the job deadline passed while the response body was being read")
                yield chunk

        def close(self) -> None:
            stream.close()

    return DeadlineBody()
