"""The ``wavespeed`` route: ``bytedance/latentsync`` on WaveSpeed AI, uploads through the official ``wavespeed``.

Facts, with sources and what is a guess: docs/wavespeed.md (checked 2026-12-01). The loop, deadline,
journal writes and ambiguity rules are the hosted template's; this module is WaveSpeed's single tries:

* ``upload``: ``wavespeed.Client.upload`` (its ticket + PUT protocol; it never retries an upload).
* ``submit``: one ``POST /api/v3/bytedance/latentsync`` of our own. The SDK's ``run()`` would poll on
  its own schedule and wrap every failure in ``RuntimeError``; a single request keeps the rules exact:
  no connection or a 4xx from WaveSpeed means nothing was created, anything else after sending is
  ambiguous.
* ``lookup``: WaveSpeed lists predictions (``POST /api/v3/predictions``) without their inputs; the
  template decides an ambiguous submit by creation time (one prediction in the window, held by no other
  job: adopted), with no bound (a miss stays ambiguous).
* ``poll``: ``GET /api/v3/predictions/{id}/result``; a failed task still answers HTTP 200.
* ``cancel``: WaveSpeed publishes no cancel; the template records that the job may still be billed.
* cost: $0.15 per started 5 s of output (the price book's rule), on the downloaded output's length.
"""

from __future__ import annotations

import io
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ...errors import AmbiguousSubmit, ProviderError, RouteError
from ...pricing import cost_by_rule, estimate_by_rule
from ...retry import (
    ErrorAnswer,
    StepFailure,
    classify_http,
    json_or_none,
    request_never_sent,
    request_timeout,
    retry_after_of,
)
from ...types import CostEstimate, JobRecord, LipSyncRequest, MediaInfo, MediaSource
from .. import upload_intents
from ..base import JobContext, RouteInfo
from ..hosted import CancelOutcome, HostedRoute, Output, Status
from ..hosted_lookup import Listed
from . import NAME, SETTINGS

if TYPE_CHECKING:
    import httpx
    import wavespeed

    from ...config import Credential, Settings

MODEL = "bytedance/latentsync"
REFUNDS = "https://wavespeed.ai/docs/refund-policy"

INFO = RouteInfo(
    name=NAME,
    description="WaveSpeed AI hosted model bytedance/latentsync (predictions API)",
    owner="WaveSpeed AI runs the model; ByteDance owns it",
    model=MODEL,
    model_version=f"{MODEL} (WaveSpeed does not publish which LatentSync release it serves)",
    billing_owner="the WaveSpeed account that owns WAVESPEED_API_KEY",
    uploads_media=True,
    upload_destination="WaveSpeed media storage (download URLs returned by its upload API)",
    retention="uploads and predictions (outputs included) are kept 7 days",
    retention_days=7.0,
    deletion="jobs delete removes the prediction through POST /api/v3/predictions/delete; uploads expire after 7 days",
    weights_licence="openrail++",
    weights_licence_source="https://huggingface.co/ByteDance/LatentSync-1.5",
    commercial_use_allowed=True,
    failure_billing="failures caused by the system, system errors and timeouts are refunded automatically within "
    "3 hours; invalid parameters (codes 1400-1402) are not; there is no cancel, so a job stopped at its deadline "
    "or cancelled runs on and a completed one is billed",
    failure_billing_source="https://wavespeed.ai/docs/refund-policy",
    support_path=[
        "https://wavespeed.ai/docs",
        "https://wavespeed.ai/docs/docs-api/bytedance/bytedance-latentsync",
        "https://github.com/bytedance/LatentSync/issues",
    ],
    credential_env=SETTINGS.credential_env,
    sdk_module="wavespeed",
    sdk_package="wavespeed",
    base_url_env=SETTINGS.base_url_env,
    default_base_url=SETTINGS.default_base_url,
    default_concurrency=4,
    install_extra="wavespeed",
    sources=[
        "https://wavespeed.ai/docs/docs-api/bytedance/bytedance-latentsync",
        "https://wavespeed.ai/docs/what-are-predictions",
        "https://wavespeed.ai/docs/refund-policy",
    ],
    parameters=[],  # the API takes audio and video only: no guidance scale, seed or loop mode
)

