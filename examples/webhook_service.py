"""A small web service on latentsync_routes: answer a submit at once, hear back by verified webhooks.

    pip install "latentsync-routes[fal,webhooks,server]"
    PUBLIC_URL=https://lipsync.example.com uvicorn examples.webhook_service:app

* ``POST /jobs`` with JSON ``{"video": ..., "audio": ..., "route": "fal", "consent": "...",
  "idempotency_key": "..."}`` submits the job and answers 202 with its id and estimate. ``video`` and
  ``audio`` are https URLs or ``{"base64": ..., "name": "clip.mp4"}``: never a path on this server.
* ``GET /jobs/{id}`` (an id or a unique prefix) answers the job's state, output and cost from the journal.
* ``POST /hooks/{route}`` is the provider callback: ``handle_webhook`` verifies the delivery (a forged,
  tampered or stale one is answered 400 and records nothing; a replay 200, as it was handled) and fetches the
  output once. Any other failure is answered 503, so the provider retries the delivery.

Every job lives in the journal, so the service can be killed and restarted at any time: deliveries that
arrive while it is down are retried by the provider, and ``GET /jobs/{id}`` works in any worker process.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from latentsync_routes import LipSyncClient, MediaSource
from latentsync_routes.errors import InputError, LatentSyncError, WebhookRejected, WebhookReplayed


def _media(given: Any, role: str) -> MediaSource:
    """An input as the caller may give it: an https URL or base64 content (a server path is refused)."""
    if isinstance(given, str) and given.startswith("https://"):
        return MediaSource.of(given)
    if isinstance(given, dict) and isinstance(given.get("base64"), str):
        name = str(given.get("name") or f"{role}.bin")
        return MediaSource(kind="bytes", data=base64.b64decode(given["base64"], validate=True), name=Path(name).name)
    raise InputError(f"{role} must be an https URL or {{'base64': ..., 'name': ...}}")


def _summary(record: Any) -> dict[str, Any]:
    return {"job_id": record.job_id, "route": record.route, "state": record.state,
            "output_path": record.output_path, "cost": record.cost.model_dump(mode="json"),
            "failure_reason": record.failure_reason}  # fmt: skip


def create_app(client: LipSyncClient | None = None, *, public_url: str | None = None,
               outputs: Path | None = None) -> Starlette:  # fmt: skip
    """The service around ``client``; providers call it back at ``public_url`` (default: env PUBLIC_URL)."""
    client = client or LipSyncClient()
    public = (public_url or os.environ.get("PUBLIC_URL", "http://127.0.0.1:8000")).rstrip("/")
    folder = outputs or client.settings.home / "service-outputs"

    async def submit(request: Request) -> JSONResponse:
        try:
            data = await request.json()
            route = str(data.get("route") or client.settings.route)
            job = await run_in_threadpool(
                client.submit, _media(data.get("video"), "video"), _media(data.get("audio"), "audio"),
                output=folder / f"{secrets.token_hex(8)}.mp4", route=route, consent=data.get("consent"),
                idempotency_key=data.get("idempotency_key"), webhook_url=f"{public}/hooks/{route}",
            )  # fmt: skip
        except (ValueError, InputError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except LatentSyncError as exc:
            return JSONResponse({"error": str(exc), "exit_code": exc.exit_code}, status_code=422)
        record = job.record
        return JSONResponse({**_summary(record), "estimate": record.cost.estimated}, status_code=202)

    async def show(request: Request) -> JSONResponse:
        try:
            job = await run_in_threadpool(client.job, request.path_params["job_id"])
        except LatentSyncError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse(_summary(job.record))

    async def hook(request: Request) -> JSONResponse:
        body = await request.body()  # the raw bytes: the signature covers them exactly
        try:
            job = await run_in_threadpool(
                client.handle_webhook, request.path_params["route"], dict(request.headers), body
            )
        except WebhookReplayed:
            return JSONResponse({"handled": "already"})
        except WebhookRejected as exc:
            return JSONResponse({"error": type(exc).__name__}, status_code=400)
        except LatentSyncError as exc:  # not handled now: the provider's retry comes back
            return JSONResponse({"error": type(exc).__name__}, status_code=503)
        return JSONResponse({"job_id": job.id, "state": job.state})

    return Starlette(routes=[
        Route("/jobs", submit, methods=["POST"]),
        Route("/jobs/{job_id}", show, methods=["GET"]),
        Route("/hooks/{route}", hook, methods=["POST"]),
    ])  # fmt: skip


def __getattr__(name: str) -> Any:
    """``uvicorn examples.webhook_service:app`` builds the service on first use (importing builds nothing)."""
    if name == "app":
        return create_app()
    raise AttributeError(name)
