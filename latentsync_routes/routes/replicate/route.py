"""The ``replicate`` route: ``bytedance/latentsync`` at a pinned version, driven by the official ``replicate``.

The loop, deadline, journal and ambiguity rules are the hosted template's (:mod:`..hosted`); this module
is Replicate's single tries of each step. ``prepare`` checks every parameter against the pinned version's
``openapi_schema`` before anything is uploaded (:mod:`.schema`); uploads go to the files API;
the submit is ``predictions.create(..., wait=False)`` (replicate never retries a POST); an ambiguous
create is looked up among recent predictions by version and exact input; polls and cancels bypass the
SDK's retry transport (it sleeps for any ``Retry-After``, uncapped). Cost = ``metrics.predict_time`` x
the L40S rate, for cancelled predictions as documented and for failed ones as our reading (fact
``failed-billing``), each citing the price book's rule. Errors:
:mod:`.errors`; transport, timestamps and file deletion: :mod:`.api`.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

from ...errors import ProviderError, RouteError
from ...pricing import estimate_replicate, price_book, replicate_cost_for_predict_time
from ...retry import StepFailure, json_or_none
from ...types import CostEstimate, JobRecord, LipSyncRequest, MediaInfo, MediaSource
from .. import upload_intents
from ..base import JobContext, ParameterSpec, RouteInfo
from ..hosted import CancelOutcome, HostedRoute, Output, Status
from ..hosted_lookup import Listed
from . import NAME, SETTINGS, api, uploads
from .api import bounded_transport, delete_files, output_url, parse_time, predict_time
from .errors import replicate_failure
from .schema import OVERRIDE_PARAMETERS, input_schema_check, version_openapi

if TYPE_CHECKING:
    import httpx
    from replicate.client import Client as ReplicateClient

    from ...config import Credential, Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

MODEL = "bytedance/latentsync"
#: The version id seen in Replicate's public example prediction for this community model (Jan-2025 schema:
#: video, audio, guidance_scale 0-10 default 1.0, seed). Creating by model name 404s for community models.
PINNED_VERSION = "637ce1919f807ca20da3a448ddc2743535d2853649574cd52a933120e9b9e293"

INFO = RouteInfo(
    name=NAME,
    description="Replicate community model bytedance/latentsync at a pinned version",
    owner="Replicate runs the model; ByteDance published it and owns the model",
    model=MODEL,
    model_version=PINNED_VERSION,
    billing_owner="the Replicate account that owns REPLICATE_API_TOKEN",
    uploads_media=True,
    upload_destination="Replicate files API (api.replicate.com/v1/files), private to the token's account",
    retention="uploaded files expire after 24 h (files API expires_at) and are deleted by this route after the "
    "job; prediction data (inputs, outputs, logs) is removed after 1 h; the output is downloaded at once",
    retention_days=1.0,
    deletion="uploaded files are deleted through the files API after the job (else they expire after 24 h); "
    "prediction data expires after 1 h",
    weights_licence="openrail++",
    weights_licence_source="https://huggingface.co/ByteDance/LatentSync-1.5",
    commercial_use_allowed=True,
    max_input_bytes=100 * 1024 * 1024,
    max_audio_seconds=300.0,
    failure_billing="a canceled prediction is billed for the time it ran and an aborted (never started) one is "
    "free (documented); billing a failed one for its predict time is our reading (fact failed-billing)",
    failure_billing_source="https://replicate.com/docs/topics/predictions/lifecycle",
    support_path=[
        "https://replicate.com/docs",
        "https://replicate.com/bytedance/latentsync",
        "https://github.com/bytedance/LatentSync/issues",
    ],
    credential_env=SETTINGS.credential_env,
    sdk_module="replicate",
    sdk_package="replicate",
    base_url_env=SETTINGS.base_url_env,
    default_base_url=SETTINGS.default_base_url,
    default_concurrency=8,
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


DEFAULT_BASE_URL = str(SETTINGS.default_base_url)
#: An ambiguous create is looked for among predictions created since its submit began, less this skew.
CLOCK_SKEW_S = 60.0
#: Pages of recent predictions (newest first) searched after an ambiguous create.
LOOKUP_PAGES = 3
_STATES: dict[str, Literal["queued", "running", "succeeded", "failed", "cancelled"]] = {
    "starting": "queued",
    "processing": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "cancelled",
    "aborted": "cancelled",
}


class ReplicateRoute(HostedRoute):
    name: ClassVar[str] = NAME
    INFO: ClassVar[RouteInfo] = INFO
    RESULT_IS_A_REQUEST: ClassVar[bool] = False  # the output URL is in the last poll's answer

    def __init__(self, *, settings: Settings, credential: Credential | None) -> None:
        super().__init__(settings=settings, credential=credential)
        self.version = str(settings.route_setting(NAME, "version") or PINNED_VERSION)
        self.api_url = self.base_url() or DEFAULT_BASE_URL
        self._client: ReplicateClient | None = None
        self._lock = threading.Lock()
        self._last = threading.local()

    def info(self) -> RouteInfo:
        if self.version == PINNED_VERSION:
            return INFO
        # Another version has its own schema (later ones add inference_steps, narrow guidance_scale): accept
        # what any LatentSync version takes here, and let its fetched schema decide ranges before upload.
        return INFO.model_copy(update={"model_version": self.version, "parameters": OVERRIDE_PARAMETERS})

    def estimate(self, request: LipSyncRequest, video: MediaInfo, audio: MediaInfo) -> CostEstimate:
        return estimate_replicate(audio.duration)

    def output_lifetime(self, job: JobContext) -> tuple[float, str] | None:
        """Replicate removes a prediction's output an hour after it ends (fact ``data-retention``)."""
        return 3600.0, "Replicate removes a prediction's output an hour after it ends (its data-retention page)"

    def ambiguity_hint(self) -> str:
        return "your Replicate predictions (replicate.com/predictions)"

    def _sdk(self) -> ReplicateClient:
        with self._lock:
            if self._client is None:
                import httpx
                from replicate.client import Client as ReplicateClient

                self._client = ReplicateClient(
                    api_token=self.secret(),
                    base_url=self.api_url,
                    timeout=httpx.Timeout(api.REQUEST_TIMEOUT_S, connect=api.CONNECT_TIMEOUT_S),
                    mounts={"all://": bounded_transport()},  # bypasses the SDK's RetryTransport (see above)
                    event_hooks={"response": [self._remember]},
                )
            return self._client

    def _remember(self, response: httpx.Response) -> None:
        """Keep the last response of this thread: ``ReplicateError`` drops headers (Retry-After) and body."""
        self._last.response = response

    def _call(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        self._last.response = None
        return func(*args, **kwargs)

    def _last_response(self) -> httpx.Response | None:
        response: httpx.Response | None = getattr(self._last, "response", None)
        return response

    def _auth_for(self, url: str) -> dict[str, str]:
        """Send the token only to the API's own origin, never to a third-party output host."""
        api, target = urlsplit(self.api_url), urlsplit(url)
        if (api.scheme, api.netloc) == (target.scheme, target.netloc) and self.credential is not None:
            return {"Authorization": f"Bearer {self.credential.value.get_secret_value()}"}
        return {}

    # -- hooks -----------------------------------------------------------------------------------------
    def prepare(self, job: JobContext, params: dict[str, Any]) -> None:
        if job.record.provider_request_id is not None:
            return  # the prediction exists: its inputs were checked when it was created
        openapi = version_openapi(
            job,
            self._sdk(),
            model=MODEL,
            version=self.version,
            base_url=self.api_url,
            call=self._call,
            failure=self._failure,
        )
        input_schema_check(openapi, params, model=MODEL, version=self.version)

    def upload(self, job: JobContext, source: MediaSource) -> str:
        """Files an earlier try left unanswered are deleted first; this one is journalled before it leaves."""
        client = self._sdk()
        uploads.recover(self._call, client, job)
        metadata = uploads.begin(job)
        url = self._upload_one(client, source, metadata)
        uploads.finish(job, metadata, url)
        return url

    def _upload_one(self, client: ReplicateClient, source: MediaSource, metadata: dict[str, str]) -> str:
        """One files-API upload (streamed from disk). It creates no prediction, so it may be retried."""
        try:
            if source.kind == "bytes":
                data = io.BytesIO(source.data or b"")
                created = self._call(client.files.create, data, filename=source.name or "input.bin", metadata=metadata)
            else:
                created = self._call(client.files.create, source.path, metadata=metadata)
        except OSError as exc:
            raise StepFailure(
                RouteError(f"cannot read {source.describe()}: {exc.strerror or exc}", route=self.name), retryable=False
            ) from None
        except Exception as exc:  # noqa: BLE001 - mapped by kind
            raise self._failure(exc, step="upload") from None
        url = (created.urls or {}).get("get")
        if not isinstance(url, str):
            raise StepFailure(ProviderError("the files API answered without a URL", route=self.name), retryable=False)
        return url

    def submit(self, job: JobContext, inputs: dict[str, Any]) -> str:
        try:
            hook: dict[str, Any] = (
                {"webhook": job.webhook_url, "webhook_events_filter": ["completed"]} if job.webhook_url else {}
            )  # facts.py: WEBHOOK
            prediction = self._call(
                self._sdk().predictions.create, version=self.version, input=inputs, wait=False, **hook
            )
        except Exception as exc:  # noqa: BLE001 - mapped by kind
            raise self._failure(exc, step="submit") from None
        return str(prediction.id)

    def lookup(self, job: JobContext, inputs: dict[str, Any], start: datetime, end: datetime) -> list[Listed]:
        """Predictions of this version with exactly these inputs, created in the submit's window (a
        prediction's input is kept an hour after it ends, long enough for the window). Replicate lists a
        prediction from its creation, but no bound is taken from that: a miss leaves the submit ambiguous."""
        earliest = start
        found: list[Listed] = []
        cursor: Any = ...
        for _ in range(LOOKUP_PAGES):  # newest first
            try:
                page = self._call(self._sdk().predictions.list, cursor)
                results, cursor = [p.dict() for p in page.results], page.next
            except ValueError:  # a status replicate 1.0.7 cannot parse ("aborted"): read the raw page
                raw = json_or_none(self._last_response()) or {}
                results, cursor = list(raw.get("results") or []), raw.get("next")
            except Exception as exc:  # noqa: BLE001 - mapped by kind
                raise self._failure(exc, step="wait") from None
            created = [(p, parse_time(p.get("created_at"))) for p in results]
            found += [
                Listed(str(p["id"]), at or start)
                for p, at in created
                if p.get("version") == self.version
                and p.get("input") == inputs
                and (at is None or earliest <= at <= end)
            ]
            if not cursor or any(at is not None and at < earliest for _, at in created):
                break
        return found

    def poll(self, job: JobContext, request_id: str) -> Status:
        from replicate.prediction import Prediction

        try:
            data: dict[str, Any] = self._call(self._sdk().predictions.get, request_id).dict()
        except ValueError:  # "aborted" (or another status 1.0.7 does not know): read the raw reply
            raw = json_or_none(self._last_response())
            if not isinstance(raw, dict) or "status" not in raw:
                raise StepFailure(
                    ProviderError(
                        "Replicate answered an unreadable prediction", route=self.name, request_id=request_id
                    ),
                    retryable=True,
                ) from None
            data = raw
        except Exception as exc:  # noqa: BLE001 - mapped by kind
            raise self._failure(exc, step="wait", request_id=request_id) from None
        status = str(data.get("status"))
        progress = Prediction.Progress.parse(data.get("logs") or "")
        shown = f" {progress.current}/{progress.total}" if progress else ""
        state = _STATES.get(status, "running")
        billed, basis = self._billed(data, {"failed": "failure_rule", "canceled": "cancel_rule"}.get(status))
        return Status(
            state=state,
            message=f"{status}{shown}" if state != "cancelled" else status,
            fraction=progress.percentage if progress else None,
            error=str(data.get("error") or "") or None,
            data=data,
            billed=billed if status != "aborted" else 0.0,
            billed_basis=basis if status != "aborted" else "not billed (it never started)",
        )

    def cancel(self, job: JobContext, request_id: str) -> CancelOutcome:
        try:
            self._call(self._sdk().predictions.cancel, request_id)
        except ValueError:  # an answer 1.0.7 cannot parse still means the cancel was taken
            pass
        except Exception as exc:  # noqa: BLE001 - mapped by kind
            raise self._failure(exc, step="cancel", request_id=request_id) from None
        return CancelOutcome(True, "it was cancelled (Replicate bills the predict time used until then)")

    def result(self, job: JobContext, request_id: str, status: Status) -> Output:
        url = output_url(status.data.get("output") if isinstance(status.data, dict) else None)
        if url is None:
            raise StepFailure(
                ProviderError("the prediction succeeded without an output URL", route=self.name, request_id=request_id),
                retryable=False,
            )
        cost, basis = self._billed(status.data)
        job.mark(
            not_deleted=[
                *job.record.not_deleted,
                f"{url.split('?', 1)[0]} (output: Replicate removes it 1 h after the prediction)",
            ]
        )
        return Output(url=url, actual_cost=cost, cost_basis=basis, headers=self._auth_for(url))

    def _billed(self, prediction: object, rule: str | None = None) -> tuple[float | None, str]:
        """Predict time x the rate; a failed or canceled prediction cites the book's rule with source and date."""
        seconds = predict_time(prediction)
        entry = price_book()["replicate"]
        why = f" ({entry[rule]['text']} {entry[rule]['source']}, checked {entry[rule]['checked']})" if rule else ""
        if seconds is None:
            return None, f"Replicate reported no metrics.predict_time{why}"
        cost = replicate_cost_for_predict_time(seconds)
        rate = f"${entry['per_second']}/s ({entry['hardware']})"
        return cost, f"metrics.predict_time {seconds:.2f} s x {rate} = ${cost:.4f}{why}"

    # -- cleanup, errors ---------------------------------------------------------------------------------
    def cleanup(self, job: JobContext, *, provider_may_read_inputs: bool) -> None:
        """Delete this job's files-API uploads; record each outcome (kept ones expire at Replicate)."""
        if self.credential is None:
            return
        outcome = delete_files(self._call, self._sdk(), job.record, keep=provider_may_read_inputs)
        if outcome is not None:
            job.mark(deleted=outcome[0], not_deleted=outcome[1])

    def delete_remote(self, record: JobRecord) -> tuple[list[str], list[str]]:
        """For ``delete_job``: delete the uploads still at Replicate, and the files uploads a crash left
        unanswered (found by their tags); (newly deleted, still there)."""
        if self.credential is None:
            pending = [url for url in record.uploaded_uris if url not in record.deleted]
            unlooked = upload_intents.unfindable_lines(record, "Replicate", "no REPLICATE_API_TOKEN to look for it")
            kept = [f"{url} (no REPLICATE_API_TOKEN to delete it; it expires at Replicate)" for url in pending]
            return [], [*kept, *unlooked]
        try:
            left = uploads.delete_left_over(self._call, self._sdk(), record)
        except Exception as exc:  # noqa: BLE001 - the listing failed: say what may be left, delete the rest
            why = f"listing the files failed: {type(exc).__name__}; it expires at Replicate"
            left = uploads.LeftOver(kept=upload_intents.unfindable_lines(record, "Replicate", why))
        outcome = delete_files(self._call, self._sdk(), record, keep=False)
        deleted, kept = outcome if outcome is not None else ([], [])
        return [*(url for url in deleted if url not in record.deleted), *left.deleted], [*kept, *left.kept]

    def _failure(self, exc: Exception, *, step: str, request_id: str | None = None) -> StepFailure:
        """Map an SDK or transport exception to a classified failure (Retry-After from the last response)."""
        name = self.credential.name if self.credential is not None else "REPLICATE_API_TOKEN"
        return replicate_failure(
            exc, step=step, request_id=request_id, response=self._last_response(), credential_name=name
        )