#: Seconds for one submit / poll / upload request (always cut to the job's deadline).
SUBMIT_TIMEOUT_S = 60.0
POLL_TIMEOUT_S = 30.0
UPLOAD_TIMEOUT_S = 120.0
#: Why a file an unanswered upload may have left stays (facts ``upload-no-delete`` and ``retention``).
UPLOAD_LEFT_OVER = "WaveSpeed documents no listing or delete for uploads; it deletes them after 7 days"
_STATES: dict[str, Literal["queued", "running", "succeeded", "failed", "cancelled"]] = {
    "created": "queued",
    "processing": "running",
    "completed": "succeeded",
    "failed": "failed",
    "timeout": "failed",
    "cancelled": "cancelled",
    "deleted": "failed",
}


class WaveSpeedRoute(HostedRoute):
    name: ClassVar[str] = NAME
    INFO: ClassVar[RouteInfo] = INFO
    CAN_CANCEL: ClassVar[bool] = False  # fact no-cancel

    def __init__(self, *, settings: Settings, credential: Credential | None) -> None:
        super().__init__(settings=settings, credential=credential)
        self.api_url = self.base_url() or str(SETTINGS.default_base_url)
        self._sdk_client: wavespeed.Client | None = None
        self._lock = threading.Lock()

    def estimate(self, request: LipSyncRequest, video: MediaInfo, audio: MediaInfo) -> CostEstimate:
        return estimate_by_rule(self.name, audio.duration)

    def output_lifetime(self, job: JobContext) -> tuple[float, str] | None:
        """WaveSpeed keeps predictions and their outputs 7 days (fact ``retention``)."""
        return 7 * 86400.0, "WaveSpeed keeps a prediction's output 7 days"

    def ambiguity_hint(self) -> str:
        return "your WaveSpeed predictions (wavespeed.ai dashboard, or POST /api/v3/predictions)"

    def _sdk(self) -> wavespeed.Client:
        with self._lock:
            if self._sdk_client is None:
                import wavespeed

                self._sdk_client = wavespeed.Client(
                    api_key=self.secret(), base_url=self.api_url, max_retries=0, max_connection_retries=0
                )
            return self._sdk_client

    def _http(self) -> httpx.Client:
        from ...download import _shared_client

        return _shared_client()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret()}"}

    # -- hooks -----------------------------------------------------------------------------------------
    def upload(self, job: JobContext, source: MediaSource) -> str:
        """Journalled before it leaves; an earlier one never answered is listed as possibly left (fact
        ``upload-no-delete``: WaveSpeed documents no listing or delete for uploads)."""
        return upload_intents.unfindable_upload(
            job, "WaveSpeed", UPLOAD_LEFT_OVER, lambda: self._upload_one(job, source)
        )

    def _upload_one(self, job: JobContext, source: MediaSource) -> str:
        timeout = max(1.0, min(UPLOAD_TIMEOUT_S, job.remaining()))
        try:
            if source.kind == "bytes":
                stream = io.BytesIO(source.data or b"")
                stream.name = source.name or "input.bin"
                return str(self._sdk().upload(stream, timeout=timeout))
            return str(self._sdk().upload(str(source.path), timeout=timeout))
        except (FileNotFoundError, ValueError) as exc:
            raise StepFailure(
                RouteError(f"cannot upload {source.describe()}: {exc}", route=self.name), retryable=False
            ) from None
        except Exception as exc:  # noqa: BLE001 - the SDK raises RuntimeError (or requests errors) for all else
            text = str(exc)
            if " 401" in text or "HTTP 401" in text:
                raise self._auth_failure(401) from None
            raise StepFailure(
                ProviderError(f"upload to WaveSpeed failed: {type(exc).__name__}: {text[:200]}", route=self.name),
                retryable=" 413" not in text,
            ) from None

    def submit(self, job: JobContext, inputs: dict[str, Any]) -> str:
        import httpx

        try:
            hook = {"webhook": job.webhook_url} if job.webhook_url else None  # facts.py: WEBHOOK
            response = self._http().post(
                f"{self.api_url}/api/v3/{MODEL}",
                json=inputs,
                headers=self._headers(),
                params=hook,
                timeout=request_timeout(job, SUBMIT_TIMEOUT_S),
            )
        except httpx.HTTPError as exc:
            if request_never_sent(exc):
                raise self._failure(f"could not connect ({type(exc).__name__}); nothing was submitted") from None
            raise self._ambiguous(f"{type(exc).__name__} after the request was sent") from None
        if response.status_code >= 400:
            raise self._http_failure(response, step="submit")
        data = _data(response)
        prediction_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(prediction_id, str) or not prediction_id:
            raise self._ambiguous(f"HTTP {response.status_code} without a prediction id")
        return prediction_id

    def lookup(self, job: JobContext, inputs: dict[str, Any], start: datetime, end: datetime) -> list[Listed]:
        """WaveSpeed's prediction listing (fact ``listing``): no inputs, so the template decides by creation time.
        Whether a prediction is listed from its creation is not documented, so no bound is taken: a miss
        leaves the submit ambiguous."""
        import httpx

        body = {"model": MODEL, "created_after": _iso(start), "created_before": _iso(end), "page": 1, "page_size": 100}
        try:
            response = self._http().post(
                f"{self.api_url}/api/v3/predictions",
                json=body,
                headers=self._headers(),
                timeout=request_timeout(job, POLL_TIMEOUT_S),
            )
        except httpx.HTTPError as exc:
            raise self._failure(f"listing predictions failed: {type(exc).__name__}") from None
        if response.status_code >= 400:
            raise self._http_failure(response, step="submit")
        data = _data(response)
        items = data.get("items") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise StepFailure(
                ProviderError("WaveSpeed's prediction list is not readable", route=self.name), retryable=False
            )
        found = [(item, _parse_time(item.get("created_at"))) for item in items if isinstance(item, dict)]
        return [Listed(str(item["id"]), at) for item, at in found if at is not None and item.get("id")]

    def poll(self, job: JobContext, request_id: str) -> Status:
        import httpx

        try:
            response = self._http().get(
                f"{self.api_url}/api/v3/predictions/{request_id}/result",
                headers=self._headers(),
                timeout=request_timeout(job, POLL_TIMEOUT_S),
            )
        except httpx.HTTPError as exc:
            raise self._failure(f"status poll failed: {type(exc).__name__}", request_id) from None
        if response.status_code >= 400:
            raise self._http_failure(response, step="wait", request_id=request_id)
        data = _data(response)
        status = data.get("status") if isinstance(data, dict) else None
        if not isinstance(data, dict) or status not in _STATES:
            raise self._failure(f"WaveSpeed answered an unknown status {status!r}", request_id)
        error = str(data.get("error") or "") or None
        code = data.get("code")
        state = _STATES[status]
        billed, basis = self._failure_billing(job, status, code) if state != "succeeded" else (0.0, "")
        return Status(
            state=state,
            message=str(status),
            data=data,
            billed=billed,
            error=f"{error} (code {code})" if error and code else error,
            billed_basis=basis,
        )

    def _failure_billing(self, job: JobContext, status: str, code: Any) -> tuple[float | None, str]:
        """WaveSpeed's refund policy (fact ``refunds``): invalid parameters (codes 1400-1402) are not refunded;
        system failures and timeouts are. Any other end is not covered: unknown (the worst case is recorded)."""
        if isinstance(code, int) and 1400 <= code <= 1402:
            price = self.estimate(job.request, job.video_info, job.audio_info).high
            return price, (
                f"invalid parameters (code {code}) are not refunded: ${price:.4f}, the price of the job "
                f"(our reading of the amount; {REFUNDS})"
            )
        if status == "timeout" or (isinstance(code, int) and (code >= 5000 or 500 <= code <= 599)):
            return 0.0, f"a system failure or timeout is refunded by WaveSpeed within 3 hours ({REFUNDS})"
        return None, f"WaveSpeed's refund policy does not say whether a {status} task (code {code}) is refunded"

    def cancel(self, job: JobContext, request_id: str) -> CancelOutcome:
        raise StepFailure(
            ProviderError(
                "WaveSpeed publishes no cancel API; the prediction runs to its end "
                "(a completed one is billed, a failed one refunded)",
                route=self.name,
                request_id=request_id,
            ),
            retryable=False,
        )

    def settle(self, job: JobContext, request_id: str, status: Status | None) -> tuple[float | None, str]:
        """A prediction that completed after a cancel (there is no cancel API) is billed: the job's price."""
        if status is not None and status.state == "succeeded":
            price = self.estimate(job.request, job.video_info, job.audio_info).high
            return price, f"it completed (WaveSpeed has no cancel) and is billed: ${price:.4f}, the job's price"
        return super().settle(job, request_id, status)

    def result(self, job: JobContext, request_id: str, status: Status) -> Output:
        outputs = status.data.get("outputs") if isinstance(status.data, dict) else None
        url = next((o for o in outputs or [] if isinstance(o, str) and o), None)
        if url is None:
            raise StepFailure(
                ProviderError("the prediction completed without an output URL", route=self.name, request_id=request_id),
                retryable=False,
            )
        return Output(url=url)

    RESULT_IS_A_REQUEST: ClassVar[bool] = False  # the output URL is in the last poll's answer

    def priced_after_download(self, job: JobContext, output: Output, path: Path) -> tuple[float | None, str]:
        from ...media import probe

        seconds = probe(MediaSource(kind="path", path=path), with_hash=False).duration
        cost = cost_by_rule(self.name, seconds)
        return cost, f"the price book's WaveSpeed rule on the {seconds:.2f} s output = ${cost:.4f}"

    def delete_remote(self, record: JobRecord) -> tuple[list[str], list[str]]:
        """For ``delete_job``: delete the prediction (and so its output) at WaveSpeed; uploads, and those a
        crash left unanswered, are listed as kept (no delete API for them)."""
        deleted, kept = self._delete_prediction(record)
        return deleted, [*kept, *upload_intents.unfindable_lines(record, "WaveSpeed", UPLOAD_LEFT_OVER)]

    def _delete_prediction(self, record: JobRecord) -> tuple[list[str], list[str]]:
        if record.provider_request_id is None or self.credential is None:
            return [], [f"{uri} (expires at WaveSpeed after 7 days)" for uri in record.uploaded_uris]
        target = f"prediction {record.provider_request_id}"
        if target in record.deleted:
            return [], []
        try:
            response = self._http().post(
                f"{self.api_url}/api/v3/predictions/delete",
                headers=self._headers(),
                json={"ids": [record.provider_request_id]},
                timeout=POLL_TIMEOUT_S,
            )
            body = json_or_none(response)  # fact delete-code: the official clients judge the body's code too
            done = response.status_code < 300 and isinstance(body, dict) and body.get("code") == 200
        except Exception:  # noqa: BLE001 - a failed delete is recorded, never fatal
            done = False
        kept = [f"{uri} (upload: expires at WaveSpeed after 7 days)" for uri in record.uploaded_uris]
        return ([target], kept) if done else ([], [f"{target} (delete failed; expires after 7 days)", *kept])

    # -- errors ----------------------------------------------------------------------------------------
    def _failure(self, message: str, request_id: str | None = None) -> StepFailure:
        return StepFailure(ProviderError(message, route=self.name, request_id=request_id), retryable=True)

    def _ambiguous(self, cause: str) -> StepFailure:
        return StepFailure(
            AmbiguousSubmit(
                f"the submit to WaveSpeed may or may not have created a prediction: {cause}", route=self.name
            ),
            retryable=False,
        )

    def _classified(self, answer: ErrorAnswer, step: str) -> StepFailure:
        name = self.credential.name if self.credential is not None else str(SETTINGS.credential_env)
        return classify_http(answer, route=self.name, provider="WaveSpeed", step=step, credential_name=name)

    def _auth_failure(self, status: int) -> StepFailure:
        return self._classified(ErrorAnswer(status, "the upload was refused"), "upload")

    def _http_failure(self, response: httpx.Response, *, step: str, request_id: str | None = None) -> StepFailure:
        """Read WaveSpeed's ``{"code", "message"}`` error envelope for the one classifier."""
        body = json_or_none(response)
        detail = " ".join(str(body.get("message") if isinstance(body, dict) else response.text[:200]).split())
        status = response.status_code
        answer = ErrorAnswer(status, detail, request_id, retry_after_of(response), input_rejected=status in (400, 413))
        return self._classified(answer, step)


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _data(response: httpx.Response) -> Any:
    """The ``data`` of WaveSpeed's ``{"code", "message", "data"}`` envelope."""
    body = json_or_none(response)
    return body.get("data") if isinstance(body, dict) else None
