"""HTTP primitives for the fakes: request/response objects, routes, ranged file replies.

Kept apart from the server loop (``_http``) so each stays small. ``Request`` reads
the body lazily, which is what lets uploads stream to disk and lets a fault
reset a connection halfway through a body.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

_REDACTED_HEADERS = frozenset({"authorization"})
_DRAIN_LIMIT = 8 * 1024 * 1024
CHUNK = 256 * 1024


class Headers(Mapping[str, str]):
    """Case-insensitive, ordered request headers; ``repr`` hides ``Authorization``."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = list(items)

    def __getitem__(self, name: str) -> str:
        lowered = name.lower()
        for key, value in self._items:
            if key.lower() == lowered:
                return value
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for key, _ in self._items:
            if key.lower() not in seen:
                seen.add(key.lower())
                yield key

    def __len__(self) -> int:
        return len({key.lower() for key, _ in self._items})

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self._items if key.lower() == name.lower()]

    def __repr__(self) -> str:
        shown = {key: ("<redacted>" if key.lower() in _REDACTED_HEADERS else value) for key, value in self._items}
        return f"Headers({shown!r})"


@dataclass(eq=False)
class RequestRecord:
    """One request as the fake saw it. ``body`` holds at most the log limit; ``body_size`` all of it."""

    seq: int
    method: str
    path: str
    query_string: str
    headers: Headers
    endpoint: str | None
    started_at: float
    body: bytes = b""
    body_size: int = 0
    status: int | None = None
    fault: str | None = None

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(self.query_string, keep_blank_values=True)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        query = f"?{self.query_string}" if self.query_string else ""
        return (
            f"<RequestRecord #{self.seq} {self.method} {self.path}{query} endpoint={self.endpoint} "
            f"status={self.status} fault={self.fault} body_size={self.body_size} headers={self.headers!r}>"
        )


@dataclass
class Response:
    """What an endpoint answers. ``file`` streams from disk (optionally a byte range)."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = None
    file: Path | None = None
    file_range: tuple[int, int] | None = None  # [start, end) within ``file``

    @classmethod
    def json(
        cls,
        status: int,
        obj: Any,
        headers: Iterable[tuple[str, str]] = (),
        content_type: str = "application/json",
    ) -> Response:
        return cls(status, json.dumps(obj).encode(), list(headers), content_type)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class HTTPError(Exception):
    """Raised by endpoint code to answer early with ``response``."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


class Request:
    """An incoming request whose body is read lazily, so uploads can stream to disk."""

    def __init__(self, rfile: io.BufferedIOBase, record: RequestRecord, log_limit: int) -> None:
        self.method = record.method
        self.path = record.path
        self.query_string = record.query_string
        self.query = record.query
        self.headers = record.headers
        self.record = record
        self._rfile = rfile
        self._log_limit = log_limit
        self._chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        length = self.headers.get("Content-Length")
        self.content_length: int | None = int(length) if length and not self._chunked else None
        self._remaining = self.content_length or 0
        self._chunk_left = 0
        self._eof = not self._chunked and self._remaining == 0
        self._cached: bytes | None = None

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    @property
    def fully_read(self) -> bool:
        return self._eof

    def read(self, size: int = CHUNK) -> bytes:
        """Read up to ``size`` body bytes; ``b""`` at the end. Tees into the log record."""
        if self._eof:
            return b""
        data = self._read_chunked(size) if self._chunked else self._read_plain(size)
        record = self.record
        if len(record.body) < self._log_limit:
            record.body += data[: self._log_limit - len(record.body)]
        record.body_size += len(data)
        return data

    def _read_plain(self, size: int) -> bytes:
        data = self._rfile.read(min(size, self._remaining))
        if not data:
            raise ConnectionError("client closed the connection mid-body")
        self._remaining -= len(data)
        self._eof = self._remaining == 0
        return data

    def _read_chunked(self, size: int) -> bytes:
        if self._chunk_left == 0:
            line = self._rfile.readline(1024).strip()
            self._chunk_left = int(line.split(b";")[0] or b"0", 16)
            if self._chunk_left == 0:
                while self._rfile.readline(1024).strip():  # trailers
                    pass
                self._eof = True
                return b""
        data = self._rfile.read(min(size, self._chunk_left))
        if not data:
            raise ConnectionError("client closed the connection mid-body")
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            self._rfile.readline(16)
        return data

    def body(self) -> bytes:
        """The whole body in memory (cached). Use :meth:`save_body` for large uploads."""
        if self._cached is None:
            parts = []
            while chunk := self.read():
                parts.append(chunk)
            self._cached = b"".join(parts)
        return self._cached

    def json(self) -> Any:
        raw = self.body()
        try:
            return json.loads(raw) if raw else None
        except ValueError as exc:
            raise HTTPError(Response.json(400, {"detail": f"request body is not JSON: {exc}"})) from exc

    def save_body(self, dest: Path) -> tuple[int, str, str]:
        """Stream the body to ``dest``; returns (size, sha256 hex, md5 hex)."""
        sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
        with dest.open("wb") as out:
            while chunk := self.read():
                out.write(chunk)
                sha.update(chunk)
                md5.update(chunk)
                size += len(chunk)
        return size, sha.hexdigest(), md5.hexdigest()

    def drain(self) -> bool:
        """Discard unread body bytes so the keep-alive connection stays usable."""
        budget = _DRAIN_LIMIT
        while not self._eof and budget > 0:
            budget -= len(self.read()) or 1
        return self._eof


@dataclass(frozen=True)
class Route:
    """``GET`` routes also answer ``HEAD``. ``auth=False`` marks public URLs (CDN files)."""

    method: str
    pattern: re.Pattern[str]
    endpoint: str
    handler: Callable[[Request, re.Match[str]], Response]
    auth: bool = True


def route(
    method: str, regex: str, endpoint: str, handler: Callable[[Request, re.Match[str]], Response], *, auth: bool = True
) -> Route:
    return Route(method, re.compile(regex + r"\Z"), endpoint, handler, auth)


def file_response(path: Path, request: Request, content_type: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """Serve a stored file like a CDN: ETag, ``Accept-Ranges`` and single ``Range`` requests (206/416)."""
    size = path.stat().st_size
    extra = [("Accept-Ranges", "bytes"), *headers]
    spec = request.headers.get("Range", "")
    found = re.fullmatch(r"bytes=(\d*)-(\d*)", spec.strip())
    if not spec:
        return Response(200, headers=extra, content_type=content_type, file=path)
    if found is None or (not found.group(1) and not found.group(2)):
        return Response(416, headers=[*extra, ("Content-Range", f"bytes */{size}")], content_type="text/plain")
    if found.group(1):
        first = int(found.group(1))
        last = min(int(found.group(2)), size - 1) if found.group(2) else size - 1
    else:
        first, last = max(0, size - int(found.group(2))), size - 1
    if first >= size or last < first:
        return Response(416, headers=[*extra, ("Content-Range", f"bytes */{size}")], content_type="text/plain")
    return Response(
        206,
        headers=[*extra, ("Content-Range", f"bytes {first}-{last}/{size}")],
        content_type=content_type,
        file=path,
        file_range=(first, last + 1),
    )


def iso_now(offset_s: float = 0.0) -> str:
    """UTC timestamp in the ``2025-01-01T00:00:00.000000+00:00`` form both providers parse."""
    return (datetime.now(timezone.utc) + timedelta(seconds=offset_s)).isoformat()
