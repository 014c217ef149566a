"""``FakeFal``: a loopback server speaking fal's queue, storage, CDN and Platform API protocols.

It plays fal's hosts on one port with fal's *own* paths at its root, the one-origin contract of
``LATENTSYNC_ROUTES_FAL_BASE_URL`` (fal's hosts serve disjoint paths, so a gateway can forward them all):

=============  ==========================  ===========================================================
host           real                        paths (served at ``{url}``)
=============  ==========================  ===========================================================
queue          ``https://queue.fal.run/``   ``/{owner}/{app}[/sub]``, ``/{owner}/{app}/requests/{id}...``
rest           ``https://rest.fal.ai``      ``/storage/auth/token``, ``/storage/upload/initiate``
cdn            ``https://v3.fal.media``     ``/files/upload[/multipart]``, ``/files/{bucket}/{name}``
platform       ``https://api.fal.ai``       ``/v1/models/requests/...``, ``/v1/models/pricing``
=============  ==========================  ===========================================================

fal's sync-run host (``https://fal.run/``) shares the queue's paths, so it cannot share the origin: the
fake serves it at ``/run/`` (the routes never use it). fal-client 1.0.3 has no base-URL option, so
:meth:`FakeFal.patch_fal_client` swaps its module constants for a ``with`` block.

Jobs advance one step per status poll (``queue_polls`` IN_QUEUE answers, then ``progress_polls``
IN_PROGRESS answers, then COMPLETED), so tests are deterministic and need no sleeps. The output follows
the provider's rule: the input video looped or cut to the audio's length, carrying that audio (not
lip-synced), and its billable units follow the price book's rule on that length.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ...media import output_duration
from ...pricing import fal_billable_units_for
from ...testing._lipsync_media import audio_seconds, lipsync_stand_in
from ...testing._media import tiny_mp4
from ...testing._wire import HTTPError, Request, Response, Route, iso_now, route
from .fake_cdn import FalStorageServer
from .fake_jobs import CancelRecord, FalFailure, FalFaults, FalJob
from .fake_platform import FalPlatformAPI, PayloadDeletion
from .fake_schemas import validate_fal_latentsync
from .fake_webhooks import FalWebhooks

FAL_CLIENT_CONSTANTS = ("QUEUE_URL_FORMAT", "RUN_URL_FORMAT", "REST_URL", "CDN_URL")
_APP = r"(?P<app>(?:(?:workflows|comfy)/)?[^/]+/[^/]+)"

__all__ = ["CancelRecord", "FakeFal", "FalFailure", "FalFaults", "FalJob", "PayloadDeletion"]


class FakeFal(FalWebhooks, FalPlatformAPI, FalStorageServer):
    """Loopback fal: queue + sync run + CDN token/upload/multipart + legacy storage + files + Platform API.

    Args:
        expected_key: if set, queue/run/rest calls need ``Authorization: Key <expected_key>``
            (401 otherwise). CDN uploads always need a CDN token this fake issued.
        queue_polls / progress_polls: status polls answered IN_QUEUE, then IN_PROGRESS,
            before a job completes (read when a job is created; may be changed between jobs).
        result_video: output mp4 bytes, or ``callable(job) -> bytes`` (may read
            ``job.input_bytes("video_url")``; raising makes the job fail with a 500).
            Default: the input video looped or cut to the audio, with that audio (a 0.4 s clip
            when an input cannot be decoded).
        billable_units: ``x-fal-billable-units`` of a successful result, or ``callable(job)``.
            Default: the price book's rule on the output's length (billed seconds, at least 40).
        cancel_billable_units: units a cancelled *running* request reports (``None``: no header, so the
            charge is unknown, as fal's docs leave it); a cancelled queued request reports 0 (a guess:
            fal says queued requests are removed unprocessed and queue time is free).
        inference_time: ``metrics.inference_time`` on COMPLETED statuses.
        validate_inputs: check ``fal-ai/latentsync`` arguments like the runner (422 on result).
        cdn_token_ttl: lifetime in seconds of the CDN tokens it issues.
        run_seconds: if set, a job also ends on its own this many seconds after it was sent, polled or not
            (as at fal, where a request runs whether or not anyone watches it); held jobs do not.

    Facts it follows (``facts.py``): the request listing shows only *ended* requests and, for a request sent
    with ``X-Fal-Store-IO: 0``, no payloads even with ``expand=payloads``; a request not started within its
    ``X-Fal-Request-Timeout`` ends with 504 (``X-Fal-Request-Timeout-Type: user``), never runs, is not billed.
    """

    provider = "fal"

    def __init__(
        self,
        *,
        expected_key: str | None = None,
        queue_polls: int = 1,
        progress_polls: int = 1,
        result_video: bytes | Callable[[FalJob], bytes] | None = None,
        billable_units: float | Callable[[FalJob], float] | None = None,
        cancel_billable_units: float | None = None,
        inference_time: float = 2.5,
        validate_inputs: bool = True,
        cdn_token_ttl: float = 3600.0,
        run_seconds: float | None = None,
        **server_options: Any,
    ) -> None:
        self.expected_key = expected_key
        self.queue_polls = queue_polls
        self._held_queue_polls: int | None = None
        self.progress_polls = progress_polls
        self.result_video = result_video
        self.billable_units = billable_units
        self.cancel_billable_units = cancel_billable_units
        self.prices: dict[str, tuple[float, str]] = {"fal-ai/latentsync": (0.005, "second")}
        self.payload_deletions: list[PayloadDeletion] = []
        self.inference_time = inference_time
        self.validate_inputs = validate_inputs
        #: whether the request-listing API shows requests that have not ended: undocumented at fal, so not
        #: (the cautious reading, fact ``listing``)
        self.list_unfinished = False
        self.run_seconds = run_seconds
        self.faults = FalFaults()
        self._jobs: dict[str, FalJob] = {}
        self._pending_failures: deque[FalFailure] = deque()
        self._cancellations: list[CancelRecord] = []
        super().__init__(cdn_token_ttl=cdn_token_ttl, **server_options)

    # ----- addresses -------------------------------------------------------------------
    @property
    def queue_url(self) -> str:
        """The queue host (``https://queue.fal.run/``): this fake's origin."""
        return f"{self.url}/"

    @property
    def run_url(self) -> str:
        return f"{self.url}/run/"

    def client_constants(self) -> dict[str, str]:
        """Values for fal-client's module constants that point it at this fake."""
        return {
            "QUEUE_URL_FORMAT": self.queue_url,
            "RUN_URL_FORMAT": self.run_url,
            "REST_URL": self.rest_url,
            "CDN_URL": self.cdn_url,
        }

    @contextmanager
    def patch_fal_client(self) -> Iterator[None]:
        """Point fal-client at this fake for the block, then restore it.

        Also drops the CDN token manager cached on fal-client's module-level
        clients: it snapshots ``REST_URL`` when first used. Clients you build
        yourself should be created inside the block (or before their first upload).
        Fails loudly if fal-client no longer has the constants this relies on.
        """
        import fal_client
        import fal_client.client as fal_module

        missing = [name for name in FAL_CLIENT_CONSTANTS if not hasattr(fal_module, name)]
        if missing:
            raise RuntimeError(
                f"fal_client.client lacks {missing}; patch_fal_client supports fal-client 1.0.x "
                f"(installed: {getattr(fal_client, '__version__', 'unknown')})"
            )
        saved = {name: getattr(fal_module, name) for name in FAL_CLIENT_CONSTANTS}
        default_clients = [getattr(fal_client, n, None) for n in ("sync_client", "async_client")]

        def forget_token_managers() -> None:
            for client in default_clients:
                if client is not None:
                    vars(client).pop("_token_manager", None)

        forget_token_managers()
        for name, value in self.client_constants().items():
            setattr(fal_module, name, value)
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(fal_module, name, value)
            forget_token_managers()

    # ----- inspection and control --------------------------------------------------------
    @property
    def jobs(self) -> dict[str, FalJob]:
        """Snapshot of provider jobs by request id; ``len(fal.jobs)`` is how many were created."""
        with self._lock:
            return dict(self._jobs)

    @property
    def cancellations(self) -> list[CancelRecord]:
        with self._lock:
            return list(self._cancellations)

    def fail_job(
        self,
        request_id: str | None = None,
        *,
        status_code: int = 500,
        detail: Any = None,
        error_type: str | None = None,
        billable_units: float | None = None,
    ) -> None:
        """Make a job fail. ``request_id=None`` applies to the next job created.

        5xx defaults to fal's platform error (``runner_server_error``, ``error`` set on
        the status); 4xx answers ``{"detail": detail}`` from the result fetch only.
        """
        if status_code >= 500:
            error_type = error_type or "runner_server_error"
            detail = detail if detail is not None else "Internal server error"
        elif detail is None:
            detail = "Unprocessable Entity"
        body: dict[str, Any] = {"detail": detail}
        if error_type:
            body["error_type"] = error_type
        failure = FalFailure(status_code, body, error_type, str(detail) if status_code >= 500 else None, billable_units)
        with self._lock:
            if request_id is None:
                self._pending_failures.append(failure)
                return
            job = self._jobs[request_id]
            if job.state == "COMPLETED":
                raise ValueError(f"job {request_id} already completed")
            job.failure = failure

    def hold_jobs(self) -> None:
        """Keep every job running (its status polls never end it) until :meth:`release_jobs`."""
        with self._lock:
            if self._held_queue_polls is None:
                self._held_queue_polls = self.queue_polls
            self.queue_polls = 10**9

    def release_jobs(self) -> None:
        """Undo :meth:`hold_jobs`: jobs end after their polls again, and those already held end now."""
        with self._lock:
            if self._held_queue_polls is not None:
                self.queue_polls, self._held_queue_polls = self._held_queue_polls, None
        for job_id, job in self.jobs.items():
            if job.state != "COMPLETED":
                self.complete(job_id)

    def complete(self, request_id: str) -> FalJob:
        """Finish a job now, whatever its poll count."""
        with self._lock:
            job = self._jobs[request_id]
            if job.state != "COMPLETED":
                self._finish(job)
            return job

    # ----- server plumbing -------------------------------------------------------------
    def _build_routes(self) -> Sequence[Route]:
        rid = r"(?P<rid>[^/]+)"
        return [  # fixed paths first: the queue's /{owner}/{app}/... patterns would swallow them
            *self._platform_routes(),
            *self._storage_routes(),
            *self._webhook_routes(),
            route("POST", rf"/run/{_APP}(?:/(?P<sub>.+))?", "run", self._run),
            route("GET", rf"/{_APP}/requests/{rid}/status", "status", self._status),
            route("PUT", rf"/{_APP}/requests/{rid}/cancel", "cancel", self._cancel),
            route("GET", rf"/{_APP}/requests/{rid}", "result", self._result),
            route("POST", rf"/{_APP}(?:/(?P<sub>.+))?", "submit", self._submit),
        ]

    def _check_auth(self, request: Request, route_: Route) -> Response | None:
        if route_.endpoint in self.CDN_ENDPOINTS:
            return self._check_cdn_token(request)
        if self.expected_key is not None and request.headers.get("Authorization") != f"Key {self.expected_key}":
            return self._error(401, "Cannot access application: missing or invalid 'Key' credentials")
        return None

    def _decorate(self, request: Request, response: Response) -> None:
        found = re.search(r"/requests/([^/]+)", request.path)
        if found and not request.path.startswith("/v1/") and response.header("x-fal-request-id") is None:
            response.headers.append(("x-fal-request-id", found.group(1)))

    # ----- queue -------------------------------------------------------------------------
    def _urls(self, job: FalJob) -> dict[str, str]:
        base = f"{self.queue_url}{job.app}/requests/{job.request_id}"
        return {"response_url": base, "status_url": f"{base}/status", "cancel_url": f"{base}/cancel"}

    def _create_job(self, request: Request, match: re.Match[str], *, queued: bool) -> FalJob:
        arguments = request.json()
        with self._lock:
            job = FalJob(
                request_id=str(uuid.uuid4()),
                app=match["app"],
                path=match["sub"] or "",
                arguments=arguments,
                headers=request.headers,
                webhook_url=request.param("fal_webhook"),
                queue_polls=self.queue_polls if queued else 0,
                progress_polls=self.progress_polls if queued else 0,
                store=self.store,
                failure=self._pending_failures.popleft() if self._pending_failures else None,
            )
            self._jobs[job.request_id] = job
            self._changed.notify_all()
        return job

    def _submit(self, request: Request, match: re.Match[str]) -> Response:
        job = self._create_job(request, match, queued=True)
        body = {
            "status": "IN_QUEUE",
            "request_id": job.request_id,
            **self._urls(job),
            "queue_position": max(0, job.queue_polls),
        }
        return Response.json(200, body, [("x-fal-request-id", job.request_id)])

    def _run(self, request: Request, match: re.Match[str]) -> Response:
        job = self._create_job(request, match, queued=False)
        with self._lock:
            self._finish(job)
        return self._result_response(job)

    def _job(self, match: re.Match[str]) -> FalJob:
        with self._lock:
            job = self._jobs.get(match["rid"])
        if job is None or job.app != match["app"]:
            raise HTTPError(Response.json(404, {"detail": f"Request {match['rid']} not found"}))
        return job

    def _status(self, request: Request, match: re.Match[str]) -> Response:
        job = self._job(match)
        with_logs = (request.param("logs") or "").lower() in ("1", "true")
        self.tick()
        with self._lock:
            self._advance(job)
            body: dict[str, Any] = {"status": job.state, "request_id": job.request_id, **self._urls(job)}
            if job.state == "IN_QUEUE":
                body["queue_position"] = max(0, job.queue_polls - job.polls)
            else:
                body["logs"] = list(job.logs) if with_logs else None
            if job.state == "COMPLETED":
                body["metrics"] = {"inference_time": job.inference_time}
                if job.failure is not None and job.failure.status_error is not None:
                    body["error"] = job.failure.status_error
                    body["error_type"] = job.failure.error_type
        return Response.json(200 if job.state == "COMPLETED" else 202, body)

    def _advance(self, job: FalJob) -> None:
        if job.state == "COMPLETED":
            return
        job.polls += 1
        if job.polls <= job.queue_polls:
            return
        if job.polls <= job.queue_polls + job.progress_polls:
            if job.state == "IN_QUEUE":
                job.state = "IN_PROGRESS"
                job.started_at = time.time()
                self._log(job, "Starting LatentSync inference")
            step = job.polls - job.queue_polls
            self._log(job, f"Inference step {step}/{job.progress_polls}")
            return
        self._finish(job)

    def _log(self, job: FalJob, message: str, level: str = "INFO") -> None:
        job.logs.append({"message": message, "level": level, "source": "user", "timestamp": iso_now()})

    def _can_fetch(self, value: str) -> bool | None:
        if value.startswith("data:"):
            return self.store.resolve(value) is not None
        if value.startswith(self.url):
            return self.store.by_url(value) is not None
        return None

    def _finish(self, job: FalJob) -> None:
        """Complete a job: validate like the runner, then produce and store the output video."""
        if job.failure is None or job.failure.error_type != "request_timeout":  # only that one never started
            job.started_at = job.started_at or time.time()
        job.state = "COMPLETED"
        job.ended_at = time.time()
        job.inference_time = self.inference_time
        if job.failure is None and self.validate_inputs and job.app == "fal-ai/latentsync" and not job.path:
            errors = validate_fal_latentsync(job.arguments, self._can_fetch)
            if errors:
                job.failure = FalFailure(422, {"detail": errors})
        if job.failure is None:
            try:
                video = self.result_video(job) if callable(self.result_video) else self.result_video
                data = self._stand_in(job) if video is None else bytes(video)
            except Exception as exc:  # noqa: BLE001 - a raising callable is how tests make the model fail
                job.failure = FalFailure(
                    500, {"detail": str(exc), "error_type": "runner_server_error"}, "runner_server_error", str(exc)
                )
            else:
                job.output = self._store_bytes(
                    data, "output.mp4", "video/mp4", origin="output", **self._lifecycle(job.headers)
                )
                job.result = {
                    "video": {
                        "url": job.output.url,
                        "content_type": "video/mp4",
                        "file_name": job.output.name,
                        "file_size": job.output.size,
                    }
                }
                units = self.billable_units
                if units is None:
                    seconds = audio_seconds(job.input_bytes("audio_url") or b"")
                    job.billable_units = fal_billable_units_for(output_duration(seconds) if seconds else 0.4)
                else:
                    job.billable_units = float(units(job) if callable(units) else units)
        elif job.failure.billable_units is not None:
            job.billable_units = float(job.failure.billable_units)
        self._log(job, "Request failed" if job.failure else "Inference finished", "ERROR" if job.failure else "INFO")
        self._job_ended(job)
        self._changed.notify_all()

    def _stand_in(self, job: FalJob) -> bytes:
        """The input video looped or cut to the audio, with that audio; a tiny clip if either won't decode."""
        video, audio = job.input_bytes("video_url"), job.input_bytes("audio_url")
        made = lipsync_stand_in(video, audio) if video and audio else None
        return tiny_mp4() if made is None else made

    def _result_response(self, job: FalJob) -> Response:
        headers = [("x-fal-request-id", job.request_id)]
        if job.billable_units is not None:
            units = job.billable_units
            headers.append(("x-fal-billable-units", str(int(units)) if units.is_integer() else str(units)))
        if job.failure is not None:
            if job.failure.error_type:
                headers.append(("X-Fal-Error-Type", job.failure.error_type))
            if job.failure.error_type == "request_timeout":  # fact request-timeout-504
                headers.append(("X-Fal-Request-Timeout-Type", "user"))
            return Response.json(job.failure.status_code, job.failure.body, headers)
        return Response.json(200, job.result, headers)

    def _result(self, request: Request, match: re.Match[str]) -> Response:
        job = self._job(match)
        if job.state != "COMPLETED":
            return Response.json(400, {"detail": "Request is still in progress"})
        return self._result_response(job)

    def _cancel(self, request: Request, match: re.Match[str]) -> Response:
        rid, app = match["rid"], match["app"]
        with self._lock:
            job = self._jobs.get(rid)
            if job is None or job.app != app:
                outcome, code = "NOT_FOUND", 404
            elif job.state == "COMPLETED":
                outcome, code = "ALREADY_COMPLETED", 400
            else:
                outcome, code = "CANCELLATION_REQUESTED", 202
                job.cancelled = True
                units = 0.0 if job.state == "IN_QUEUE" else self.cancel_billable_units
                job.billable_units = None if units is None else float(units)
                job.failure = FalFailure(
                    499,
                    {"detail": "Request was cancelled", "error_type": "client_cancelled"},
                    "client_cancelled",
                    "Request was cancelled",
                )
                job.state, job.ended_at = "COMPLETED", time.time()
                self._log(job, "Request cancelled", "WARN")
                self._job_ended(job)  # facts.py: webhook-on-cancel (our reading: an ended request is delivered)
                self._changed.notify_all()
            self._cancellations.append(CancelRecord(rid, app, outcome))
        return Response.json(code, {"status": outcome})
