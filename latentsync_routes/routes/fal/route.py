"""The ``fal`` route: ``fal-ai/latentsync`` on fal's queue, driven by the official ``fal-client`` 1.0.3.

The loop, deadline, journal and ambiguity rules are the hosted template's (:mod:`..hosted`); this module
is fal's single tries of each step. The submit is one ``POST`` (fal-client's ``submit`` retries POSTs,
which could bill twice); polls, the result and the cancel are single requests to URLs built from the
request id on the configured origin, so the key never goes to a host an answer names. The submit and
every upload carry fal's retention headers (:mod:`.platform`); costs: :mod:`.billing`; errors:
:mod:`.errors`; one origin for every fal host: :mod:`.hosts`.
"""

from __future__ import annotations

import math
import mimetypes
import threading
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ...errors import AmbiguousSubmit, ProviderInputRejected, RouteError
from ...pricing import estimate_fal, price_book
from ...retry import StepFailure, json_or_none, request_never_sent, request_timeout
from ...types import CostEstimate, JobRecord, LipSyncRequest, MediaInfo, MediaSource
from .. import upload_intents
from ..base import JobContext, ParameterSpec, RouteInfo, RouteOutput
from ..hosted import CancelOutcome, HostedRoute, Output, Status
from ..hosted_endings import count_worst_case
from ..hosted_lookup import Listed
from . import NAME, SETTINGS
from .billing import keep_units, price_output, settle_from_result
from .billing_events import Charge, charge_for, record_charge
from .errors import UNREPORTED_422, billable_units, http_failure, transient
from .hosts import bound_to_deadlines, fal_hosts
from .platform import (
    FETCH_MARGIN_S,
    LIFECYCLE_HEADER,
    PLATFORM_URL,
    RESUME_WINDOW_S,
    UPLOADS_KEY,
    delete_for_record,
    lifetime_seconds,
    lookup_requests,
    retention_headers,
    sent_lifetime,
)
from .upload import upload_multipart

if TYPE_CHECKING:
    import fal_client
    import httpx

    from ...config import Credential, Settings


ENDPOINT = "fal-ai/latentsync"

INFO = RouteInfo(
    name=NAME,
    description="fal.ai hosted endpoint fal-ai/latentsync (queue API)",
    owner="fal (fal.ai) runs the endpoint; ByteDance owns the model",
    model=ENDPOINT,
    model_version=f"{ENDPOINT} (fal does not publish which LatentSync release it serves)",
    billing_owner="the fal account that owns FAL_KEY",
    uploads_media=True,
    upload_destination="fal CDN storage (v3.fal.media): public, unguessable URLs",
    retention=f"uploads expire on fal's CDN {FETCH_MARGIN_S // 60} min after the job's deadline, the output "
    f"{RESUME_WINDOW_S // 3600} h after it (so jobs resume can fetch it that long), each by "
    "X-Fal-Object-Lifecycle-Preference on its request, cut to the policy's retention cap; request payloads are "
    "not stored (X-Fal-Store-IO: 0); the CDN URLs are public until they expire or jobs delete deletes them",
    retention_days=(1800 + RESUME_WINDOW_S) / 86400,  # the default deadline's; FalRoute.info() uses the settings
    retention_control="X-Fal-Object-Lifecycle-Preference and X-Fal-Store-IO: 0 on the submit and every upload",
    deletion="jobs delete calls fal's Delete Request Payloads (payloads and output files; an admin key is "
    "needed); input uploads have no delete API and expire by their lifecycle",
    weights_licence="openrail++",
    weights_licence_source="https://huggingface.co/ByteDance/LatentSync-1.5",
    commercial_use_allowed=True,
    failure_billing="server errors (HTTP 5xx) and queue time are never charged; invalid inputs (422) may be "
    "charged if a runner spent GPU time; a cancelled running request may run on and be billed",
    failure_billing_source="https://docs.fal.ai/documentation/model-apis/pricing",
    support_path=["https://docs.fal.ai", "https://fal.ai/support", "https://github.com/bytedance/LatentSync/issues"],
    credential_env=SETTINGS.credential_env,
    sdk_module="fal_client",
    sdk_package="fal-client",
    base_url_env=SETTINGS.base_url_env,
    default_concurrency=2,
    install_extra="fal",
    sources=[
        "https://fal.ai/models/fal-ai/latentsync/llms.txt",
        "https://docs.fal.ai/model-apis/payloads",
        "https://docs.fal.ai/documentation/model-apis/media-expiration",
    ],
    parameters=[
        ParameterSpec(name="guidance_scale", kind="float", minimum=1.0, maximum=2.0, default=1.0),
        ParameterSpec(name="seed", kind="int"),
        ParameterSpec(name="loop_mode", kind="str", choices=["pingpong", "loop"]),
    ],
)


