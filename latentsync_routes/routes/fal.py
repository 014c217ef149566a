"""The ``fal`` route: ``fal-ai/latentsync`` on fal's queue, driven by the official ``fal-client`` 1.0.3.

fal-client supplies the credentials and the authenticated httpx client, the uploads (``upload_file``, or
for inputs over 20 MiB its CDN token and multipart ``create`` with our parts streamed from disk, so memory
stays flat) and the request handles. Three things bypass its helpers, on purpose:

* **The submit** is one ``POST`` on fal-client's own client. ``SyncClient.submit`` retries POSTs itself
  (10 tries on 408/409/429, resets, read timeouts), so a lost reply would create a second billed job. Ours
  is retried by the shared loop only when fal cannot have accepted it (no connection, or an HTTP error
  answer); a timeout or reset after sending raises :class:`AmbiguousSubmit` (fal has no lookup by
  idempotency key).
* **Polls, the result fetch and the cancel** are single requests on the handle's client: only our loop
  knows the deadline and records each try, and the result headers ``x-fal-request-id`` and
  ``x-fal-billable-units`` (the actual cost) are dropped by ``handle.get()``.
* **Hosts**: ``settings.fal_base_url`` points fal's four hosts at one gateway serving ``/queue/``,
  ``/run/``, ``/rest`` and ``/cdn`` (the layout of ``latentsync_routes.testing.FakeFal``); see
  :func:`~latentsync_routes.routes.fal_hosts.fal_hosts`, the one place that redirects fal-client. The
  streamed multipart upload lives in :mod:`latentsync_routes.routes.fal_upload`.
"""

from __future__ import annotations

import mimetypes
import threading
import time
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from ..errors import (
    AmbiguousSubmit,
    AuthenticationError,
    DeadlineExceeded,
    JobCancelled,
    MissingCredentials,
    ProviderError,
    ProviderInputRejected,
    RouteError,
)
from ..pricing import estimate_fal, fal_actual_cost, fal_cost_for_seconds
from ..retry import (
    STEP_NOUN,
    StepFailure,
    json_or_none,
    record_attempt,
    request_never_sent,
    request_timeout,
    retry_after_of,
    run_step,
)
from ..types import CostEstimate, LipSyncRequest, MediaInfo, MediaSource, utcnow
from .base import (
    JobContext,
    ParameterSpec,
    RouteInfo,
    RouteOutput,
    map_parameters,
    module_available,
    not_installed_message,
)
from .fal_hosts import fal_hosts
from .fal_upload import upload_multipart

if TYPE_CHECKING:
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
    deletion="expiry set at upload through X-Fal-Object-Lifecycle-Preference; no delete API is used",
    weights_licence="openrail++",
    weights_licence_source="https://huggingface.co/ByteDance/LatentSync-1.5",
    commercial_use_allowed=True,
    failure_billing="server errors (HTTP 5xx) are never charged; invalid inputs (422) may be charged if a "
    "runner spent GPU time; queue waiting is free",
    failure_billing_source="https://docs.fal.ai/faq",
    support_path=["https://docs.fal.ai", "https://fal.ai/support", "https://github.com/bytedance/LatentSync/issues"],
    credential_env="FAL_KEY",
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


