"""The ``fal`` route: ``fal-ai/latentsync`` on fal's queue, driven by the official ``fal-client`` 1.0.3.

The job's loop, deadline, journal writes and ambiguity rules are the hosted template's
(:mod:`latentsync_routes.routes.hosted`); this module is fal's single tries of each step. fal-client
supplies the credentials, the authenticated httpx client and the uploads (``upload_file``, or for inputs
over 20 MiB its CDN token and multipart ``create`` with our parts streamed from disk). Three things bypass
its helpers, on purpose:

* **The submit** is one ``POST`` on fal-client's own client. ``SyncClient.submit`` retries POSTs itself
  (10 tries on 408/409/429, resets, read timeouts), so a lost reply would create a second billed job.
  Ours is retried by the shared loop only when fal cannot have accepted it (no connection, or an answer
  from fal itself refusing it); a timeout, a reset or a 5xx after sending is ambiguous.
* **Polls, the result fetch and the cancel** are single requests to URLs built from the request id on
  the configured origin (never to URLs the submit answer names, so the key never goes to another host);
  the result headers ``x-fal-request-id`` and ``x-fal-billable-units`` (the actual cost) are kept.
* **Hosts**: ``settings.fal_base_url`` points fal's hosts at one origin; see
  :func:`~latentsync_routes.routes.fal_hosts.fal_hosts`, the one place that redirects fal-client.
"""

from __future__ import annotations

import mimetypes
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ..errors import (
    AmbiguousSubmit,
    AuthenticationError,
    JobCancelled,
    ProviderError,
    ProviderInputRejected,
    RouteError,
)
from ..pricing import estimate_fal, fal_actual_cost, fal_cost_for_seconds, price_book
from ..retry import STEP_NOUN, StepFailure, json_or_none, request_never_sent, request_timeout, retry_after_of
from ..types import CostEstimate, LipSyncRequest, MediaInfo, MediaSource
from .base import JobContext, ParameterSpec, RouteInfo, RouteOutput
from .fal_hosts import bound_to_deadlines, fal_hosts
from .fal_upload import upload_multipart
from .hosted import CancelOutcome, HostedRoute, Output, Status

if TYPE_CHECKING:
    import fal_client
    import httpx

    from ..config import Credential, Settings


ENDPOINT = "fal-ai/latentsync"

INFO = RouteInfo(
    name="fal",
    description="fal.ai hosted endpoint fal-ai/latentsync (queue API)",
    owner="fal (fal.ai) runs the endpoint; ByteDance owns the model",
    model=ENDPOINT,
    model_version=f"{ENDPOINT} (fal does not publish which LatentSync release it serves)",
    billing_owner="the fal account that owns FAL_KEY",
    uploads_media=True,
    upload_destination="fal CDN storage (v3.fal.media): public, unguessable URLs",
    retention="uploads and outputs on the fal CDN are public and kept at least 7 days unless an object "
    "lifecycle is set at upload (this route sets one when the policy caps retention); queue results 1 h",
    retention_days=None,
    retention_control="an object lifecycle (X-Fal-Object-Lifecycle-Preference) set on each upload to the policy's cap",
    deletion="expiry set at upload through X-Fal-Object-Lifecycle-Preference; no delete API is used",
    weights_licence="openrail++",
    weights_licence_source="https://huggingface.co/ByteDance/LatentSync-1.5",
    commercial_use_allowed=True,
    failure_billing="server errors (HTTP 5xx) are never charged; invalid inputs (422) may be charged if a "
    "runner spent GPU time; queue waiting is free",
    failure_billing_source="https://docs.fal.ai/faq",
    support_path=["https://docs.fal.ai", "https://fal.ai/support", "https://github.com/bytedance/LatentSync/issues"],
    credential_env="FAL_KEY",
    sdk_module="fal_client",
    sdk_package="fal-client",
    base_url_env="LATENTSYNC_ROUTES_FAL_BASE_URL",
    default_concurrency=2,
    install_extra="fal",
    sources=["https://fal.ai/models/fal-ai/latentsync/llms.txt", "https://docs.fal.ai/faq"],
    parameters=[
        ParameterSpec(name="guidance_scale", kind="float", minimum=1.0, maximum=2.0, default=1.0),
        ParameterSpec(name="seed", kind="int"),
        ParameterSpec(name="loop_mode", kind="str", choices=["pingpong", "loop"]),
    ],
)


