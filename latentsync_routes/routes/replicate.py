"""The ``replicate`` route: ``bytedance/latentsync`` at a pinned version, driven by the official ``replicate``.

How the job runs, and why each step is done this way:

1. The pinned version's ``openapi_schema`` is fetched once per process and every parameter is checked
   against its ``Input`` schema (unknown → :class:`UnsupportedParameter`, out of range →
   :class:`InvalidParameter`) *before* anything is uploaded: a refusal must cost nothing
   (:mod:`latentsync_routes.routes.replicate_schema`).
2. Local inputs go up through the files API (``client.files.create``, streamed); the file URLs are
   journalled as soon as each exists so they are deleted afterwards (``record.deleted``), even after a
   failure. URL inputs are passed through.
3. ``predictions.create(version=..., input=..., wait=False)``: no ``Prefer: wait``, whose
   "processing" reply makes 1.0.7's ``run()`` return ``None``. The prediction id is journalled before the
   wait. replicate never retries a POST; we retry the create only when Replicate cannot have accepted it
   (no connection, or an HTTP error answer). After a timeout or reset once the request left, recent
   predictions are listed and matched by version, input and creation time; one match is adopted,
   otherwise :class:`AmbiguousSubmit` is raised. Never a blind second create.
4. Polls run through the shared retry loop. The SDK's own retry transport (which sleeps for any
   ``Retry-After``, uncapped, past every deadline) is bypassed by mounting a plain transport for all
   URLs through the client's ``mounts=`` option. On the deadline the prediction is cancelled.
5. Cost = ``metrics.predict_time`` x the L40S rate, also for failed and cancelled predictions, where it is
   the failing attempt's ``billed_amount``. The output is downloaded at once (Replicate deletes it after
   an hour).

How SDK and transport failures map onto the error tree: :mod:`latentsync_routes.routes.replicate_errors`.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn
from urllib.parse import urlsplit

from ..errors import (
    AmbiguousSubmit,
    AuthenticationError,
    DeadlineExceeded,
    JobCancelled,
    JobFailed,
    LatentSyncError,
    MissingCredentials,
    ProviderError,
    ProviderInputRejected,
    RouteError,
)
from ..pricing import estimate_replicate, price_book, replicate_cost_for_predict_time
from ..retry import StepFailure, json_or_none, record_attempt, run_step
from ..types import CostEstimate, JobRecord, LipSyncRequest, MediaInfo, MediaSource, utcnow
from .base import (
    JobContext,
    ParameterSpec,
    RouteInfo,
    RouteOutput,
    map_parameters,
    module_available,
    not_installed_message,
)
from .replicate_errors import replicate_failure
from .replicate_schema import input_schema_check, version_openapi

if TYPE_CHECKING:
    import httpx

    from ..config import Credential, Settings

log = logging.getLogger(__name__)

MODEL = "bytedance/latentsync"
#: The version id seen in Replicate's public example prediction for this community model (Jan-2025 schema:
#: video, audio, guidance_scale 0-10 default 1.0, seed). Creating by model name 404s for community models.
PINNED_VERSION = "637ce1919f807ca20da3a448ddc2743535d2853649574cd52a933120e9b9e293"

INFO = RouteInfo(
    name="replicate",
    description="Replicate community model bytedance/latentsync at a pinned version",
    owner="Replicate runs the model; ByteDance published it and owns the model",
    model=MODEL,
    model_version=PINNED_VERSION,
    billing_owner="the Replicate account that owns REPLICATE_API_TOKEN",
    uploads_media=True,
    upload_destination="Replicate files API (api.replicate.com/v1/files), private to the token's account",
    retention="API inputs, outputs and files are deleted after 1 hour; the output is downloaded at once",
    retention_days=1 / 24,
    deletion="uploaded files are deleted through the files API after the job; predictions expire after 1 h",
    weights_licence="openrail++",
    weights_licence_source="https://huggingface.co/ByteDance/LatentSync-1.5",
    commercial_use_allowed=True,
    max_input_bytes=100 * 1024 * 1024,
    max_audio_seconds=300.0,
    failure_billing="billed for the predict time used, also for failed and canceled predictions; "
    "aborted (never started) predictions are free",
    failure_billing_source="https://replicate.com/docs/topics/predictions/lifecycle",
    support_path=[
        "https://replicate.com/docs",
        "https://replicate.com/bytedance/latentsync",
        "https://github.com/bytedance/LatentSync/issues",
    ],
    credential_env="REPLICATE_API_TOKEN",
    install_extra="replicate",
    sources=[
        "https://replicate.com/bytedance/latentsync",
        "https://replicate.com/pricing",
        "https://replicate.com/docs/topics/predictions/data-retention",
    ],
    parameters=[
        ParameterSpec(name="guidance_scale", kind="float", minimum=0.0, maximum=10.0, default=1.0),
        ParameterSpec(name="seed", kind="int"),
    ],
)


DEFAULT_BASE_URL = "https://api.replicate.com"
#: Per-operation HTTP timeouts (a read or a write that stalls this long fails). Module constants for tests.
REQUEST_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 10.0
#: How far back (seconds) an ambiguous create is looked for in the list of recent predictions.
LOOKUP_WINDOW_S = 600.0
_TERMINAL = ("succeeded", "failed", "canceled", "aborted")


def _bounded_transport() -> Any:
    """A plain httpx transport that gives every request a timeout (the SDK sends some with none)."""
    import httpx

    class BoundedTransport(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            limits = dict(request.extensions.get("timeout") or {})
            defaults = {"connect": CONNECT_TIMEOUT_S, "read": REQUEST_TIMEOUT_S, "write": REQUEST_TIMEOUT_S,
                        "pool": REQUEST_TIMEOUT_S}
            request.extensions["timeout"] = {k: limits.get(k) or v for k, v in defaults.items()}
            return super().handle_request(request)

    return BoundedTransport()


def _parse_time(text: Any) -> datetime | None:
    """Replicate timestamps (``...T11:46:16.0649Z``, any fraction length) as aware datetimes."""
    if not isinstance(text, str):
        return None
    found = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$", text.strip())
    if found is None:
        return None
    zone = found.group(3) or "Z"
    zone = "+00:00" if zone == "Z" else zone
    fraction = (found.group(2) or "0")[:6].ljust(6, "0")
    try:
        return datetime.fromisoformat(f"{found.group(1)}.{fraction}{zone}")
    except ValueError:
        return None


def _output_url(output: Any) -> str | None:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return next((item for item in output if isinstance(item, str)), None)
    if isinstance(output, dict):
        return next((item for item in output.values() if isinstance(item, str)), None)
    return None


#: Parameters for a version other than the pinned one; that version's OpenAPI schema checks their values.
OVERRIDE_PARAMETERS = [
    ParameterSpec(name="guidance_scale", kind="float"),
    ParameterSpec(name="seed", kind="int"),
    ParameterSpec(name="inference_steps", kind="int"),
]


class ReplicateRoute:
    name: ClassVar[str] = "replicate"

    def __init__(self, *, settings: Settings, credential: Credential | None) -> None:
        self.settings = settings
        self.credential = credential
        self.version = settings.replicate_version or PINNED_VERSION
        self.base_url = (settings.replicate_base_url or DEFAULT_BASE_URL).rstrip("/")
        self._client: Any = None
        self._lock = threading.Lock()
        self._last = threading.local()

    def info(self) -> RouteInfo:
        if self.version == PINNED_VERSION:
            return INFO
        # Another version has its own schema (later ones add inference_steps, narrow guidance_scale): accept
        # what any LatentSync version takes here, and let its fetched schema decide ranges before upload.
        return INFO.model_copy(update={"model_version": self.version, "parameters": OVERRIDE_PARAMETERS})

    def availability(self) -> str | None:
        if not module_available("replicate"):
            return not_installed_message("replicate", "replicate", "replicate")
        if self.credential is None:
            return (
                "route 'replicate' needs REPLICATE_API_TOKEN (argument replicate_api_token=, env "
                "REPLICATE_API_TOKEN, or keyring service 'latentsync-routes')"
            )
        return None

    def provider_parameters(self, request: LipSyncRequest) -> dict[str, Any]:
        return map_parameters(self.info(), request)

    def estimate(self, request: LipSyncRequest, video: MediaInfo, audio: MediaInfo) -> CostEstimate:
        return estimate_replicate(audio.duration)

    # -- execute ------------------------------------------------------------------------------------
    def execute(self, job: JobContext) -> RouteOutput:
        """Validate, upload, create (journalled before waiting), wait, download, price, delete uploads."""
        from ..download import download_output, ensure_writable

        ensure_writable(job, self.name)
        params = self.provider_parameters(job.request)
        client = self._sdk()
        running = bool(job.resume_request_id)  # while a prediction may still read the inputs, keep them
        try:
            if job.resume_request_id:
                prediction_id = job.resume_request_id
                job.report(f"replicate: resuming prediction {prediction_id}", None)
            else:
                openapi = version_openapi(job, client, model=MODEL, version=self.version, base_url=self.base_url,
                                          call=self._call, failure=self._failure)
                input_schema_check(openapi, params, model=MODEL, version=self.version)
                video, audio = self._upload_inputs(job, client)
                running = True  # from here a failed or ambiguous create may have left a prediction
                prediction_id = self._create(job, client, {"video": video, "audio": audio, **params})
            prediction = self._wait(job, client, prediction_id)
            running = False
            cost, basis = self._settle(job, prediction)
            url = _output_url(prediction.get("output"))
            if url is None:
                raise ProviderError("the prediction succeeded without an output URL", route=self.name,
                                    request_id=prediction_id)
            job.report("replicate: downloading the output", None)
            path = download_output(job, url, route=self.name, request_id=prediction_id, headers=self._auth_for(url))
            job.mark(not_deleted=[*job.record.not_deleted,
                                  f"{url.split('?', 1)[0]} (output: Replicate removes it 1 h after the prediction)"])
            job.report("replicate: done", 1.0)
            return RouteOutput(output_path=path, output_url=url, provider_request_id=prediction_id, actual_cost=cost,
                               cost_basis=basis)
        except DeadlineExceeded:
            running = False  # cancelled; if the cancel failed, deleting the inputs helps stop it
            raise
        except (ProviderInputRejected, AuthenticationError) as exc:
            running = running and exc.request_id is not None  # a refused create made nothing
            raise
        finally:
            self._delete_uploads(job, client, keep=running)

    def _sdk(self) -> Any:
        with self._lock:
            if self._client is None:
                if self.credential is None:
                    raise MissingCredentials("route 'replicate' needs REPLICATE_API_TOKEN", route=self.name)
                import httpx
                import replicate

                self._client = replicate.Client(
                    api_token=self.credential.value.get_secret_value(),
                    base_url=self.base_url,
                    timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                    mounts={"all://": _bounded_transport()},  # bypasses the SDK's RetryTransport (see above)
                    event_hooks={"response": [self._remember]},
                )
            return self._client

    def _remember(self, response: httpx.Response) -> None:
        """Keep the last response of this thread: ``ReplicateError`` drops headers (Retry-After) and body."""
        self._last.response = response

    def _call(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        self._last.response = None
        return func(*args, **kwargs)

    def _last_response(self) -> httpx.Response | None:
        response: httpx.Response | None = getattr(self._last, "response", None)
        return response

    def _auth_for(self, url: str) -> dict[str, str]:
        """Send the token only to the API's own origin, never to a third-party output host."""
        api, target = urlsplit(self.base_url), urlsplit(url)
        if (api.scheme, api.netloc) == (target.scheme, target.netloc) and self.credential is not None:
            return {"Authorization": f"Bearer {self.credential.value.get_secret_value()}"}
        return {}

    # -- uploads -------------------------------------------------------------------------------
    def _upload_inputs(self, job: JobContext, client: Any) -> tuple[str, str]:
        urls: list[str] = []
        uploaded: list[str] = []
        for role, source in (("video", job.request.video), ("audio", job.request.audio)):
            if source.kind == "url":
                urls.append(str(source.url))
                continue
            job.report(f"replicate: uploading the {role}", None)
            url = run_step(job, "upload", partial(self._upload_one, client, source))
            urls.append(url)
            uploaded.append(url)
            job.mark(uploaded_uris=list(uploaded))  # journalled at once, so a later failure still deletes it
        job.mark("uploaded", uploaded_uris=uploaded)
        return urls[0], urls[1]

    def _upload_one(self, client: Any, source: MediaSource) -> str:
        """One files-API upload (streamed from disk). It creates no prediction, so it may be retried."""
        try:
            if source.kind == "bytes":
                created = self._call(client.files.create, io.BytesIO(source.data or b""),
                                     filename=source.name or "input.bin")
            else:
                created = self._call(client.files.create, source.path)
        except OSError as exc:
            raise StepFailure(RouteError(f"cannot read {source.describe()}: {exc.strerror or exc}", route=self.name),
                              retryable=False) from None
        except Exception as exc:  # noqa: BLE001 - mapped by kind
            raise self._failure(exc, step="upload") from None
        url = (created.urls or {}).get("get")
        if not isinstance(url, str):
            raise StepFailure(ProviderError("the files API answered without a URL", route=self.name), retryable=False)
        return url

    # -- create ----------------------------------------------------------------------------------------
    def _create(self, job: JobContext, client: Any, inputs: dict[str, Any]) -> str:
        since = datetime.now(timezone.utc)
        started = utcnow()

        def one_try() -> str:
            try:
                prediction = self._call(client.predictions.create, version=self.version, input=inputs, wait=False)
            except Exception as exc:  # noqa: BLE001 - mapped by kind
                raise self._failure(exc, step="submit") from None
            return str(prediction.id)

        try:
            prediction_id = run_step(job, "submit", one_try, record_success=False)
        except AmbiguousSubmit as exc:
            prediction_id = self._find_created(job, client, inputs, since, exc)
        job.mark("submitted", provider_request_id=prediction_id, submitted_at=utcnow())
        record_attempt(job, "submit", ok=True, started_at=started, request_id=prediction_id)
        job.report(f"replicate: created prediction {prediction_id}", None)
        return prediction_id

    def _find_created(self, job: JobContext, client: Any, inputs: dict[str, Any], since: datetime,
                      cause: AmbiguousSubmit) -> str:
        """After an ambiguous create: adopt the one recent prediction with our version and input, or raise."""
        earliest = since - timedelta(seconds=LOOKUP_WINDOW_S)

        def one_try() -> list[str]:
            found: list[str] = []
            cursor: Any = ...
            for _ in range(3):  # newest first; three pages cover any plausible window
                try:
                    page = self._call(client.predictions.list, cursor)
                    results, cursor = [p.dict() for p in page.results], page.next
                except ValueError:  # a status replicate 1.0.7 cannot parse ("aborted"): read the raw page
                    raw = json_or_none(self._last_response()) or {}
                    results, cursor = list(raw.get("results") or []), raw.get("next")
                except Exception as exc:  # noqa: BLE001 - mapped by kind
                    raise self._failure(exc, step="wait") from None
                created = [(p, _parse_time(p.get("created_at"))) for p in results]
                found += [str(p["id"]) for p, at in created if p.get("version") == self.version
                          and p.get("input") == inputs and (at is None or at >= earliest)]
                if not cursor or any(at is not None and at < earliest for _, at in created):
                    break
            return found

        try:
            matches = run_step(job, "submit", one_try, record_success=False)
        except LatentSyncError as exc:
            raise AmbiguousSubmit(f"{cause.message}; looking it up failed too ({exc.message})",
                                  route=self.name) from None
        if len(matches) == 1:
            job.report(f"replicate: the create was ambiguous; found prediction {matches[0]} by lookup", None)
            return matches[0]
        found = f"found {len(matches)} candidates ({', '.join(matches)})" if matches else "found none"
        raise AmbiguousSubmit(f"{cause.message}; a lookup of recent predictions with this version and input {found}, "
                              "so nothing was created again; check your Replicate predictions before re-running",
                              route=self.name)

    # -- wait ------------------------------------------------------------------------------------------
    def _wait(self, job: JobContext, client: Any, prediction_id: str) -> dict[str, Any]:
        from replicate.prediction import Prediction

        on_deadline = partial(self._deadline, job, client, prediction_id)
        last: tuple[Any, ...] = ()
        while True:
            if job.remaining() <= 0:
                on_deadline()
            prediction = run_step(job, "wait", partial(self._get, client, prediction_id), request_id=prediction_id,
                                  record_success=False, on_deadline=on_deadline)
            status = prediction.get("status")
            progress = Prediction.Progress.parse(prediction.get("logs") or "")
            now = (status, progress.current if progress else None)
            if now != last:
                shown = f" {progress.current}/{progress.total}" if progress else ""
                job.report(f"replicate: {status}{shown}", progress.percentage if progress else None)
                last = now
            if status in _TERMINAL:
                return prediction
            time.sleep(max(0.0, min(self.settings.poll_interval, job.remaining())))

    def _get(self, client: Any, prediction_id: str) -> dict[str, Any]:
        try:
            prediction = self._call(client.predictions.get, prediction_id)
            data: dict[str, Any] = prediction.dict()
        except ValueError:  # "aborted" (or another status 1.0.7 does not know): read the raw reply
            raw = json_or_none(self._last_response())
            if not isinstance(raw, dict) or "status" not in raw:
                raise StepFailure(ProviderError("Replicate answered an unreadable prediction", route=self.name,
                                                request_id=prediction_id), retryable=True) from None
            return raw
        except Exception as exc:  # noqa: BLE001 - mapped by kind
            raise self._failure(exc, step="wait", request_id=prediction_id) from None
        return data

    def _deadline(self, job: JobContext, client: Any, prediction_id: str) -> NoReturn:
        """Cancel at the provider; what the prediction ran until then is billed and recorded."""
        started = utcnow()
        data: Any = None
        try:
            try:
                data = self._call(client.predictions.cancel, prediction_id).dict()
            except ValueError:
                data = json_or_none(self._last_response())
            record_attempt(job, "cancel", ok=True, started_at=started, request_id=prediction_id)
            note = "it was cancelled"
        except Exception as exc:  # noqa: BLE001 - the deadline error below is what matters
            failure = self._failure(exc, step="cancel", request_id=prediction_id)
            record_attempt(job, "cancel", ok=False, started_at=started, error=failure.error if isinstance(
                failure.error, RouteError) else None, request_id=prediction_id)
            note = f"the cancel failed ({failure.error.message}), so it may still run and be billed"
        seconds = _predict_time(data)
        billed = replicate_cost_for_predict_time(seconds) if seconds else 0.0
        error = DeadlineExceeded(
            f"Replicate prediction {prediction_id} did not finish within the job deadline; {note}; "
            f"billed for {seconds or 0:.2f} s of predict time (${billed:.4f})", route=self.name,
            request_id=prediction_id)
        record_attempt(job, "wait", ok=False, error=error, request_id=prediction_id, billed_amount=billed)
        raise error

    def _settle(self, job: JobContext, prediction: dict[str, Any]) -> tuple[float | None, str]:
        """Price a terminal prediction; a failed or cancelled one raises with its billed amount recorded."""
        status, pid = prediction.get("status"), str(prediction.get("id"))
        seconds = _predict_time(prediction)
        cost = replicate_cost_for_predict_time(seconds) if seconds is not None else None
        entry = price_book()["replicate"]
        basis = (f"metrics.predict_time {seconds:.2f} s x ${entry['per_second']}/s ({entry['hardware']}) = ${cost:.4f}"
                 if seconds is not None and cost is not None else "Replicate reported no metrics.predict_time")
        if status == "succeeded":
            job.mark("completed")
            return cost, basis
        error: RouteError
        if status == "failed":
            reason = " ".join(str(prediction.get("error") or "no error message").split())[:300]
            error = JobFailed(f"the model failed on Replicate: {reason}; {basis}", route=self.name, request_id=pid)
        else:
            error = JobCancelled(f"the prediction ended {status}; {basis if status == 'canceled' else 'not billed'}",
                                 route=self.name, request_id=pid)
        billed = (cost or 0.0) if status != "aborted" else 0.0
        record_attempt(job, "wait", ok=False, error=error, request_id=pid, billed_amount=billed)
        raise error

    # -- cleanup, errors ---------------------------------------------------------------------------------
    def _delete_uploads(self, job: JobContext, client: Any, *, keep: bool) -> None:
        """Delete this job's files-API uploads; record each outcome (kept ones expire at Replicate)."""
        outcome = self._delete_files(client, job.record, keep=keep)
        if outcome is not None:
            job.mark(deleted=outcome[0], not_deleted=outcome[1])

    def delete_remote(self, record: JobRecord) -> tuple[list[str], list[str]]:
        """For ``delete_job``: delete the uploads still at Replicate; (newly deleted, still there)."""
        outcome = self._delete_files(self._sdk(), record, keep=False) if self.credential is not None else None
        if outcome is None:
            pending = [url for url in record.uploaded_uris if url not in record.deleted]
            return [], [f"{url} (no REPLICATE_API_TOKEN to delete it; it expires at Replicate)" for url in pending]
        deleted, kept = outcome
        return [url for url in deleted if url not in record.deleted], kept

    def _delete_files(self, client: Any, record: JobRecord, *, keep: bool) -> tuple[list[str], list[str]] | None:
        """Try to delete every upload of ``record`` not yet deleted; ``None`` when there is none."""
        pending = [url for url in record.uploaded_uris if url not in record.deleted]
        if not pending:
            return None
        deleted = list(record.deleted)
        kept = [entry for entry in record.not_deleted if entry.split(" ", 1)[0] not in pending]
        for url in pending:
            if keep:
                kept.append(f"{url} (kept: the prediction may still be running; resume the job, or it expires)")
                continue
            try:
                self._call(client.files.delete, url.rstrip("/").rsplit("/", 1)[-1])
                deleted.append(url)
            except Exception as exc:  # noqa: BLE001 - a failed delete is recorded, never fatal
                if getattr(exc, "status", None) == 404:
                    deleted.append(url)
                else:
                    kept.append(f"{url} (delete failed: {type(exc).__name__} {getattr(exc, 'status', '')}; "
                                "it expires at Replicate)")
        return deleted, kept

    def _failure(self, exc: Exception, *, step: str, request_id: str | None = None) -> StepFailure:
        """Map an SDK or transport exception to a classified failure (Retry-After from the last response)."""
        name = self.credential.name if self.credential is not None else "REPLICATE_API_TOKEN"
        return replicate_failure(exc, step=step, request_id=request_id, response=self._last_response(),
                                 credential_name=name)


def _predict_time(prediction: Any) -> float | None:
    metrics = prediction.get("metrics") if isinstance(prediction, dict) else None
    value = metrics.get("predict_time") if isinstance(metrics, dict) else None
    return float(value) if isinstance(value, (int, float)) else None
