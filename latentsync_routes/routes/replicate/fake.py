"""``FakeReplicate``: a loopback server speaking Replicate's HTTP API (predictions, models, files).

Point the real client at it with ``replicate.Client(api_token=..., base_url=fake.url)``
(or ``REPLICATE_BASE_URL``); no patching is needed.

Behaviour the real client depends on, reproduced here:

* ``POST /v1/predictions`` answers **201** and needs ``version``; inputs are checked
  against the version's OpenAPI ``Input`` schema (422 problem+json with
  ``invalid_fields``). With ``Prefer: wait[=N]`` the request blocks, and if the
  prediction is still running when the window closes it is returned as
  ``starting``, never ``processing``: replicate 1.0.7's ``run()`` skips polling
  for anything but ``starting`` and would return ``None``.
* ``POST /v1/models/{owner}/{name}/predictions`` is 404 for community models such
  as ``bytedance/latentsync`` (list official ones in ``official_models``).
* Predictions advance one step per ``GET`` (``starting`` → ``processing`` →
  ``succeeded``/``failed``), with ``logs``, ``error`` and ``metrics.predict_time``
  (also on failed and on canceled-while-processing predictions, which are billed).
* Outputs are served from ``{url}/delivery/...``. replicate 1.0.7 wraps only
  ``https:`` and ``data:`` outputs in ``FileOutput``, so an ``http://`` loopback URL
  comes back as a plain ``str``; pass ``output_url_style="data"`` to get a
  ``FileOutput`` from ``run()`` instead.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ...testing._faults import Fault
from ...testing._lipsync_media import audio_seconds, lipsync_stand_in
from ...testing._media import tiny_mp4
from ...testing._polled import PolledJobs
from ...testing._storage import FileStore, StoredFile, new_id
from ...testing._wire import Headers, HTTPError, Request, Response, Route, iso_now, route
from .fake_api import ReplicateAPIServer, ReplicateVersion
from .fake_schemas import validate_replicate_input
from .fake_webhooks import ReplicateWebhooks

PredictionStatus = Literal["starting", "processing", "succeeded", "failed", "canceled"]
_TERMINAL = ("succeeded", "failed", "canceled")
_MODEL = r"(?P<owner>[^/]+)/(?P<name>[^/]+)"


@dataclass
class ReplicateFaults:
    """Per-endpoint fault queues; each request pops the first fault of its endpoint."""

    create: list[Fault] = field(default_factory=list)
    model_create: list[Fault] = field(default_factory=list)
    get: list[Fault] = field(default_factory=list)
    list_predictions: list[Fault] = field(default_factory=list)
    cancel: list[Fault] = field(default_factory=list)
    model: list[Fault] = field(default_factory=list)
    version: list[Fault] = field(default_factory=list)
    versions_list: list[Fault] = field(default_factory=list)
    file_create: list[Fault] = field(default_factory=list)
    file_get: list[Fault] = field(default_factory=list)
    file_list: list[Fault] = field(default_factory=list)
    file_delete: list[Fault] = field(default_factory=list)
    file_download: list[Fault] = field(default_factory=list)
    output_download: list[Fault] = field(default_factory=list)


@dataclass(eq=False)
class ReplicatePrediction:
    """One prediction as the fake provider holds it (one per billed provider job)."""

    id: str
    model: str
    version: str
    input: dict[str, Any]
    headers: Headers
    webhook: str | None
    processing_polls: int
    starting_polls: int
    store: FileStore = field(repr=False)
    status: PredictionStatus = "starting"
    polls: int = 0
    output: Any = None
    error: str | None = None
    logs: str = ""
    predict_time: float | None = None
    failure: tuple[str, str | None] | None = None  # (error, logs) to fail with
    output_file: StoredFile | None = None
    created_at: str = field(default_factory=iso_now)
    started_at: str | None = None
    completed_at: str | None = None
    created_monotonic: float = field(default_factory=time.monotonic)

    @property
    def terminal(self) -> bool:
        return self.status in _TERMINAL

    def input_bytes(self, name: str) -> bytes | None:
        """Bytes of input ``name`` when it is a ``data:`` URI or a file uploaded to this fake."""
        return self.store.resolve(self.input.get(name))


class FakeReplicate(PolledJobs[ReplicatePrediction], ReplicateWebhooks, ReplicateAPIServer):
    """Loopback Replicate API: predictions, models/versions, files, output delivery.

    Args:
        expected_token: if set, ``/v1`` calls need ``Authorization: Bearer <token>`` (401 otherwise).
        starting_polls / processing_polls: GETs answered ``starting``, then ``processing``,
            before a prediction finishes (read at creation).
        predict_time: ``metrics.predict_time`` in seconds, or ``callable(prediction)``. Default: the price
            book's run-time model (its mid band) for the output's length, so estimate and bill agree.
        default_wait_s: how long a bare ``Prefer: wait`` blocks (real: 60 s; small here).
        max_wait_s: cap for ``Prefer: wait=N``.
        complete_within_wait: with ``Prefer: wait``, finish the prediction inside the
            window (a fast model) instead of returning ``starting``.
        versions: known versions by id (default: the two ``bytedance/latentsync`` ones).
        latest_versions: ``{"owner/name": version_id}`` for ``GET /v1/models/...``
            (default: the newest known version of each model).
        official_models: models accepting ``POST /v1/models/{o}/{n}/predictions``.
        result_video: output mp4 bytes, or ``callable(prediction) -> bytes`` (raising
            fails the prediction with that message). Default: the input video looped or cut to
            the audio, with that audio (not lip-synced); a 0.4 s clip if an input won't decode.
        output_url_style: ``"http"`` (served URL, a ``str`` in replicate 1.0.7) or ``"data"``.
        validate_inputs: 422 on schema violations at create time.
    """

    provider = "replicate"

    def __init__(
        self,
        *,
        expected_token: str | None = None,
        starting_polls: int = 0,
        processing_polls: int = 1,
        predict_time: float | Callable[[ReplicatePrediction], float] | None = None,
        default_wait_s: float = 0.25,
        max_wait_s: float = 60.0,
        complete_within_wait: bool = False,
        versions: Mapping[str, ReplicateVersion] | None = None,
        latest_versions: Mapping[str, str] | None = None,
        official_models: Sequence[str] = (),
        result_video: bytes | Callable[[ReplicatePrediction], bytes] | None = None,
        output_url_style: Literal["http", "data"] = "http",
        validate_inputs: bool = True,
        **server_options: Any,
    ) -> None:
        self.starting_polls = starting_polls
        self.processing_polls = processing_polls
        self.predict_time = predict_time
        self._rule_times: dict[str, float] = {}
        self.default_wait_s = default_wait_s
        self.max_wait_s = max_wait_s
        self.complete_within_wait = complete_within_wait
        self.result_video = result_video
        self.output_url_style = output_url_style
        self.validate_inputs = validate_inputs
        self.faults = ReplicateFaults()
        self._predictions: dict[str, ReplicatePrediction] = {}
        self._pending_failures: deque[tuple[str, str | None]] = deque()
        super().__init__(
            expected_token=expected_token,
            versions=versions,
            latest_versions=latest_versions,
            official_models=official_models,
            **server_options,
        )

    # ----- inspection and control --------------------------------------------------------
    def fail_job(
        self, prediction_id: str | None = None, *, error: str = "CUDA out of memory", logs: str | None = None
    ) -> None:
        """Make a prediction end ``failed`` with ``error``; ``None`` means the next one created."""
        with self._lock:
            if prediction_id is None:
                self._pending_failures.append((error, logs))
                return
            prediction = self._predictions[prediction_id]
            if prediction.terminal:
                raise ValueError(f"prediction {prediction_id} already {prediction.status}")
            prediction.failure = (error, logs)

    # ----- server plumbing -------------------------------------------------------------
    def _build_routes(self) -> Sequence[Route]:
        pid = r"(?P<pid>[^/]+)"
        return [
            route("POST", r"/v1/predictions", "create", self._create),
            route("GET", r"/v1/predictions", "list_predictions", self._list),
            route("GET", rf"/v1/predictions/{pid}", "get", self._get),
            route("POST", rf"/v1/predictions/{pid}/cancel", "cancel", self._cancel),
            route("POST", rf"/v1/models/{_MODEL}/predictions", "model_create", self._model_create),
            *self._api_routes(),
            *self._webhook_routes(),
        ]

    # ----- predictions -----------------------------------------------------------------
    def _to_json(self, p: ReplicatePrediction, *, status: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": p.id,
            "model": p.model,
            "version": p.version,
            "input": p.input,
            "logs": p.logs,
            "output": p.output,
            "data_removed": False,
            "error": p.error,
            "status": status or p.status,
            "source": "api",
            "created_at": p.created_at,
            "started_at": p.started_at,
            "completed_at": p.completed_at,
            "urls": {"get": f"{self.url}/v1/predictions/{p.id}", "cancel": f"{self.url}/v1/predictions/{p.id}/cancel"},
        }
        if p.webhook:
            body["webhook"] = p.webhook
        if p.predict_time is not None:
            total = round(time.monotonic() - p.created_monotonic + p.predict_time, 6)
            body["metrics"] = {"predict_time": p.predict_time, "total_time": total}
        return body

    def _prediction(self, match: re.Match[str]) -> ReplicatePrediction:
        with self._lock:
            prediction = self._predictions.get(match["pid"])
        if prediction is None:
            raise self._not_found()
        return prediction

    def _start(self, request: Request, version: ReplicateVersion, inputs: Any) -> Response:
        inputs = {} if inputs is None else inputs
        if self.validate_inputs or not isinstance(inputs, dict):
            problems = validate_replicate_input(version.input_schema, inputs)
            if problems:
                detail = "".join(f"- {p['field']}: {p['description']}\n" for p in problems)
                body = {"title": "Input validation failed", "detail": detail, "status": 422, "invalid_fields": problems}
                return Response.json(422, body, content_type="application/problem+json")
        body = request.json() or {}
        with self._lock:
            prediction = ReplicatePrediction(
                id="".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(26)),
                model=version.model,
                version=version.id,
                input=inputs,
                headers=request.headers,
                webhook=hook if isinstance(hook := body.get("webhook"), str) else None,
                processing_polls=self.processing_polls,
                starting_polls=self.starting_polls,
                store=self.store,
                failure=self._pending_failures.popleft() if self._pending_failures else None,
            )
            self._predictions[prediction.id] = prediction
            self._changed.notify_all()
        return self._maybe_wait(request, prediction)

    def _maybe_wait(self, request: Request, prediction: ReplicatePrediction) -> Response:
        prefer = re.search(r"\bwait(?:=(\d+))?", request.headers.get("Prefer", ""))
        if prefer is None:
            return Response.json(201, self._to_json(prediction))
        window = min(float(prefer.group(1)) if prefer.group(1) else self.default_wait_s, self.max_wait_s)
        deadline = time.monotonic() + window
        with self._changed:
            if self.complete_within_wait and not prediction.terminal:
                self._finish(prediction)
            while not prediction.terminal and not self._stopping.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(min(left, 0.1))
            body = self._to_json(prediction, status=None if prediction.terminal else "starting")
        return Response.json(201, body, [("Preference-Applied", prefer.group(0))])

    def _create(self, request: Request, match: re.Match[str]) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise HTTPError(self._error(400, "Request body must be a JSON object"))
        ref = body.get("version")
        if not ref:
            problem = {"type": "required", "field": "version", "description": "version is required"}
            raise HTTPError(
                Response.json(
                    422,
                    {
                        "title": "Invalid request",
                        "detail": "- version: version is required\n",
                        "status": 422,
                        "invalid_fields": [problem],
                    },
                    content_type="application/problem+json",
                )
            )
        version_id = str(ref).rsplit(":", 1)[-1]
        if "/" in str(ref) and ":" not in str(ref) and ref in self.official_models:
            version_id = self.latest_versions.get(str(ref), "")
        version = self.versions.get(version_id)
        if version is None:
            raise HTTPError(
                self._error(
                    422, "The specified version does not exist (or perhaps you don't have permission to use it?)"
                )
            )
        return self._start(request, version, body.get("input"))

    def _model_create(self, request: Request, match: re.Match[str]) -> Response:
        model = f"{match['owner']}/{match['name']}"
        version = self.versions.get(self.latest_versions.get(model, ""))
        if model not in self.official_models or version is None:
            raise self._not_found()
        return self._start(request, version, (request.json() or {}).get("input"))

    def _get(self, request: Request, match: re.Match[str]) -> Response:
        prediction = self._prediction(match)
        with self._lock:
            self._advance(prediction)
            return Response.json(200, self._to_json(prediction))

    def _list(self, request: Request, match: re.Match[str]) -> Response:
        offset = int(request.param("cursor") or 0)
        with self._lock:
            newest_first = list(reversed(self._predictions.values()))
            page = [self._to_json(p) for p in newest_first[offset : offset + 100]]
        more = offset + 100 < len(newest_first)
        return Response.json(
            200,
            {
                "previous": None,
                "results": page,
                "next": f"{self.url}/v1/predictions?cursor={offset + 100}" if more else None,
            },
        )

    def _cancel(self, request: Request, match: re.Match[str]) -> Response:
        prediction = self._prediction(match)
        with self._lock:
            if not prediction.terminal:
                if prediction.status == "processing":
                    done = max(1, prediction.polls - prediction.starting_polls)
                    prediction.predict_time = round(
                        self._predict_time(prediction) * done / (prediction.processing_polls + 1), 6
                    )
                prediction.status = "canceled"
                prediction.completed_at = iso_now()
                self._job_ended(prediction, self._to_json(prediction))  # facts.py: webhook (completed: canceled)
                self._changed.notify_all()
            return Response.json(200, self._to_json(prediction))

    def _predict_time(self, prediction: ReplicatePrediction) -> float:
        value = self.predict_time
        if value is None:  # the price book's model of run time (mid band) on the output's length, once
            if prediction.id not in self._rule_times:
                from ...pricing import estimate_replicate

                seconds = audio_seconds(prediction.input_bytes("audio") or b"")
                self._rule_times[prediction.id] = float(estimate_replicate(seconds or 0.4).expected_wall_seconds or 0)
            return self._rule_times[prediction.id]
        return float(value(prediction) if callable(value) else value)

    def _advance(self, p: ReplicatePrediction) -> None:
        if p.terminal:
            return
        p.polls += 1
        if p.polls <= p.starting_polls:
            return
        if p.polls <= p.starting_polls + p.processing_polls:
            if p.status == "starting":
                p.status, p.started_at = "processing", iso_now()
                seed = p.input.get("seed")
                seed = seed if isinstance(seed, int) and seed > 0 else secrets.randbelow(65536)
                p.logs += f"Using seed: {seed}\n"
            steps = p.input.get("inference_steps")
            steps = steps if isinstance(steps, int) and steps > 0 else 20
            done = steps * (p.polls - p.starting_polls) // (p.processing_polls + 1)
            p.logs += f"{100 * done // steps:3d}%|{'#' * (10 * done // steps):10s}| {done}/{steps}\n"
            return
        self._finish(p)

    def _finish(self, p: ReplicatePrediction) -> None:
        """End a prediction like the model would: fail as configured, else store the output video."""
        p.started_at = p.started_at or iso_now()
        p.predict_time = self._predict_time(p)
        p.completed_at = iso_now()
        failure = p.failure
        if failure is None and p.model == "bytedance/latentsync" and self.validate_inputs:
            missing = [n for n in ("video", "audio") if not p.input.get(n)]
            if missing:  # cog accepts None here; predict.py then fails writing its output
                failure = ("[Errno 2] No such file or directory: '/tmp/video_out.mp4'", None)
        if failure is None:
            try:
                video = self.result_video(p) if callable(self.result_video) else self.result_video
                data = self._stand_in(p) if video is None else bytes(video)
            except Exception as exc:  # noqa: BLE001 - a raising callable is how tests make the model fail
                failure = (str(exc), None)
        if failure is not None:
            p.status, p.error = "failed", failure[0]
            p.logs += failure[1] if failure[1] is not None else f"Traceback (most recent call last):\n{failure[0]}\n"
        else:
            file_id = new_id(26).lower()
            p.output_file = self.store.save_bytes(
                data, file_id=file_id, name="video_out.mp4", content_type="video/mp4",
                url=f"{self.url}/delivery/xezq/{file_id}/video_out.mp4", origin="output",
            )  # fmt: skip
            p.output = (
                p.output_file.url
                if self.output_url_style == "http"
                else "data:video/mp4;base64," + base64.b64encode(data).decode()
            )
            p.status = "succeeded"
        self._job_ended(p, self._to_json(p))
        self._changed.notify_all()

    def _stand_in(self, p: ReplicatePrediction) -> bytes:
        """The input video looped or cut to the audio, with that audio; a tiny clip if either won't decode."""
        video, audio = p.input_bytes("video"), p.input_bytes("audio")
        made = lipsync_stand_in(video, audio) if video and audio else None
        return tiny_mp4() if made is None else made

    def _run_count(self) -> int:
        return len(self._predictions)