#: Seconds for one submit POST / one status, result or cancel request. Module constants so tests can shrink them.
SUBMIT_TIMEOUT_S = 60.0
POLL_TIMEOUT_S = 30.0
CANCEL_TIMEOUT_S = 10.0
#: Inputs above this go up as a streamed multipart upload (fal-client would hold them in memory).
STREAM_ABOVE_BYTES = 20 * 1024 * 1024
#: fal's Platform API origin (request history), used to find the job of an ambiguous submit.
PLATFORM_URL = "https://api.fal.ai"
#: The lookup searches requests sent since the submit began, less this clock skew; at most this many pages.
CLOCK_SKEW_S = 60.0
LOOKUP_PAGES = 3
_STATES: dict[str, Literal["queued", "running", "succeeded"]] = {
    "IN_QUEUE": "queued", "IN_PROGRESS": "running", "COMPLETED": "succeeded"}


class FalRoute(HostedRoute):
    name: ClassVar[str] = "fal"
    INFO: ClassVar[RouteInfo] = INFO
    INPUT_NAMES: ClassVar[tuple[str, str]] = ("video_url", "audio_url")

    def __init__(self, *, settings: Settings, credential: Credential | None) -> None:
        super().__init__(settings=settings, credential=credential)
        self._sync: fal_client.SyncClient | None = None
        self._lock = threading.Lock()

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
        client: httpx.Client = self._sdk()._client
        return client

    def _url(self, request_id: str, suffix: str = "") -> str:
        """A queue URL on the configured origin, built from the request id (never one the server named)."""
        import fal_client.client

        return f"{fal_client.client.QUEUE_URL_FORMAT}{ENDPOINT}/requests/{request_id}{suffix}"

    # -- upload ----------------------------------------------------------------------------------------
    def upload(self, job: JobContext, source: MediaSource) -> str:
        import fal_client
        import httpx

        sync = self._sdk()
        lifecycle = self._lifecycle()
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
            raise self._http_failure(exc.response, step="upload") from None
        except httpx.HTTPStatusError as exc:  # the CDN token request raises plain httpx errors
            raise self._http_failure(exc.response, step="upload") from None
        except httpx.HTTPError as exc:
            raise self._transient(f"upload to fal storage failed: {type(exc).__name__}") from None
        except OSError as exc:
            raise StepFailure(RouteError(f"cannot read {source.describe()}: {exc.strerror or exc}",
                                         route=self.name), retryable=False) from None

    def _lifecycle(self) -> Any:
        """fal-client ``StorageSettings`` expiring uploads after the policy's retention cap, if one is set."""
        days = self.settings.policy.max_retention_days
        if days is None:
            return None
        import fal_client

        return fal_client.StorageSettings(expires_in=max(60, int(days * 86400)))

    # -- submit ----------------------------------------------------------------------------------------
    def submit(self, job: JobContext, inputs: dict[str, Any]) -> str:
        import fal_client.client
        import httpx

        url = f"{fal_client.client.QUEUE_URL_FORMAT}{ENDPOINT}"
        try:
            response = self._http().post(url, json=inputs, timeout=request_timeout(job, SUBMIT_TIMEOUT_S))
        except httpx.HTTPError as exc:
            if request_never_sent(exc):
                raise self._transient(f"could not connect to fal's queue ({type(exc).__name__}); nothing was "
                                      "submitted") from None
            raise self._ambiguous(f"{type(exc).__name__} after the request was sent") from None
        if response.status_code >= 500:
            raise self._ambiguous(f"HTTP {response.status_code}, which a gateway may send after fal accepted it")
        if response.status_code >= 400:
            raise self._http_failure(response, step="submit")
        data = json_or_none(response)
        request_id = data.get("request_id") if isinstance(data, dict) else None
        if not isinstance(request_id, str) or not request_id:
            raise self._ambiguous(f"HTTP {response.status_code} without a request id")
        return request_id

    def lookup(self, job: JobContext, inputs: dict[str, Any], since: datetime) -> list[str] | None:
        """fal's Platform API lists an endpoint's requests with their input payloads: ours are the ones
        whose input is exactly what we sent (its upload URLs are unique to this job).

        Source: https://docs.fal.ai/platform-apis/v1/models/requests/by-endpoint (checked 2026-12-01). The
        list is sorted by end time; whether a request still queued appears is not documented, so a miss
        leaves the submit ambiguous (the template then stops) rather than proving nothing was created.
        """
        import httpx

        base = self.base_url() or PLATFORM_URL
        start = (since - timedelta(seconds=CLOCK_SKEW_S)).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        params: dict[str, str] = {"endpoint_id": ENDPOINT, "start": start, "expand": "payloads", "limit": "100"}
        found: list[str] = []
        for _ in range(LOOKUP_PAGES):
            try:
                response = self._http().get(f"{base}/v1/models/requests/by-endpoint", params=params,
                                            timeout=request_timeout(job, POLL_TIMEOUT_S))
            except httpx.HTTPError as exc:
                raise self._transient(f"fal request lookup failed: {type(exc).__name__}") from None
            if response.status_code >= 400:
                raise self._http_failure(response, step="lookup")
            data = json_or_none(response)
            items = data.get("items") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise self._transient("fal's request list is not readable", retryable=False)
            found += [str(item["request_id"]) for item in items if isinstance(item, dict)
                      and item.get("json_input") == inputs and item.get("request_id")]
            cursor = data.get("next_cursor") if isinstance(data, dict) and data.get("has_more") else None
            if not cursor:
                break
            params["cursor"] = str(cursor)
        return found

    def _ambiguous(self, cause: str) -> StepFailure:
        return StepFailure(AmbiguousSubmit(f"the submit to fal may or may not have created a job: {cause}",
                                           route=self.name), retryable=False)

    # -- wait ------------------------------------------------------------------------------------------
    def poll(self, job: JobContext, request_id: str) -> Status:
        import httpx

        try:
            response = self._http().get(self._url(request_id, "/status"), params={"logs": "true"},
                                        timeout=request_timeout(job, POLL_TIMEOUT_S))
        except httpx.HTTPError as exc:
            raise self._transient(f"fal status poll failed: {type(exc).__name__}", request_id) from None
        if response.status_code >= 400:
            raise self._http_failure(response, step="wait", request_id=request_id)
        data = json_or_none(response)
        shown = data.get("status") if isinstance(data, dict) else None
        if not isinstance(data, dict) or shown not in _STATES:
            raise self._transient(f"fal answered an unknown status {shown!r}", request_id, retryable=shown is None)
        if shown == "COMPLETED" and data.get("error"):  # the request ended with an error of fal's or the app's
            kind = str(data.get("error_type") or "")
            return Status(state="cancelled" if kind == "client_cancelled" else "failed", message="completed with an "
                          "error", error=f"{kind}: {data['error']}" if kind else str(data["error"]), billed=0.0,
                          billed_basis="fal does not bill server errors or cancelled queue time", data=data)
        logs = data.get("logs") if isinstance(data.get("logs"), list) else []
        lines = [str(e.get("message") if isinstance(e, dict) else e) for e in logs or []]
        message = f"queued (position {data.get('queue_position')})" if shown == "IN_QUEUE" else ""
        return Status(state=_STATES[shown], message=message, logs=lines, data=data)

    def cancel(self, job: JobContext, request_id: str) -> CancelOutcome:
        import httpx

        try:
            response = self._http().put(self._url(request_id, "/cancel"), timeout=httpx.Timeout(CANCEL_TIMEOUT_S))
        except httpx.HTTPError as exc:
            raise self._transient(f"cancel failed: {type(exc).__name__}", request_id) from None
        data = json_or_none(response)
        outcome = data.get("status") if isinstance(data, dict) else None
        if response.status_code < 300:
            return CancelOutcome(True, "cancellation was requested")
        if outcome == "ALREADY_COMPLETED":
            return CancelOutcome(False, "it had already completed when the cancel arrived; its result was not "
                                 "fetched (and is billed)")
        raise self._transient(f"cancel answered HTTP {response.status_code} ({outcome or 'no status'})",
                              request_id, retryable=False)

    # -- result ----------------------------------------------------------------------------------------
    def result(self, job: JobContext, request_id: str, status: Status) -> Output:
        """GET the result ourselves so ``x-fal-request-id`` and ``x-fal-billable-units`` are kept."""
        import httpx

        try:
            response = self._http().get(self._url(request_id), timeout=request_timeout(job, POLL_TIMEOUT_S))
        except httpx.HTTPError as exc:
            raise self._transient(f"fal result fetch failed: {type(exc).__name__}", request_id) from None
        if response.status_code >= 400:
            raise self._http_failure(response, step="fetch", request_id=request_id)
        data = json_or_none(response)
        video = data.get("video") if isinstance(data, dict) else None
        url = video.get("url") if isinstance(video, dict) else None
        if not isinstance(url, str) or not url:
            raise self._transient("fal's result has no video url", request_id)
        name = video.get("file_name") if isinstance(video, dict) else None
        units = _units(response)
        if units is not None:
            price = price_book()["fal"]["billable_unit_price"]
            cost: float | None = fal_actual_cost(units)
            basis = f"x-fal-billable-units {units:g} x ${price}/unit = ${cost:.4f}"
        else:
            cost, basis = None, "fal sent no x-fal-billable-units"
        return Output(url=url, file_name=name if isinstance(name, str) else None, actual_cost=cost,
                      cost_basis=basis)

    def priced_after_download(self, output: Output, path: Path) -> tuple[float | None, str]:
        if output.actual_cost is not None:
            return output.actual_cost, output.cost_basis
        from ..media import probe

        seconds = probe(MediaSource(kind="path", path=path), with_hash=False).duration
        cost = fal_cost_for_seconds(seconds)
        return cost, f"fal sent no x-fal-billable-units; its price rule on the {seconds:.2f} s output = ${cost:.4f}"

    # -- errors ----------------------------------------------------------------------------------------
    def _transient(self, message: str, request_id: str | None = None, *, retryable: bool = True) -> StepFailure:
        return StepFailure(ProviderError(message, route=self.name, request_id=request_id), retryable=retryable)

    def _http_failure(self, response: httpx.Response, *, step: str, request_id: str | None = None) -> StepFailure:
        """Map a fal error answer to our error tree, with fal's retry and billing rules."""
        status = response.status_code
        request_id = response.headers.get("x-fal-request-id") or request_id
        body = json_or_none(response)
        detail = body.get("detail") if isinstance(body, dict) else None
        error_type = (body.get("error_type") if isinstance(body, dict) else None) or response.headers.get(
            "x-fal-error-type")
        if status in (401, 403):
            name = self.credential.name if self.credential is not None else "FAL_KEY"
            return StepFailure(AuthenticationError(f"fal refused the credential in {name} (HTTP {status}); check "
                                                   "that the key is valid and not revoked", route=self.name,
                                                   request_id=request_id, status_code=status), retryable=False)
        if status == 422 or (status == 400 and isinstance(detail, list)):
            fields, text = _validation_details(detail)
            units = _units(response)
            billed = fal_actual_cost(units) if units else 0.0
            note = f"; fal billed {units:g} units (${billed:.4f})" if billed else "; fal reported no billable units"
            return StepFailure(ProviderInputRejected(f"fal rejected the inputs (HTTP {status}): {text}{note}",
                                                     fields=fields, route=self.name, request_id=request_id,
                                                     status_code=status), retryable=False, billed_amount=billed)
        if status == 499:
            return StepFailure(JobCancelled(f"fal reports request {request_id} was cancelled ({error_type})",
                                            route=self.name, request_id=request_id, status_code=status),
                               retryable=False)
        # Polls, result fetches and uploads are idempotent: any 5xx or "not now" may be tried again. (A
        # submit never gets here with a 5xx: that one is ambiguous.)
        retryable = status in (408, 409, 429) or status >= 500
        ingress = status in (502, 503, 504) and "x-fal-request-id" not in response.headers
        shown = detail or (response.text if "json" in response.headers.get("content-type", "") else "")
        text = "an error page from its ingress, no request id" if ingress else str(shown or "no detail")[:300]
        kind = f" ({error_type})" if error_type else ""
        billing = "; fal never bills server errors" if status >= 500 else ""
        what = STEP_NOUN.get(step, step)
        error = ProviderError(f"fal answered HTTP {status} to the {what}{kind}: {text}{billing}", route=self.name,
                              request_id=request_id, status_code=status, retryable=retryable)
        return StepFailure(error, retryable=retryable, retry_after=retry_after_of(response), error_type=error_type)


def _units(response: httpx.Response) -> float | None:
    raw = response.headers.get("x-fal-billable-units")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def _validation_details(detail: Any) -> tuple[list[str], str]:
    """Field names and a readable summary from fal's ``{"detail": [{loc, msg, type}, ...]}``."""
    if not isinstance(detail, list):
        return [], str(detail)[:300] if detail else "no detail given"
    items = [item if isinstance(item, dict) else {"msg": str(item)[:200]} for item in detail]
    fields = [".".join(str(p) for p in item.get("loc") or [] if p != "body") or "input" for item in items]
    text = "; ".join(f"{field}: {item.get('msg', 'invalid')}" for field, item in zip(fields, items, strict=True))
    return fields, text or "no detail given"