#: Seconds for one submit POST / status, result or cancel request (module constants, so tests can shrink them);
#: inputs above STREAM_ABOVE_BYTES go up as a streamed multipart upload (fal-client would hold them in memory).
SUBMIT_TIMEOUT_S, POLL_TIMEOUT_S, CANCEL_TIMEOUT_S = 60.0, 30.0, 10.0
STREAM_ABOVE_BYTES = 20 * 1024 * 1024
#: fal's time-to-start bound, sent on the submit: a request not started by then never runs and is not billed
REQUEST_TIMEOUT_HEADER = "X-Fal-Request-Timeout"
#: The longest a started fal-ai/latentsync request runs (fact ``longest-run``, our reading: fal documents no
#: limit for this endpoint, so a long one is assumed); bounds when an ambiguous submit can be decided.
LONGEST_RUN_S = 3600.0
#: Why a file an unanswered upload may have left stays (facts ``lifecycle`` and ``uploads-no-delete``).
UPLOAD_LEFT_OVER = "no fal call lists or deletes an upload; it expires as the lifecycle sent with it asks"


def start_timeout(job: JobContext) -> int:
    """The time-to-start bound a submit sends: what is left of the job's deadline (a request that has not
    started by then is of no use to it), in whole seconds."""
    return max(1, math.ceil(job.remaining()))


_STATES: dict[str, Literal["queued", "running", "succeeded"]] = {
    "IN_QUEUE": "queued",
    "IN_PROGRESS": "running",
    "COMPLETED": "succeeded",
}


