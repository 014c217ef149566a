"""Reading a media URL for a probe: HTTP range requests under a byte cap and one total time cap.

A wrong link to a 4 GB file, a gzip bomb, a server that trickles a byte every few seconds, or a redirect to
a host that would be refused if given directly must each fail fast and typed, before anything is uploaded;
this module is the only place that reads a URL the user gave.
"""

from __future__ import annotations

import io
import re
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

from .errors import MediaLimitExceeded, MediaNotFound, UnsupportedSource
from .types import MediaSource

if TYPE_CHECKING:
    import httpx

_BLOCK = 64 * 1024
#: Wall-clock cap on one whole URL probe, every request and block read together: per-read timeouts alone
#: let a server that trickles a byte every few seconds hold a probe forever. Tests shrink it.
URL_PROBE_TIMEOUT_S = 60.0
#: Redirect hops followed per request; each hop is checked like the URL the user gave.
MAX_REDIRECTS = 5
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_IDENTITY = {"Accept-Encoding": "identity"}
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+)\s*$", re.IGNORECASE)


def shown_url(url: str) -> str:
    """A URL without its query string: signed URLs carry credentials there."""
    return url.split("?", 1)[0]


class _Deadline:
    """One wall-clock budget for a whole URL probe."""

    def __init__(self, url: str, seconds: float) -> None:
        self.url, self.seconds = url, seconds
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        remaining = self._end - time.monotonic()
        if remaining <= 0:
            raise UnsupportedSource(
                f"{shown_url(self.url)}: the server is too slow; probing gave up after {self.seconds:g} s"
            )
        return remaining

    def timeout(self) -> httpx.Timeout:
        """Per-request timeouts that never reach past the deadline."""
        import httpx

        left = self.left()
        return httpx.Timeout(min(30.0, left), connect=min(10.0, left))


def _check_hop(origin: str, target: str) -> None:
    """A redirect must obey the same rules as the URL the user gave (https, or http to loopback only)."""
    try:
        MediaSource(kind="url", url=target)
    except UnsupportedSource as exc:
        raise UnsupportedSource(
            f"{shown_url(origin)} redirects to {shown_url(target)}, refused: {exc.message}"
        ) from None
    except ValueError:
        raise UnsupportedSource(f"{shown_url(origin)} redirects to an invalid URL") from None


@contextmanager
def _get(
    client: httpx.Client, url: str, headers: dict[str, str], deadline: _Deadline
) -> Iterator[tuple[httpx.Response, str]]:
    """A streamed GET that follows redirects by hand, checking each hop; yields the response and its URL.

    httpx's own redirect following would take an https link on to a plain-http host without asking; here
    every hop passes :class:`MediaSource` validation, and there are at most ``MAX_REDIRECTS`` of them.
    """
    import httpx

    current = url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            request = client.build_request("GET", current, headers=headers, timeout=deadline.timeout())
            response = client.send(request, stream=True, follow_redirects=False)
        except httpx.HTTPError as exc:
            deadline.left()
            raise UnsupportedSource(f"cannot reach {shown_url(current)}: {type(exc).__name__}") from None
        except httpx.InvalidURL:
            raise UnsupportedSource(f"{shown_url(current)} is not a valid URL") from None
        location = response.headers.get("location")
        if response.status_code in _REDIRECT_STATUSES and location:
            response.close()
            try:
                target = str(httpx.URL(current).join(location))
            except (httpx.InvalidURL, ValueError):
                raise UnsupportedSource(f"{shown_url(current)} redirects to an invalid URL") from None
            _check_hop(current, target)
            current = target
            continue
        try:
            yield response, current
        finally:
            response.close()
        return
    raise UnsupportedSource(f"{shown_url(url)}: more than {MAX_REDIRECTS} redirects")


def _decoded_chunks(response: httpx.Response, url: str) -> Iterator[bytes]:
    """The body in pieces of at most ``_BLOCK`` decoded bytes, however compressed it is.

    We ask for ``identity``; a server that compresses anyway is inflated here with a bounded output per
    step, so a gzip bomb never grows by more than one block at a time (httpx inflates a whole read at once).
    """
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        yield from response.iter_raw()
        return
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise UnsupportedSource(f"{shown_url(url)} answered with Content-Encoding {encoding!r}; asked for identity")
    inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)  # a gzip or a zlib header, detected
    try:
        for raw in response.iter_raw():
            data = raw
            while data:
                out = inflater.decompress(data, _BLOCK)
                data = inflater.unconsumed_tail
                if out:
                    yield out
        while not inflater.eof and (out := inflater.decompress(b"", _BLOCK)):
            yield out
    except zlib.error:
        raise UnsupportedSource(f"{shown_url(url)}: the {encoding} body is corrupt") from None


