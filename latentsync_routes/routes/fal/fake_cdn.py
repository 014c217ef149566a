"""fal's storage side, played by the fake: CDN tokens, v3 uploads, multipart, legacy signed PUTs, file serving.

fal-client 1.0.3 uploads through these routes (``upload``/``upload_file``):

1. ``POST {REST_URL}/storage/auth/token?storage_type=fal-cdn-v3`` → a CDN token
   (fetched with a fresh ``httpx.Client``, not the configured one);
2. ``POST {CDN_URL}/files/upload`` with the raw body, ``X-Fal-File-Name`` and
   optional ``X-Fal-Object-Lifecycle*`` headers → ``{"access_url"}``;
3. above 100 MiB, multipart under the token's ``base_url`` (10 MiB parts, ETags);
4. if the CDN attempt fails, ``POST {REST_URL}/storage/upload/initiate?storage_type=gcs``
   and a ``PUT`` to the returned signed URL.

Every path is fal's own, at the fake's root (``/storage/...`` for the REST host, ``/files/...`` for the
CDN), as the one-origin contract of ``LATENTSYNC_ROUTES_FAL_BASE_URL`` says. Bodies stream to disk; every
stored file is served back from ``{url}/files/...`` with ETag and Range support, like the real CDN.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

from ...testing._http import FakeServer
from ...testing._storage import StoredFile, new_id, safe_name
from ...testing._wire import Headers, HTTPError, Request, Response, Route, file_response, iso_now, route

_BUCKETS = ("koala", "lion", "penguin", "zebra", "rabbit", "tiger", "panda", "elephant")


class FalStorageServer(FakeServer):
    """Base of ``FakeFal`` holding the storage/CDN endpoints (kept apart to keep modules small)."""

    CDN_ENDPOINTS = frozenset({"cdn_upload", "multipart_create", "multipart_part", "multipart_complete"})

    def __init__(self, *, cdn_token_ttl: float = 3600.0, **server_options: Any) -> None:
        self.cdn_token_ttl = cdn_token_ttl
        self._cdn_tokens: dict[str, float] = {}
        self._multipart: dict[str, dict[str, Any]] = {}
        self._signed_puts: dict[str, dict[str, Any]] = {}
        super().__init__(**server_options)

    @property
    def cdn_url(self) -> str:
        """The CDN host (``https://v3.fal.media``): this fake's origin."""
        return self.url

    @property
    def rest_url(self) -> str:
        """The REST host (``https://rest.fal.ai``): this fake's origin."""
        return self.url

    @property
    def uploads(self) -> list[StoredFile]:
        """Files clients uploaded (outputs excluded), in upload order."""
        return [f for f in self.store.all() if f.origin != "output"]

    def _storage_routes(self) -> list[Route]:
        key = r"(?P<key>[^/]+/[^/]+)"
        return [
            route("POST", r"/storage/auth/token", "cdn_token", self._cdn_token),
            route("POST", r"/storage/upload/initiate", "storage_initiate", self._storage_initiate),
            route("PUT", r"/gcs/(?P<token>[^/]+)", "storage_put", self._storage_put, auth=False),
            route("POST", r"/files/upload", "cdn_upload", self._cdn_upload),
            route("POST", r"/files/upload/multipart", "multipart_create", self._mp_create),
            route("PUT", rf"/files/{key}/multipart/(?P<uid>[^/]+)/(?P<n>\d+)", "multipart_part", self._mp_part),
            route("POST", rf"/files/{key}/multipart/(?P<uid>[^/]+)/complete", "multipart_complete", self._mp_complete),
            route("GET", rf"/files/{key}", "file_download", self._download, auth=False),
        ]

    def _check_cdn_token(self, request: Request) -> Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        with self._lock:
            expiry = self._cdn_tokens.get(token)
        if scheme.lower() == "bearer" and expiry is not None and expiry > time.time():
            return None
        return self._error(401, "Invalid or expired CDN token; fetch one from /storage/auth/token")

    def _new_key(self, name: str) -> tuple[str, str]:
        file_id = new_id()
        return file_id, f"{secrets.choice(_BUCKETS)}/{file_id}_{name}"

    def _store_bytes(self, data: bytes, name: str, content_type: str, *, origin: str, **extra: Any) -> StoredFile:
        file_id, key = self._new_key(name)
        return self.store.save_bytes(
            data,
            file_id=file_id,
            name=name,
            content_type=content_type,
            url=f"{self.cdn_url}/files/{key}",
            origin=origin,
            **extra,
        )

    def _lifecycle(self, request: Request | Headers) -> dict[str, Any]:
        """The parsed ``X-Fal-Object-Lifecycle*`` headers of a request (or of a job's recorded headers)."""
        headers = request if isinstance(request, Headers) else request.headers
        parsed: dict[str, Any] = {}
        for header, attr in (
            ("X-Fal-Object-Lifecycle", "lifecycle"),
            ("X-Fal-Object-Lifecycle-Preference", "lifecycle_preference"),
        ):
            raw = headers.get(header)
            if raw is not None:
                try:
                    parsed[attr] = json.loads(raw)
                except ValueError:
                    parsed[attr] = raw
        return parsed

    def _cdn_token(self, request: Request, match: re.Match[str]) -> Response:
        if request.param("storage_type") != "fal-cdn-v3":
            return Response.json(400, {"detail": "Unsupported storage_type"})
        token = f"fake-cdn-{secrets.token_hex(12)}"
        with self._lock:
            self._cdn_tokens[token] = time.time() + self.cdn_token_ttl
        return Response.json(
            200,
            {
                "token": token,
                "token_type": "Bearer",
                "base_url": self.cdn_url,
                "expires_at": iso_now(self.cdn_token_ttl),
            },
        )

    def _cdn_upload(self, request: Request, match: re.Match[str]) -> Response:
        name = safe_name(request.headers.get("X-Fal-File-Name"))
        file_id, key = self._new_key(name)
        stored = self.store.save_request(
            request,
            file_id=file_id,
            name=name,
            url=f"{self.cdn_url}/files/{key}",
            origin="cdn_v3",
            content_type=request.headers.get("Content-Type", "application/octet-stream"),
            **self._lifecycle(request),
        )
        return Response.json(200, {"access_url": stored.url})

    def _mp_create(self, request: Request, match: re.Match[str]) -> Response:
        name = safe_name(request.headers.get("X-Fal-File-Name"))
        file_id, key = self._new_key(name)
        upload_id = new_id(32)
        with self._lock:
            self._multipart[upload_id] = {
                "file_id": file_id,
                "key": key,
                "name": name,
                "parts": {},
                "content_type": request.headers.get("Content-Type", "application/octet-stream"),
                "extra": self._lifecycle(request),
            }
        return Response.json(200, {"access_url": f"{self.cdn_url}/files/{key}", "uploadId": upload_id})

    def _multipart_state(self, match: re.Match[str]) -> dict[str, Any]:
        with self._lock:
            state = self._multipart.get(match["uid"])
        if state is None or state["key"] != match["key"]:
            raise HTTPError(Response.json(404, {"detail": "Unknown multipart upload"}))
        return state

    def _mp_part(self, request: Request, match: re.Match[str]) -> Response:
        state = self._multipart_state(match)
        part_path = self.storage_dir / f"mp_{match['uid']}_{int(match['n'])}"
        _, _, md5 = request.save_body(part_path)
        with self._lock:
            state["parts"][int(match["n"])] = (part_path, f'"{md5}"')
        return Response(200, headers=[("ETag", f'"{md5}"')])

    def _mp_complete(self, request: Request, match: re.Match[str]) -> Response:
        state = self._multipart_state(match)
        listed = (request.json() or {}).get("parts", [])
        numbers = sorted(int(p["partNumber"]) for p in listed)
        with self._lock:
            parts = dict(state["parts"])
        if numbers != list(range(1, len(parts) + 1)) or any(
            parts[int(p["partNumber"])][1] != p["etag"] for p in listed
        ):
            return Response.json(400, {"detail": "Parts list does not match the uploaded parts/etags"})
        final = self.storage_dir / f"{state['file_id']}_{state['name']}"
        with final.open("wb") as out:
            for number in numbers:
                out.write(parts[number][0].read_bytes())
                parts[number][0].unlink()
        stored = self.store.register_path(
            final,
            file_id=state["file_id"],
            name=state["name"],
            content_type=state["content_type"],
            url=f"{self.cdn_url}/files/{state['key']}",
            origin="multipart",
            **state["extra"],
        )
        with self._lock:
            self._multipart.pop(match["uid"], None)
        return Response.json(200, {"access_url": stored.url})

    def _storage_initiate(self, request: Request, match: re.Match[str]) -> Response:
        if request.param("storage_type") != "gcs":
            return Response.json(400, {"detail": "Unsupported storage_type"})
        payload = request.json() or {}
        name = safe_name(payload.get("file_name"))
        file_id, key = self._new_key(name)
        token = secrets.token_hex(16)
        with self._lock:
            self._signed_puts[token] = {
                "file_id": file_id,
                "name": name,
                "key": key,
                "content_type": payload.get("content_type", "application/octet-stream"),
                "extra": self._lifecycle(request),
            }
        return Response.json(
            200,
            {"upload_url": f"{self.url}/gcs/{token}?X-Goog-Signature=fake", "file_url": f"{self.cdn_url}/files/{key}"},
        )

    def _storage_put(self, request: Request, match: re.Match[str]) -> Response:
        with self._lock:
            pending = self._signed_puts.pop(match["token"], None)
        if pending is None:
            return Response(403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>", content_type="application/xml")
        self.store.save_request(
            request,
            file_id=pending["file_id"],
            name=pending["name"],
            content_type=request.headers.get("Content-Type", pending["content_type"]),
            url=f"{self.cdn_url}/files/{pending['key']}",
            origin="storage",
            **pending["extra"],
        )
        return Response(200)

    def _download(self, request: Request, match: re.Match[str]) -> Response:
        stored = self.store.by_url(f"{self.cdn_url}/files/{match['key']}")
        if stored is None:
            return Response(404, b"Not Found", content_type="text/plain")
        return file_response(
            stored.path,
            request,
            stored.content_type,
            [("ETag", stored.etag), ("Cache-Control", "public, max-age=604800")],
        )