class FalRoute(HostedRoute):
    name: ClassVar[str] = NAME
    INFO: ClassVar[RouteInfo] = INFO
    INPUT_NAMES: ClassVar[tuple[str, str]] = ("video_url", "audio_url")

    def __init__(self, *, settings: Settings, credential: Credential | None) -> None:
        super().__init__(settings=settings, credential=credential)
        self._sync: fal_client.SyncClient | None = None
        self._lock = threading.Lock()
        self._events_refused: str | None = None  # why fal refused its billing events to this key, once seen

    def info(self) -> RouteInfo:
        """The facts, with the lifetime this configuration sends (default deadline) as ``retention_days``."""
        lifetime = lifetime_seconds(self.settings, self.settings.deadline_seconds, output=True)
        text = f"{INFO.retention}; with the default deadline the output's lifetime sent is {lifetime} s"
        return INFO.model_copy(update={"retention_days": lifetime / 86400, "retention": text})

    def estimate(self, request: LipSyncRequest, video: MediaInfo, audio: MediaInfo) -> CostEstimate:
        return estimate_fal(audio.duration)

    def ambiguity_hint(self) -> str:
        return f"your fal request history for {ENDPOINT} (fal.ai dashboard, Requests)"

    def execute(self, job: JobContext) -> RouteOutput:
        with fal_hosts(self.base_url()):
            return super().execute(job)

    def cancel_job(self, job: JobContext) -> str:
        with fal_hosts(self.base_url()):
            return super().cancel_job(job)

    def check_once(self, job: JobContext) -> str:
        with fal_hosts(self.base_url()):
            return super().check_once(job)

    def _sdk(self) -> fal_client.SyncClient:
        """The route's own fal-client ``SyncClient`` (one per route, so its CDN token manager is ours)."""
        with self._lock:
            if self._sync is None:
                import fal_client

                sync = fal_client.SyncClient(key=self.secret(), default_timeout=SUBMIT_TIMEOUT_S)
                bound_to_deadlines(sync)
                self._sync = sync
            return self._sync

    def _http(self) -> httpx.Client:
        return self._sdk()._client

    def _url(self, request_id: str, suffix: str = "") -> str:
        """A queue URL on the configured origin, built from the request id (never one the server named)."""
        import fal_client.client

        return f"{fal_client.client.QUEUE_URL_FORMAT}{ENDPOINT}/requests/{request_id}{suffix}"

    def _failure(self, response: httpx.Response, *, step: str, request_id: str | None = None) -> StepFailure:
        return http_failure(
            response,
            step=step,
            credential_name=self.credential.name if self.credential else "FAL_KEY",
            request_id=request_id,
        )

    def _retention(self, job: JobContext, *, output: bool = False) -> tuple[int, dict[str, str]]:
        """The lifetime for what this job sends now (an upload, or the submit whose output follows it), and
        its headers; the record keeps what was sent (the uploads' lifecycle under ``UPLOADS_KEY``)."""
        lifetime = lifetime_seconds(self.settings, job.remaining(), output=output)
        headers = retention_headers(lifetime)
        sent = dict(headers) if output else {UPLOADS_KEY: headers[LIFECYCLE_HEADER]}
        if any(job.record.retention_sent.get(k) != v for k, v in sent.items()):
            job.mark(retention_sent={**job.record.retention_sent, **sent})
        return lifetime, headers

    def output_lifetime(self, job: JobContext) -> tuple[float, str] | None:
        """The lifetime the submit asked for (fact ``lifecycle``): fal deletes the output that long after
        making it."""
        seconds = sent_lifetime(job.record)
        if seconds is None:
            return None
        return float(seconds), f"as asked at submit: {LIFECYCLE_HEADER} {seconds} s after it was made"

    # -- upload ----------------------------------------------------------------------------------------
    def upload(self, job: JobContext, source: MediaSource) -> str:
        """Journalled before it leaves; an earlier one never answered is listed as possibly left (fal
        documents no listing or delete for uploads: it expires as the lifecycle it was sent with asks)."""
        return upload_intents.unfindable_upload(job, "fal", UPLOAD_LEFT_OVER, lambda: self._upload_one(job, source))

    def _upload_one(self, job: JobContext, source: MediaSource) -> str:
        import fal_client
        import httpx

        sync = self._sdk()
        lifecycle = fal_client.StorageSettings(expires_in=self._retention(job)[0])
        try:
            if source.kind == "bytes":
                name = source.name or "input.bin"
                mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
                return str(sync.upload(source.data or b"", mime, file_name=name, lifecycle=lifecycle))
            assert source.path is not None
            if source.path.stat().st_size > STREAM_ABOVE_BYTES:
                return upload_multipart(sync, str(source.path), lifecycle, timeout_s=POLL_TIMEOUT_S)
            return str(sync.upload_file(source.path, lifecycle=lifecycle))
        except fal_client.FalClientHTTPError as exc:
            raise self._failure(exc.response, step="upload") from None
        except httpx.HTTPStatusError as exc:  # the CDN token request raises plain httpx errors
            raise self._failure(exc.response, step="upload") from None
        except httpx.HTTPError as exc:
            raise transient(f"upload to fal storage failed: {type(exc).__name__}") from None
        except OSError as exc:
            raise StepFailure(
                RouteError(f"cannot read {source.describe()}: {exc.strerror or exc}", route=self.name), retryable=False
            ) from None

    # -- submit ----------------------------------------------------------------------------------------
    def submit(self, job: JobContext, inputs: dict[str, Any]) -> str:
        import fal_client.client
        import httpx

        url = f"{fal_client.client.QUEUE_URL_FORMAT}{ENDPOINT}"
        try:
            headers = {**self._retention(job, output=True)[1], REQUEST_TIMEOUT_HEADER: str(start_timeout(job))}
            hook = {"fal_webhook": job.webhook_url} if job.webhook_url else None  # facts.py: WEBHOOK
            response = self._http().post(
                url, json=inputs, headers=headers, params=hook, timeout=request_timeout(job, SUBMIT_TIMEOUT_S)
            )
        except httpx.HTTPError as exc:
            if request_never_sent(exc):
                raise transient(
                    f"could not connect to fal's queue ({type(exc).__name__}); nothing was submitted"
                ) from None
            raise self._ambiguous(f"{type(exc).__name__} after the request was sent") from None
        if response.status_code >= 400:  # a 5xx is ambiguous: the one classifier says so
            raise self._failure(response, step="submit")
        data = json_or_none(response)
        request_id = data.get("request_id") if isinstance(data, dict) else None
        if not isinstance(request_id, str) or not request_id:
            raise self._ambiguous(f"HTTP {response.status_code} without a request id")
        return request_id

    def lookup(self, job: JobContext, inputs: dict[str, Any], start: datetime, end: datetime) -> list[Listed]:
        """fal's request listing (ended requests, by when they were sent); no payloads are stored to match."""
        name = self.credential.name if self.credential else "FAL_KEY"
        return lookup_requests(
            self._http(),
            self.base_url() or PLATFORM_URL,
            ENDPOINT,
            start,
            end,
            timeout=request_timeout(job, POLL_TIMEOUT_S),
            credential_name=name,
        )

    def submit_bounds(self, job: JobContext) -> tuple[float, float | None]:
        """The submit POST's own timeout; then the time-to-start bound it sends plus the longest a started
        request runs (facts ``request-timeout`` and ``longest-run``): by then any request it made has ended."""
        return min(SUBMIT_TIMEOUT_S, max(0.0, job.remaining())), start_timeout(job) + LONGEST_RUN_S

    def _ambiguous(self, cause: str) -> StepFailure:
        return StepFailure(
            AmbiguousSubmit(f"the submit to fal may or may not have created a job: {cause}", route=self.name),
            retryable=False,
        )

    # -- wait ------------------------------------------------------------------------------------------
    def poll(self, job: JobContext, request_id: str) -> Status:
        import httpx

        try:
            response = self._http().get(
                self._url(request_id, "/status"), params={"logs": "true"}, timeout=request_timeout(job, POLL_TIMEOUT_S)
            )
        except httpx.HTTPError as exc:
            raise transient(f"fal status poll failed: {type(exc).__name__}", request_id) from None
        if response.status_code >= 400:
            raise self._failure(response, step="wait", request_id=request_id)
        data = json_or_none(response)
        shown = data.get("status") if isinstance(data, dict) else None
        if not isinstance(data, dict) or shown not in _STATES:
            raise transient(f"fal answered an unknown status {shown!r}", request_id, retryable=shown is None)
        if shown == "COMPLETED" and data.get("error"):  # the request ended with an error of fal's or the app's
            kind = str(data.get("error_type") or "")
            cancelled = kind == "client_cancelled"
            rule = price_book()["fal"]["failure_rule"]
            return Status(
                state="cancelled" if cancelled else "failed",
                message="completed with an error",
                error=f"{kind}: {data['error']}" if kind else str(data["error"]),
                data=data,
                billed=None if cancelled else 0.0,  # a cancelled one may have run: settle() asks
                billed_basis="" if cancelled else f'fal: "{rule["text"]}" ({rule["source"]})',
            )
        logs = data.get("logs") if isinstance(data.get("logs"), list) else []
        lines = [str(e.get("message") if isinstance(e, dict) else e) for e in logs or []]
        position = data.get("queue_position")
        return Status(
            state=_STATES[shown], logs=lines, data=data, queue_position=position if isinstance(position, int) else None
        )

    def cancel(self, job: JobContext, request_id: str) -> CancelOutcome:
        import httpx

        try:
            response = self._http().put(self._url(request_id, "/cancel"), timeout=httpx.Timeout(CANCEL_TIMEOUT_S))
        except httpx.HTTPError as exc:
            raise transient(f"cancel failed: {type(exc).__name__}", request_id) from None
        data = json_or_none(response)
        outcome = data.get("status") if isinstance(data, dict) else None
        if response.status_code < 300:
            return CancelOutcome(True, "cancellation was requested (a running request may run on and be billed)")
        if outcome == "ALREADY_COMPLETED":
            return CancelOutcome(
                False, "it had already completed when the cancel arrived; its result was not fetched (and is billed)"
            )
        raise transient(
            f"cancel answered HTTP {response.status_code} ({outcome or 'no status'})", request_id, retryable=False
        )

    def settle(self, job: JobContext, request_id: str, status: Status | None) -> tuple[float | None, str]:
        """After the request's end, fal's billing event says what it was billed; without one (a key that
        may not read them, or none yet), the result's ``x-fal-billable-units`` or fal's failure rule do."""
        if status is None or status.state in ("queued", "running"):
            return super().settle(job, request_id, status)
        charge = self._charge(job, request_id)
        if charge.amount is not None:
            return charge.amount, charge.note
        if status.billed is not None:
            amount, basis = super().settle(job, request_id, status)
        else:
            amount, basis = settle_from_result(
                self._http(), self._url(request_id), job, timeout=request_timeout(job, POLL_TIMEOUT_S)
            )
        return amount, f"{basis}; not fal's own figure: {charge.note}"

    def _charge(self, job: JobContext, request_id: str) -> Charge:
        """fal's billing events for the request, recorded on the job's cost (a refusal is asked once)."""
        if self._events_refused is not None:
            charge = Charge(None, self._events_refused, refused=True)
        else:
            since = job.record.submitting_at or job.record.submitted_at
            base = self.base_url() or PLATFORM_URL
            timeout = request_timeout(job, POLL_TIMEOUT_S)
            charge = charge_for(self._http(), base, ENDPOINT, request_id, since=since, timeout=timeout)
            if charge.refused:
                self._events_refused = charge.note
        record_charge(job, charge)
        return charge

    # -- result ----------------------------------------------------------------------------------------
    def result(self, job: JobContext, request_id: str, status: Status) -> Output:
        """GET the result ourselves so ``x-fal-request-id`` and ``x-fal-billable-units`` are kept."""
        import httpx

        try:
            response = self._http().get(self._url(request_id), timeout=request_timeout(job, POLL_TIMEOUT_S))
        except httpx.HTTPError as exc:
            raise transient(f"fal result fetch failed: {type(exc).__name__}", request_id) from None
        if response.status_code >= 400:
            failure = self._failure(response, step="fetch", request_id=request_id)
            if not failure.retryable:  # the request ended badly at fal: its billing event, where readable
                charge = self._charge(job, request_id)
                failure.billed_amount = failure.billed_amount if charge.amount is None else charge.amount
                unreported = isinstance(failure.error, ProviderInputRejected) and billable_units(response) is None
                if charge.amount is None and unreported:
                    count_worst_case(self, job, f"{UNREPORTED_422} ({charge.note})")
            raise failure
        data = json_or_none(response)
        video = data.get("video") if isinstance(data, dict) else None
        url = video.get("url") if isinstance(video, dict) else None
        if not isinstance(url, str) or not url:
            raise transient("fal's result has no video url", request_id)
        name = video.get("file_name") if isinstance(video, dict) else None
        keep_units(job, billable_units(response))
        return Output(url=url, file_name=name if isinstance(name, str) else None)

    def priced_after_download(self, job: JobContext, output: Output, path: Path) -> tuple[float | None, str]:
        """fal's billing event for the request where the key may read it; else the price book's rule on the
        output's length, said to be the estimate. fal's raw units beside it, a disagreement flagged."""
        cost, basis = price_output(job, path)
        request_id = output.request_id or job.record.provider_request_id
        charge = self._charge(job, request_id) if request_id else Charge(None, "no fal request id to look up")
        if charge.amount is not None:
            return charge.amount, f"{charge.note} (the rule: {basis})"
        return cost, f"{basis}; the charge is the price book's estimate, not fal's own figure: {charge.note}"

    # -- deletion --------------------------------------------------------------------------------------
    def delete_remote(self, record: JobRecord) -> tuple[list[str], list[str]]:
        """For ``delete_job``: fal's Delete Request Payloads, once; what it answered, and what stays."""
        import httpx

        http = self._http() if self.credential is not None else None
        deleted, kept = delete_for_record(
            http, self.base_url() or PLATFORM_URL, record, timeout=httpx.Timeout(POLL_TIMEOUT_S, connect=10.0)
        )
        return deleted, [*kept, *upload_intents.unfindable_lines(record, "fal", UPLOAD_LEFT_OVER)]
