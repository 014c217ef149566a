"""WaveSpeed's non-prediction API, played by the fake: envelope, auth, both upload flows, file serving.

``FakeWaveSpeed`` builds on this base, as ``FakeReplicate`` builds on ``ReplicateAPIServer``; keeping
these routes here keeps each module small. What clients need from them (sources: ``docs/wavespeed.md``):

* every reply of the API is ``{"code", "message", "data"}``, errors included, ``code`` = HTTP status;
  auth is ``Authorization: Bearer <key>`` (401 otherwise);
* ``POST /api/v3/media/uploads`` takes ``{"filename", "size", "content_type"}`` and answers a ticket:
  ``download_url`` plus ``upload: {method: "PUT", url, headers}``. wavespeed >= 1.0.11 PUTs the bytes
  there with the ticket's headers only (no ``Authorization``), then uses ``download_url``. The fake's
  upload URL is single-use and checks the announced size, as a presigned object-store URL would;
* ``POST /api/v3/media/upload/binary`` is the documented one-step multipart upload (field ``file``),
  used by wavespeed <= 1.0.10 and most hand-written clients;
* uploads and outputs are public URLs (a CDN in production), served here under ``/media`` and
  ``/output`` with ranges, without auth.
"""

from __future__ import annotations

import mimetypes
import re
import secrets
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from ...testing._http import FakeServer
from ...testing._storage import StoredFile, new_id, safe_name
from ...testing._wire import HTTPError, Request, Response, Route, file_response, route

UPLOAD_ORIGINS = ("upload_ticket", "upload_binary")


class WaveSpeedAPIServer(FakeServer):
    """Base of ``FakeWaveSpeed``: envelope and auth, upload ticket + PUT, binary upload, file serving."""

    def __init__(self, *, expected_key: str | None = None, max_upload_bytes: int, **server_options: Any) -> None:
        self.expected_key = expected_key
        self.max_upload_bytes = max_upload_bytes
        self._tickets: dict[str, tuple[str, str, str, int]] = {}  # token -> (file id, name, content type, size)
        super().__init__(**server_options)

    @property
    def uploads(self) -> list[StoredFile]:
        """Files uploaded through either upload route (outputs excluded), in no particular order."""
        return [f for f in self.store.all() if f.origin in UPLOAD_ORIGINS]

    def _api_routes(self) -> list[Route]:
        return [
            route("POST", r"/api/v3/media/uploads", "upload_ticket", self._upload_ticket),
            route("POST", r"/api/v3/media/upload/binary", "upload_binary", self._upload_binary),
            route("PUT", r"/upload/(?P<token>[^/]+)", "upload_put", self._upload_put, auth=False),
            route("GET", r"/(?P<key>(?:media|output)/.+)", "file_download", self._download, auth=False),
        ]

    def _check_auth(self, request: Request, route_: Route) -> Response | None:
        if self.expected_key is None or request.headers.get("Authorization") == f"Bearer {self.expected_key}":
            return None
        return self._error(401, "Unauthorized: invalid or missing API key")

    def _error(self, status: int, detail: str, headers: Any = ()) -> Response:
        return Response.json(status, {"code": status, "message": detail, "data": None}, headers)

    @staticmethod
    def _ok(data: Any) -> Response:
        return Response.json(200, {"code": 200, "message": "success", "data": data})

    def _body(self, request: Request) -> dict[str, Any]:
        body = request.json()
        if not isinstance(body, dict):
            raise HTTPError(self._error(400, "request body must be a JSON object"))
        return body

    def _media_url(self, file_id: str, name: str) -> str:
        return f"{self.url}/media/{file_id}/{name}"

    def _upload_ticket(self, request: Request, match: re.Match[str]) -> Response:
        body = self._body(request)
        name, size = body.get("filename"), body.get("size")
        if not isinstance(name, str) or not name or not isinstance(size, int) or size < 0:
            raise HTTPError(self._error(400, "filename and size are required"))
        if size > self.max_upload_bytes:
            raise HTTPError(self._error(413, f"file size exceeds the {self.max_upload_bytes} byte limit"))
        name, ctype = safe_name(name), str(body.get("content_type") or "application/octet-stream")
        token, file_id = secrets.token_urlsafe(24), new_id(32).lower()
        with self._lock:
            self._tickets[token] = (file_id, name, ctype, size)
        upload = {"method": "PUT", "url": f"{self.url}/upload/{token}", "headers": {"Content-Type": ctype}}
        data = {"type": _kind(ctype), "download_url": self._media_url(file_id, name), "filename": name}
        return self._ok({**data, "size": size, "upload": upload})

    def _upload_put(self, request: Request, match: re.Match[str]) -> Response:
        with self._lock:
            ticket = self._tickets.pop(match["token"], None)
        if ticket is None:  # unknown or already used: what a presigned URL answers
            return _storage_error(403, "AccessDenied", "Request has expired or was already used")
        file_id, name, ctype, size = ticket
        stored = self.store.save_request(
            request,
            file_id=file_id,
            name=name,
            content_type=ctype,
            url=self._media_url(file_id, name),
            origin="upload_ticket",
        )
        if stored.size != size:
            self.store.remove(stored.id)
            return _storage_error(400, "IncompleteBody", f"got {stored.size} bytes, the ticket says {size}")
        return Response(200, headers=[("ETag", stored.etag)])

    def _upload_binary(self, request: Request, match: re.Match[str]) -> Response:
        ctype = request.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data"):
            raise HTTPError(self._error(400, "expected multipart/form-data with a 'file' field"))
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + request.body())
        fields = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
        part = fields.get("file")
        if part is None:
            raise HTTPError(self._error(400, "missing multipart field 'file'"))
        name, file_id, payload = safe_name(part.get_filename()), new_id(32).lower(), part.get_payload(decode=True)
        kind = part.get_content_type() if part.get("Content-Type") else mimetypes.guess_type(name)[0]
        stored = self.store.save_bytes(
            payload if isinstance(payload, bytes) else b"",
            file_id=file_id,
            name=name,
            content_type=kind or "application/octet-stream",
            url=self._media_url(file_id, name),
            origin="upload_binary",
        )
        return self._ok(
            {"type": _kind(stored.content_type), "download_url": stored.url, "filename": name, "size": stored.size}
        )

    def _download(self, request: Request, match: re.Match[str]) -> Response:
        stored = self.store.by_url(f"{self.url}/{match['key']}")
        if stored is None:
            return _storage_error(404, "NoSuchKey", "The specified key does not exist.")
        return file_response(stored.path, request, stored.content_type, [("ETag", stored.etag)])


def _kind(content_type: str) -> str:
    major = content_type.split("/", 1)[0]
    return major if major in ("image", "video", "audio") else "file"


def _storage_error(status: int, code: str, message: str) -> Response:
    """An object store's XML error: what a presigned URL or a CDN answers (not the API envelope)."""
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    return Response(status, body.encode(), content_type="application/xml")
