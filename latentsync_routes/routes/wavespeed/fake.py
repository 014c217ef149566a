"""``FakeWaveSpeed``: a loopback server speaking WaveSpeed AI's v3 REST API, for ``bytedance/latentsync``.

Point the official client at it with ``wavespeed.Client(api_key=..., base_url=fake.url)`` (or
:meth:`FakeWaveSpeed.client`): the SDK joins ``/api/v3/...`` onto ``base_url``, and WaveSpeed serves those
paths at its origin's root, so the fake does too and no patching is needed. Sources, dates and what is
a guess: ``docs/wavespeed.md``.

Behaviour a client depends on, reproduced here:

* Every JSON reply is the envelope ``{"code", "message", "data"}``; errors too, with ``code`` equal to
  the HTTP status (the SDK checks ``status_code != 200`` and, for uploads, ``code != 200``).
* ``POST /api/v3/{owner}/{model}`` creates a prediction (``data.status == "created"``, ``data.urls.get``
  pointing at ``/result``). The official SDK (>= 1.0.10) never re-sends this POST, so a lost reply is an
  ambiguous create; :meth:`FakeWaveSpeed.predictions` is what a real account would hold.
* A prediction advances one step per result GET (``/api/v3/predictions/{id}/result`` or ``.../{id}``):
  ``created_polls`` x ``created``, ``processing_polls`` x ``processing``, then ``completed``/``failed``. A
  failed task is still HTTP 200; the failure is ``data.status``/``data.error``/``data.code`` (1xxx/5xxx).
* Uploads: the presigned two-step ticket the SDK uses (``POST /api/v3/media/uploads`` -> ``PUT``, no
  ``Authorization``) and the documented one-step multipart ``POST /api/v3/media/upload/binary`` (``file``).
* ``POST``/``GET /api/v3/predictions`` lists predictions newest first (7-day window; no inputs in items),
  ``POST /api/v3/predictions/delete`` deletes, ``/api/v3/model/pricing`` quotes. WaveSpeed documents no
  cancel endpoint, so the fake has none.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from ...testing._faults import Fault
from ...testing._lipsync_media import audio_seconds, lipsync_stand_in
from ...testing._media import tiny_mp4
from ...testing._polled import PolledJobs
from ...testing._storage import FileStore, StoredFile, new_id
from ...testing._wire import Headers, HTTPError, Request, Response, Route, route
from .fake_api import WaveSpeedAPIServer
from .fake_webhooks import WaveSpeedWebhooks

PredictionStatus = Literal["created", "processing", "completed", "failed", "deleted"]
#: Models served by default: both WaveSpeed listings of LatentSync take exactly ``audio`` and ``video``.
LATENTSYNC_MODELS = ("bytedance/latentsync", "wavespeed-ai/latentsync")
_ALLOWED_INPUTS = frozenset({"audio", "video", "enable_sync_mode"})
_TERMINAL = ("completed", "failed", "deleted")


@dataclass
class WaveSpeedFaults:
    """Per-endpoint fault queues; each request pops the first fault of its endpoint."""

    submit: list[Fault] = field(default_factory=list)
    result: list[Fault] = field(default_factory=list)
    list_predictions: list[Fault] = field(default_factory=list)
    delete: list[Fault] = field(default_factory=list)
    pricing: list[Fault] = field(default_factory=list)
    upload_ticket: list[Fault] = field(default_factory=list)
    upload_put: list[Fault] = field(default_factory=list)
    upload_binary: list[Fault] = field(default_factory=list)
    file_download: list[Fault] = field(default_factory=list)


@dataclass(eq=False)
class WaveSpeedPrediction:
    """One prediction (WaveSpeed says "task") as the fake provider holds it: one job an account pays for.

    ``cost_usd`` is set when it ends: the listed price when completed, 0 when failed (WaveSpeed refunds
    failed requests automatically), None while running or once deleted before ending.
    """

    id: str
    model: str
    input: dict[str, Any]
    headers: Headers
    webhook: str | None
    created_polls: int
    processing_polls: int
    store: FileStore = field(repr=False)
    status: PredictionStatus = "created"
    polls: int = 0
    outputs: list[str] = field(default_factory=list)
    error: str = ""
    code: int = 0
    failure: tuple[str, int] | None = None  # (error, code) to fail with
    output_file: StoredFile | None = None
    audio_seconds: float | None = None
    inference_ms: int = 0
    cost_usd: float | None = None
    created_at: float = field(default_factory=time.time)

    @property
    def terminal(self) -> bool:
        return self.status in _TERMINAL

    def input_bytes(self, name: str) -> bytes | None:
        """Bytes of input ``name`` when it is a file uploaded to this fake (or a ``data:`` URI)."""
        return self.store.resolve(self.input.get(name))


class FakeWaveSpeed(PolledJobs[WaveSpeedPrediction], WaveSpeedWebhooks, WaveSpeedAPIServer):
    """Loopback WaveSpeed: submit, result polling, list/delete, pricing, both uploads, file serving.

    Args:
        expected_key: if set, ``/api/v3`` calls need ``Authorization: Bearer <key>`` (401 otherwise).
        created_polls / processing_polls: result GETs answered ``created``, then ``processing``, before a
            prediction ends (read at creation).
        result_video: output mp4 bytes, or ``callable(prediction) -> bytes`` (raising fails the prediction,
            code 5000). Default: the uploaded video ping-ponged to the uploaded audio's length with that
            audio (``_lipsync_media``), else a real 0.4 s clip.
        inference_ms: ``data.timings.inference`` of an ended prediction.
        models: model ids ``POST /api/v3/{model}`` accepts (404 otherwise).
        strict_inputs: 400 at submit for parameters the model does not declare (a guess, see the docs).
        accept_data_uris: whether ``data:`` inputs are fetched; if not, the task fails with code 1402.
        price_per_5s: the listed "$0.15 per 5 seconds" (see :meth:`price`).
        max_upload_bytes: upload tickets above this are refused (413).
    """

    provider = "wavespeed"

    def __init__(
        self,
        *,
        expected_key: str | None = None,
        created_polls: int = 1,
        processing_polls: int = 1,
        result_video: bytes | Callable[[WaveSpeedPrediction], bytes] | None = None,
        inference_ms: int = 4200,
        models: Sequence[str] = LATENTSYNC_MODELS,
        strict_inputs: bool = True,
        accept_data_uris: bool = False,
        price_per_5s: float = 0.15,
        max_upload_bytes: int = 200 * 1024 * 1024,
        **server_options: Any,
    ) -> None:
        self.created_polls = created_polls
        self.processing_polls = processing_polls
        self.result_video = result_video
        self.inference_ms = inference_ms
        self.models = set(models)
        self.strict_inputs = strict_inputs
        self.accept_data_uris = accept_data_uris
        self.price_per_5s = price_per_5s
        self.faults = WaveSpeedFaults()
        self._predictions: dict[str, WaveSpeedPrediction] = {}
        self._pending_failures: deque[tuple[str, int]] = deque()
        super().__init__(expected_key=expected_key, max_upload_bytes=max_upload_bytes, **server_options)

    # ----- inspection and control --------------------------------------------------------
    def fail_job(self, prediction_id: str | None = None, *, error: str = "Task failed", code: int = 1405) -> None:
        """Make a prediction end ``failed`` with ``error`` and ``data.code``; ``None`` means the next one created."""
        with self._lock:
            if prediction_id is None:
                self._pending_failures.append((error, code))
                return
            prediction = self._predictions[prediction_id]
            if prediction.terminal:
                raise ValueError(f"prediction {prediction_id} already {prediction.status}")
            prediction.failure = (error, code)

    def price(self, seconds: float | None) -> float:
        """The listed "$0.15 per 5 seconds", read as whole started 5 s units of the audio (= output)
        length, at least one unit; one unit when the length is unknown. The rounding is a guess."""
        units = max(1, math.ceil(seconds / 5 - 1e-9)) if seconds else 1
        return round(units * self.price_per_5s, 6)

    def client(self, **overrides: Any) -> Any:
        """An official ``wavespeed.Client`` pointed at this fake, fast to retry (imports ``wavespeed``)."""
        import wavespeed

        options: dict[str, Any] = {"api_key": self.expected_key or "fake-key", "base_url": self.url}
        return wavespeed.Client(**{**options, "retry_interval": 0.01, **overrides})

    # ----- server plumbing -------------------------------------------------------------
    def _build_routes(self) -> Sequence[Route]:
        pid = r"(?P<pid>[^/]+)"
        return [
            *self._api_routes(),
            *self._webhook_routes(),
            route("POST", r"/api/v3/predictions", "list_predictions", self._list),
            route("GET", r"/api/v3/predictions", "list_predictions", self._list),
            route("POST", r"/api/v3/predictions/delete", "delete", self._delete),
            route("GET", rf"/api/v3/predictions/{pid}(?:/result)?", "result", self._result),
            route("POST", r"/api/v3/model/pric(?:ing|e)", "pricing", self._pricing),
            route("POST", r"/api/v3/(?P<model>[^/]+/.+)", "submit", self._submit),
        ]

    # ----- predictions -------------------------------------------------------------------
    def _to_json(self, p: WaveSpeedPrediction) -> dict[str, Any]:
        return {
            "id": p.id,
            "model": p.model,
            "outputs": list(p.outputs),
            "urls": {"get": f"{self.url}/api/v3/predictions/{p.id}/result"},
            "has_nsfw_contents": [False] * len(p.outputs),
            "status": p.status,
            "created_at": _iso(p.created_at),
            "error": p.error,
            "code": p.code,
            "executionTime": p.inference_ms,
            "timings": {"inference": p.inference_ms},
        }

    def _submit(self, request: Request, match: re.Match[str]) -> Response:
        model = match["model"]
        if model not in self.models:
            raise HTTPError(self._error(404, f"model {model} not found"))
        body = self._body(request)
        problems = [f"{n} is required" for n in ("audio", "video") if not isinstance(body.get(n), str) or not body[n]]
        if self.strict_inputs:
            problems += [f"{n} is not a parameter of {model}" for n in sorted(set(body) - _ALLOWED_INPUTS)]
        if problems:
            raise HTTPError(self._error(400, "; ".join(problems)))
        with self._lock:
            p = WaveSpeedPrediction(
                id=secrets.token_hex(16),
                model=model,
                input={k: v for k, v in body.items() if k != "enable_sync_mode"},
                headers=request.headers,
                webhook=request.param("webhook"),
                created_polls=self.created_polls,
                processing_polls=self.processing_polls,
                store=self.store,
                failure=self._pending_failures.popleft() if self._pending_failures else None,
            )
            self._predictions[p.id] = p
            if body.get("enable_sync_mode") is True:  # sync mode: the POST returns the ended task
                self._finish(p)
            self._changed.notify_all()
            return self._ok(self._to_json(p))

    def _prediction(self, match: re.Match[str]) -> WaveSpeedPrediction:
        prediction = self._predictions.get(match["pid"])
        if prediction is None:
            raise HTTPError(self._error(404, f"prediction {match['pid']} not found"))
        return prediction

    def _result(self, request: Request, match: re.Match[str]) -> Response:
        with self._lock:
            p = self._prediction(match)
            if not p.terminal:
                p.polls += 1
                if p.polls > p.created_polls:
                    p.status = "processing"
                if p.polls > p.created_polls + p.processing_polls:
                    self._finish(p)
            return self._ok(self._to_json(p))

    def _list(self, request: Request, match: re.Match[str]) -> Response:
        query = self._body(request) if request.method == "POST" else {k: v[-1] for k, v in request.query.items()}
        try:
            page, size = int(query.get("page") or 1), int(query.get("page_size") or 100)
            after = _parse_iso(query["created_after"]) if query.get("created_after") else 0.0
            before = _parse_iso(query["created_before"]) if query.get("created_before") else math.inf
        except (TypeError, ValueError):
            raise HTTPError(self._error(400, "invalid page, page_size or date")) from None
        if page < 1 or not 1 <= size <= 100:
            raise HTTPError(self._error(400, "page must be >= 1 and page_size 1..100"))
        after = max(after, time.time() - 7 * 86400)  # only the last 7 days are kept
        with self._lock:
            found = [
                p
                for p in reversed(self._predictions.values())
                if p.status != "deleted"
                and after <= p.created_at <= before
                and query.get("model") in (None, p.model)
                and query.get("status") in (None, p.status)
            ]
            items = [self._to_json(p) for p in found[(page - 1) * size : page * size]]
        return self._ok({"page": page, "total": len(found), "items": items})

    def _delete(self, request: Request, match: re.Match[str]) -> Response:
        ids = self._body(request).get("ids")
        if not isinstance(ids, list) or not ids:
            raise HTTPError(self._error(400, "ids is required"))
        count = 0
        with self._lock:
            for p in (self._predictions.get(str(i)) for i in ids):
                if p is not None and p.status != "deleted":
                    if p.output_file is not None:
                        self.store.remove(p.output_file.id)
                    p.status, p.outputs, p.output_file, count = "deleted", [], None, count + 1
            self._changed.notify_all()
        return self._ok({"deleted_count": count})

    def _pricing(self, request: Request, match: re.Match[str]) -> Response:
        body = self._body(request)
        inputs = body.get("inputs")
        if body.get("model_id") not in self.models or not isinstance(inputs, dict):
            raise HTTPError(self._error(400, "a known model_id and an inputs object are required"))
        audio = self.store.resolve(inputs.get("audio"))
        quote = self.price(audio_seconds(audio) if audio else None)
        return self._ok({"model_id": body["model_id"], "unit_price": quote, "price": quote, "currency": "USD"})

    def _fetch_failure(self, p: WaveSpeedPrediction) -> tuple[str, int] | None:
        """Code 1402 for inputs the model could not fetch: a dead URL on this fake, or a refused data URI."""
        for name in ("video", "audio"):
            value = str(p.input.get(name))
            dead = value.startswith(self.url) and self.store.by_url(value) is None
            if dead or (value.startswith("data:") and (not self.accept_data_uris or p.input_bytes(name) is None)):
                return (f"Failed to download {name} from the provided URL.", 1402)
        return None

    def _render(self, p: WaveSpeedPrediction) -> bytes:
        video, audio = p.input_bytes("video"), p.input_bytes("audio")
        p.audio_seconds = audio_seconds(audio) if audio else None
        if callable(self.result_video):
            return bytes(self.result_video(p))
        if self.result_video is not None:
            return bytes(self.result_video)
        made = lipsync_stand_in(video, audio) if video and audio else None
        return tiny_mp4() if made is None else made

    def _finish(self, p: WaveSpeedPrediction) -> None:
        """End a prediction like the model would: fail as configured, else store the output video."""
        p.inference_ms = self.inference_ms
        failure = p.failure or self._fetch_failure(p)
        if failure is None:
            try:
                data = self._render(p)
            except Exception as exc:  # noqa: BLE001 - a raising callable is how tests make the model fail
                failure = (str(exc), 5000)
        if failure is not None:  # fact refunds: invalid parameters (1400-1402) are not refunded, the rest are
            p.status, (p.error, p.code) = "failed", failure
            p.cost_usd = self.price(p.audio_seconds) if 1400 <= p.code <= 1402 else 0.0
        else:
            file_id = new_id(32).lower()
            p.output_file = self.store.save_bytes(
                data,
                file_id=file_id,
                name=f"{file_id}.mp4",
                content_type="video/mp4",
                url=f"{self.url}/output/{file_id}.mp4",
                origin="output",
            )
            p.status, p.outputs, p.cost_usd = "completed", [p.output_file.url], self.price(p.audio_seconds)
        self._job_ended(p, self._to_json(p))
        self._changed.notify_all()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_iso(text: Any) -> float:
    value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
