"""Replicate's non-prediction API, played by the fake: errors, auth, models/versions, files, output delivery.

``FakeReplicate`` builds on this base; keeping these routes here keeps each module
small. What the real client needs from them:

* errors are RFC 7807 ``application/problem+json`` (``ReplicateError.from_response``
  reads ``title``/``detail``/``status``); 429 carries ``Retry-After``, which the
  client's retry transport honours, on GETs only;
* ``GET /v1/models/{o}/{n}/versions/{id}`` returns ``openapi_schema`` with the
  version's ``Input`` schema (``run("owner/name:version")`` fetches it);
* ``POST /v1/files`` takes multipart field ``content`` (+ optional JSON ``metadata``)
  and answers 201 with ``urls.get``, the URL the client substitutes into inputs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from ...testing._http import FakeServer
from ...testing._storage import StoredFile, new_id, safe_name
from ...testing._wire import HTTPError, Request, Response, Route, file_response, route
from .fake_schemas import (
    LATENTSYNC_INPUT_SCHEMA_2025_01,
    LATENTSYNC_INPUT_SCHEMA_CURRENT,
    LATENTSYNC_VERSION_2025_01,
    LATENTSYNC_VERSION_CURRENT,
    OUTPUT_URI_SCHEMA,
    openapi_document,
)

_MODEL = r"(?P<owner>[^/]+)/(?P<name>[^/]+)"
_TITLES = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    422: "Input validation failed",
    429: "Too many requests",
}


@dataclass(frozen=True)
class ReplicateVersion:
    """A model version the fake knows: id, owning model and the cog ``Input`` schema."""

    id: str
    model: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] = field(default_factory=lambda: dict(OUTPUT_URI_SCHEMA))
    cog_version: str = "0.13.7"
    created_at: str = "2025-06-11T00:00:00.000000Z"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at,
            "cog_version": self.cog_version,
            "openapi_schema": openapi_document(self.input_schema, self.output_schema),
        }


#: The two ``bytedance/latentsync`` versions served by default.
LATENTSYNC_VERSIONS: dict[str, ReplicateVersion] = {
    LATENTSYNC_VERSION_2025_01: ReplicateVersion(
        LATENTSYNC_VERSION_2025_01,
        "bytedance/latentsync",
        LATENTSYNC_INPUT_SCHEMA_2025_01,
        created_at="2025-01-05T00:00:00.000000Z",
    ),
    LATENTSYNC_VERSION_CURRENT: ReplicateVersion(
        LATENTSYNC_VERSION_CURRENT, "bytedance/latentsync", LATENTSYNC_INPUT_SCHEMA_CURRENT
    ),
}


class ReplicateAPIServer(FakeServer):
    """Base of ``FakeReplicate``: auth, problem+json errors, models/versions, files, delivery."""

    def __init__(
        self,
        *,
        expected_token: str | None = None,
        versions: Mapping[str, ReplicateVersion] | None = None,
        latest_versions: Mapping[str, str] | None = None,
        official_models: Sequence[str] = (),
        **server_options: Any,
    ) -> None:
        self.expected_token = expected_token
        self.versions = dict(versions if versions is not None else LATENTSYNC_VERSIONS)
        self.latest_versions = dict(latest_versions or {})
        if latest_versions is None:
            for version in sorted(self.versions.values(), key=lambda v: v.created_at):
                self.latest_versions[version.model] = version.id
        self.official_models = set(official_models)
        super().__init__(**server_options)

    @property
    def uploads(self) -> list[StoredFile]:
        """Files uploaded through ``POST /v1/files`` (outputs excluded)."""
        return [f for f in self.store.all() if f.origin == "files_api"]

    def _api_routes(self) -> list[Route]:
        fid = r"(?P<fid>[^/]+)"
        return [
            route("GET", rf"/v1/models/{_MODEL}/versions/(?P<vid>[^/]+)", "version", self._version),
            route("GET", rf"/v1/models/{_MODEL}/versions", "versions_list", self._versions_list),
            route("GET", rf"/v1/models/{_MODEL}", "model", self._model),
            route("POST", r"/v1/files", "file_create", self._file_create),
            route("GET", r"/v1/files", "file_list", self._file_list),
            route("GET", rf"/v1/files/{fid}", "file_get", self._file_get),
            route("GET", rf"/v1/files/{fid}/download", "file_download", self._file_download),
            route("DELETE", rf"/v1/files/{fid}", "file_delete", self._file_delete),
            route("GET", r"/delivery/(?P<key>.+)", "output_download", self._output_download, auth=False),
        ]

    def _error(self, status: int, detail: str, headers: Any = ()) -> Response:
        body = {"title": _TITLES.get(status, "Error"), "detail": detail, "status": status}
        return Response.json(status, body, headers, content_type="application/problem+json")

    def _default_detail(self, code: int) -> str:
        if code == 429:
            return "Request was throttled. Expected available in 1 second."
        return super()._default_detail(code)

    def _check_auth(self, request: Request, route_: Route) -> Response | None:
        if self.expected_token is None:
            return None
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() in ("bearer", "token") and token == self.expected_token:
            return None
        return self._error(401, "You did not pass a valid authentication token")

    def _not_found(self, detail: str = "The requested resource could not be found.") -> HTTPError:
        return HTTPError(self._error(404, detail))

    def _model_versions(self, match: re.Match[str]) -> list[ReplicateVersion]:
        model = f"{match['owner']}/{match['name']}"
        found = [v for v in self.versions.values() if v.model == model]
        if not found:
            raise self._not_found()
        return sorted(found, key=lambda v: v.created_at, reverse=True)

    def _version(self, request: Request, match: re.Match[str]) -> Response:
        for version in self._model_versions(match):
            if version.id == match["vid"]:
                return Response.json(200, version.to_json())
        raise self._not_found()

    def _versions_list(self, request: Request, match: re.Match[str]) -> Response:
        results = [v.to_json() for v in self._model_versions(match)]
        return Response.json(200, {"next": None, "previous": None, "results": results})

    def _model(self, request: Request, match: re.Match[str]) -> Response:
        versions = self._model_versions(match)
        model = f"{match['owner']}/{match['name']}"
        latest = self.versions.get(self.latest_versions.get(model, "")) or versions[0]
        return Response.json(
            200,
            {
                "url": f"https://replicate.com/{model}",
                "owner": match["owner"],
                "name": match["name"],
                "description": "Fake model served by latentsync_routes.testing",
                "visibility": "public",
                "github_url": None,
                "paper_url": None,
                "license_url": None,
                "run_count": self._run_count(),
                "cover_image_url": None,
                "default_example": None,
                "latest_version": latest.to_json(),
            },
        )

    # ----- files -------------------------------------------------------------------------
    def _file_json(self, stored: StoredFile) -> dict[str, Any]:
        created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stored.created_at)) + ".000Z"
        expires = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stored.created_at + 86400)) + ".000Z"
        return {
            "id": stored.id,
            "name": stored.name,
            "content_type": stored.content_type,
            "size": stored.size,
            "etag": stored.md5,
            "checksums": {"sha256": stored.sha256, "md5": stored.md5},
            "metadata": stored.metadata,
            "created_at": created,
            "expires_at": expires,
            "urls": {"get": stored.url},
        }

    def _file_create(self, request: Request, match: re.Match[str]) -> Response:
        ctype = request.headers.get("Content-Type", "")
        if not ctype.startswith("multipart/form-data"):
            raise HTTPError(self._error(400, "Expected multipart/form-data with a 'content' field"))
        message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + request.body())
        content: Any = None
        metadata: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name == "content":
                content = part
            elif name == "metadata":
                raw = part.get_payload(decode=True)
                try:
                    metadata = json.loads(raw if isinstance(raw, bytes) else b"{}")
                except ValueError:
                    raise HTTPError(self._error(400, "metadata must be a JSON object")) from None
        if content is None:
            raise HTTPError(self._error(400, "Missing multipart field 'content'"))
        file_id = new_id(24).lower()
        stored = self.store.save_bytes(
            content.get_payload(decode=True) or b"",
            file_id=file_id,
            name=safe_name(content.get_filename(), "file"),
            content_type=content.get_content_type(),
            url=f"{self.url}/v1/files/{file_id}",
            origin="files_api",
            metadata=metadata,
        )
        return Response.json(201, self._file_json(stored))

    def _stored(self, match: re.Match[str]) -> StoredFile:
        stored = self.store.get(match["fid"])
        if stored is None or stored.origin != "files_api":
            raise self._not_found()
        return stored

    def _file_get(self, request: Request, match: re.Match[str]) -> Response:
        return Response.json(200, self._file_json(self._stored(match)))

    def _file_list(self, request: Request, match: re.Match[str]) -> Response:
        return Response.json(
            200, {"next": None, "previous": None, "results": [self._file_json(f) for f in self.uploads]}
        )

    def _file_delete(self, request: Request, match: re.Match[str]) -> Response:
        self.store.remove(self._stored(match).id)
        return Response(204)

    def _file_download(self, request: Request, match: re.Match[str]) -> Response:
        stored = self._stored(match)
        return file_response(stored.path, request, stored.content_type, [("ETag", stored.etag)])

    def _output_download(self, request: Request, match: re.Match[str]) -> Response:
        stored = self.store.by_url(f"{self.url}/delivery/{match['key']}")
        if stored is None:
            return Response(404, b"Not Found", content_type="text/plain")
        return file_response(stored.path, request, stored.content_type, [("ETag", stored.etag)])

    def _run_count(self) -> int:
        return 0