def _read_at_most(response: httpx.Response, limit: int, url: str, deadline: _Deadline) -> bytes | None:
    """The decoded body, or ``None`` as soon as it passes ``limit`` bytes; stops at the deadline."""
    import httpx

    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in _decoded_chunks(response, url):
            total += len(chunk)
            if total > limit:
                return None
            chunks.append(chunk)
            deadline.left()
    except httpx.HTTPError as exc:
        deadline.left()
        raise UnsupportedSource(f"{shown_url(url)}: the transfer broke off ({type(exc).__name__})") from None
    return b"".join(chunks)


def _read_body(response: httpx.Response, url: str, cap: int, deadline: _Deadline) -> bytes:
    """A whole body from a server without range support, refused once it passes the probe cap."""
    declared = response.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > cap:
        raise MediaLimitExceeded(f"{shown_url(url)} is {declared} bytes; probe cap is {cap}")
    body = _read_at_most(response, cap, url, deadline)
    if body is None:
        raise MediaLimitExceeded(
            f"{shown_url(url)} is over the probe cap of {cap} bytes and the server does not serve byte ranges"
        )
    return body


def _content_range(response: httpx.Response) -> tuple[int, int, int] | None:
    """``(first, last, total)`` from a well-formed ``Content-Range``; ``None`` for ``bytes 0-0/*`` and junk."""
    match = _CONTENT_RANGE.match(response.headers.get("content-range", "").strip())
    if match is None:
        return None
    first, last, total = (int(group) for group in match.groups())
    return (first, last, total) if first <= last < total else None


class _RangeFile(io.RawIOBase):
    """A seekable read-only view of a remote file, fetched in blocks by HTTP range requests."""

    def __init__(self, client: httpx.Client, url: str, size: int, cap: int, deadline: _Deadline) -> None:
        self._client, self._url, self._size, self._cap = client, url, size, cap
        self._deadline = deadline
        self._pos = 0
        self._blocks: dict[int, bytes] = {}
        self.fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _block(self, index: int) -> bytes:
        if index not in self._blocks:
            start = index * _BLOCK
            end = min(start + _BLOCK, self._size) - 1
            want = end - start + 1
            if self.fetched + want > self._cap:
                raise MediaLimitExceeded(f"probing {shown_url(self._url)} needs more than {self._cap} bytes")
            headers = {"Range": f"bytes={start}-{end}", **_IDENTITY}
            with _get(self._client, self._url, headers, self._deadline) as (response, _):
                if response.status_code != 206:
                    raise UnsupportedSource(f"{shown_url(self._url)}: range request answered {response.status_code}")
                answered = _content_range(response)
                if answered is None or answered[0] != start:
                    shown = response.headers.get("content-range", "")[:80]
                    raise UnsupportedSource(f"{shown_url(self._url)}: range request answered Content-Range {shown!r}")
                data = _read_at_most(response, want, self._url, self._deadline)
            if data is None or len(data) != want:
                raise UnsupportedSource(f"{shown_url(self._url)}: a range request for {want} bytes got another amount")
            self._blocks[index] = data
            self.fetched += len(data)
        return self._blocks[index]

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= self._size or len(view) == 0:
            return 0
        block = self._block(self._pos // _BLOCK)
        offset = self._pos % _BLOCK
        n = min(len(view), len(block) - offset)
        view[:n] = block[offset : offset + n]
        self._pos += n
        return n


@contextmanager
def open_url(url: str, cap: int) -> Iterator[tuple[IO[bytes], int | None]]:
    """Range reads when the server offers them, else a bounded full read; all under one deadline.

    ``Accept-Encoding: identity`` keeps byte ranges meaningful and bodies small; a ``206`` whose
    ``Content-Range`` gives no usable total (``bytes 0-0/*``) falls back to a bounded full read.
    """
    import httpx

    deadline = _Deadline(url, URL_PROBE_TIMEOUT_S)
    with httpx.Client(follow_redirects=False, timeout=deadline.timeout()) as client:
        body: bytes | None = None
        size: int | None = None
        with _get(client, url, {"Range": "bytes=0-0", **_IDENTITY}, deadline) as (head, final):
            status = head.status_code
            if status == 404:
                raise MediaNotFound(f"{shown_url(url)}: 404 not found")
            if status == 206:
                answered = _content_range(head)
                size = answered[2] if answered is not None and answered[0] == 0 else None
            elif status == 200:
                body = _read_body(head, url, cap, deadline)
            else:
                raise UnsupportedSource(f"{shown_url(url)}: HTTP {status}")
        if size is None and body is None:
            with _get(client, final, dict(_IDENTITY), deadline) as (full, _):
                if full.status_code != 200:
                    raise UnsupportedSource(
                        f"{shown_url(url)}: no usable Content-Range, and a plain GET answered HTTP {full.status_code}"
                    )
                body = _read_body(full, url, cap, deadline)
        if size is not None:
            yield io.BufferedReader(_RangeFile(client, final, size, cap, deadline), buffer_size=_BLOCK), size
        else:
            assert body is not None
            yield io.BytesIO(body), len(body)