class FalRoute:
    name: ClassVar[str] = "fal"

    def __init__(self, *, settings: Settings, credential: Credential | None) -> None:
        self.settings = settings
        self.credential = credential
        self._sync: Any = None
        self._lock = threading.Lock()

    def info(self) -> RouteInfo:
        return INFO

    def availability(self) -> str | None:
        if not module_available("fal_client"):
            return not_installed_message("fal", "fal-client", "fal")
        if self.credential is None:
            return "route 'fal' needs FAL_KEY (argument fal_key=, env FAL_KEY, or keyring service 'latentsync-routes')"
        return None

    def provider_parameters(self, request: LipSyncRequest) -> dict[str, Any]:
        return map_parameters(INFO, request)

    def estimate(self, request: LipSyncRequest, video: MediaInfo, audio: MediaInfo) -> CostEstimate:
        return estimate_fal(audio.duration)

    # -- execute ------------------------------------------------------------------------------------
    def execute(self, job: JobContext) -> RouteOutput:
        """Upload, submit (journalled before waiting), wait with a deadline, fetch, download, price."""
        from ..download import download_output, ensure_writable

        ensure_writable(job, self.name)
        arguments = self.provider_parameters(job.request)
        with fal_hosts(self.settings.fal_base_url):
            sync = self._sdk()
            if job.resume_request_id:
                import fal_client

                handle = fal_client.SyncRequestHandle.from_request_id(sync._client, ENDPOINT, job.resume_request_id)
                job.report(f"fal: resuming request {handle.request_id}", None)
            else:
                video_url, audio_url = self._upload_inputs(job, sync)
                handle = self._submit(job, sync, {"video_url": video_url, "audio_url": audio_url, **arguments})
            self._wait(job, handle)
            result, units, request_id = self._fetch_result(job, handle)
        video = result.get("video") if isinstance(result, dict) else None
        url = video.get("url") if isinstance(video, dict) else None
        if not isinstance(url, str) or not url:
            raise ProviderError("fal's result has no video url", route=self.name, request_id=request_id)
        name = video.get("file_name") if isinstance(video, dict) else None
        job.report("fal: downloading the output", None)
        path = download_output(job, url, route=self.name, request_id=request_id,
                               file_name=name if isinstance(name, str) else None)
        cost, basis = _actual_cost(units, path)
        job.report("fal: done", 1.0)
        return RouteOutput(output_path=path, output_url=url, provider_request_id=request_id, actual_cost=cost,
                           cost_basis=basis)

    def _sdk(self) -> Any:
        """The route's own fal-client ``SyncClient`` (one per route, so its CDN token manager is ours)."""
        with self._lock:
            if self._sync is None:
                if self.credential is None:
                    raise MissingCredentials("route 'fal' needs FAL_KEY", route=self.name)
                import fal_client

                self._sync = fal_client.SyncClient(key=self.credential.value.get_secret_value(),
                                                   default_timeout=SUBMIT_TIMEOUT_S)
                self._sync._client  # noqa: B018 - build the httpx client once, not in racing job threads
            return self._sync

    # -- upload ----------------------------------------------------------------------------------------
    def _upload_inputs(self, job: JobContext, sync: Any) -> tuple[str, str]:
        lifecycle = self._lifecycle()
        urls: list[str] = []
        uploaded: list[str] = []
        for role, source in (("video", job.request.video), ("audio", job.request.audio)):
            if source.kind == "url":
                urls.append(str(source.url))
                continue
            job.report(f"fal: uploading the {role}", None)
            url = run_step(job, "upload", partial(self._upload_one, sync, source, lifecycle))
            urls.append(url)
            uploaded.append(url)
        job.mark("uploaded", uploaded_uris=uploaded)
        return urls[0], urls[1]

    def _lifecycle(self) -> Any:
        """fal-client ``StorageSettings`` expiring uploads after the policy's retention cap, if one is set."""
        days = self.settings.policy.max_retention_days
        if days is None:
            return None
        import fal_client

        return fal_client.StorageSettings(expires_in=max(60, int(days * 86400)))

    def _upload_one(self, sync: Any, source: MediaSource, lifecycle: Any) -> str:
        """One upload try. Uploads create no job, so any transport failure may be retried."""
        import fal_client
        import httpx

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

    # -- submit ----------------------------------------------------------------------------------------
    def _submit(self, job: JobContext, sync: Any, arguments: dict[str, Any]) -> Any:
        import fal_client
        import httpx

        client = sync._client
        url = f"{fal_client.client.QUEUE_URL_FORMAT}{ENDPOINT}"
        started = utcnow()

        def one_try() -> Any:
            try:
                response = client.post(url, json=arguments, timeout=httpx.Timeout(SUBMIT_TIMEOUT_S, connect=10.0))
            except httpx.HTTPError as exc:
                if request_never_sent(exc):
                    raise self._transient(f"could not connect to fal's queue ({type(exc).__name__}); nothing was "
                                          "submitted") from None
                raise StepFailure(AmbiguousSubmit(_ambiguous_message(type(exc).__name__), route=self.name),
                                  retryable=False) from None
            if response.status_code >= 400:
                raise self._http_failure(response, step="submit")
            data = json_or_none(response)
            request_id = data.get("request_id") if isinstance(data, dict) else None
            if not isinstance(request_id, str):
                cause = f"HTTP {response.status_code} without a request id"
                raise StepFailure(AmbiguousSubmit(_ambiguous_message(cause), route=self.name), retryable=False)
            try:
                return fal_client.SyncRequestHandle(request_id=request_id, response_url=data["response_url"],
                                                    status_url=data["status_url"], cancel_url=data["cancel_url"],
                                                    client=client)
            except KeyError:
                return fal_client.SyncRequestHandle.from_request_id(client, ENDPOINT, request_id)

        handle = run_step(job, "submit", one_try, record_success=False)
        job.mark("submitted", provider_request_id=handle.request_id, submitted_at=utcnow())
        record_attempt(job, "submit", ok=True, started_at=started, request_id=handle.request_id)
        job.report(f"fal: submitted request {handle.request_id}", None)
        return handle

    # -- wait ------------------------------------------------------------------------------------------
    def _wait(self, job: JobContext, handle: Any) -> None:
        """Poll status (with logs) until COMPLETED; on the deadline cancel and raise DeadlineExceeded."""
        seen_logs = 0
        last = ""
        on_deadline = partial(self._deadline, job, handle)
        while True:
            if job.remaining() <= 0:
                on_deadline()
            status = run_step(job, "wait", partial(self._poll, job, handle), request_id=handle.request_id,
                              record_success=False, on_deadline=on_deadline)
            state = status.get("status")
            if state == "IN_QUEUE":
                message = f"fal: queued (position {status.get('queue_position')})"
                if message != last:
                    job.report(message, None)
                    last = message
            logs = status.get("logs") or []
            if isinstance(logs, list):
                for entry in logs[seen_logs:]:
                    text = entry.get("message") if isinstance(entry, dict) else entry
                    job.report(f"fal: {text}", None)
                seen_logs = max(seen_logs, len(logs))
            if state == "COMPLETED":
                job.mark("completed")
                return
            time.sleep(max(0.0, min(self.settings.poll_interval, job.remaining())))

    def _poll(self, job: JobContext, handle: Any) -> dict[str, Any]:
        import httpx

        try:
            response = handle.client.get(handle.status_url, params={"logs": "true"},
                                         timeout=request_timeout(job, POLL_TIMEOUT_S))
        except httpx.HTTPError as exc:
            raise self._transient(f"fal status poll failed: {type(exc).__name__}", handle.request_id) from None
        if response.status_code >= 400:
            raise self._http_failure(response, step="wait", request_id=handle.request_id)
        data = json_or_none(response)
        if not isinstance(data, dict) or data.get("status") not in ("IN_QUEUE", "IN_PROGRESS", "COMPLETED"):
            shown = data.get("status") if isinstance(data, dict) else None
            raise self._transient(f"fal answered an unknown status {shown!r}", handle.request_id,
                                  retryable=shown is None)
        return data

    def _deadline(self, job: JobContext, handle: Any) -> NoReturn:
        outcome = self._cancel(job, handle)
        error = DeadlineExceeded(f"fal request {handle.request_id} did not finish within the job deadline; {outcome}",
                                 route=self.name, request_id=handle.request_id)
        record_attempt(job, "wait", ok=False, error=error, request_id=handle.request_id)
        raise error

    def _cancel(self, job: JobContext, handle: Any) -> str:
        """One ``PUT cancel`` (no retries: the deadline has passed); says what happened, for the error."""
        import httpx

        started = utcnow()
        try:
            response = handle.client.put(handle.cancel_url, timeout=httpx.Timeout(CANCEL_TIMEOUT_S))
        except httpx.HTTPError as exc:
            failed = self._transient(f"cancel failed: {type(exc).__name__}", handle.request_id).error
            record_attempt(job, "cancel", ok=False, started_at=started, error=failed, request_id=handle.request_id)
            return f"the cancel request failed ({type(exc).__name__}), so the job may still run and be billed"
        data = json_or_none(response)
        outcome = data.get("status") if isinstance(data, dict) else None
        ok = response.status_code < 300
        error = None if ok else self._transient(f"cancel answered HTTP {response.status_code} ({outcome})").error
        record_attempt(job, "cancel", ok=ok, started_at=started, error=error, http_status=response.status_code,
                       request_id=handle.request_id)
        if ok:
            return "cancellation was requested (fal does not bill time spent waiting in the queue)"
        if outcome == "ALREADY_COMPLETED":
            return "it had already completed when the cancel arrived; its result was not fetched (and may be billed)"
        return f"the cancel answered HTTP {response.status_code} ({outcome or 'no status'})"

    # -- result ----------------------------------------------------------------------------------------
    def _fetch_result(self, job: JobContext, handle: Any) -> tuple[Any, float | None, str]:
        """GET the result ourselves so ``x-fal-request-id`` and ``x-fal-billable-units`` are kept."""
        import httpx

        def one_try() -> tuple[Any, float | None, str]:
            try:
                response = handle.client.get(handle.response_url, timeout=request_timeout(job, POLL_TIMEOUT_S))
            except httpx.HTTPError as exc:
                raise self._transient(f"fal result fetch failed: {type(exc).__name__}", handle.request_id) from None
            if response.status_code >= 400:
                raise self._http_failure(response, step="fetch", request_id=handle.request_id)
            data = json_or_none(response)
            if data is None:
                raise self._transient("fal's result is not JSON", handle.request_id)
            return data, _units(response), response.headers.get("x-fal-request-id") or handle.request_id

        return run_step(job, "fetch", one_try, request_id=handle.request_id)

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
        ingress = status in (502, 503, 504) and "x-fal-request-id" not in response.headers
        # A submit or poll that got an error answer created nothing, so it may be tried again; a 5xx result
        # is the model's own final answer (fal already re-queued runner failures server-side).
        retryable = status in (408, 409, 429) or ingress or (status >= 500 and step != "fetch")
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


def _ambiguous_message(cause: str) -> str:
    return (
        f"the submit to fal may or may not have created a job: {cause} after the request was sent. fal has no "
        "lookup by idempotency key, so it was not sent again; check your fal request history before running this "
        "job again (a duplicate would be billed)"
    )


def _actual_cost(units: float | None, output: Any) -> tuple[float | None, str]:
    """Billable units x unit price; without the header, fal's price rule on the output's duration."""
    from ..pricing import price_book

    if units is not None:
        cost = fal_actual_cost(units)
        price = price_book()["fal"]["billable_unit_price"]
        return cost, f"x-fal-billable-units {units:g} x ${price}/unit = ${cost:.4f}"
    from ..media import probe

    seconds = probe(MediaSource(kind="path", path=output), with_hash=False).duration
    cost = fal_cost_for_seconds(seconds)
    return cost, f"fal sent no x-fal-billable-units; its price rule on the {seconds:.2f} s output = ${cost:.4f}"
