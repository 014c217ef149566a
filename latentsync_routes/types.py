"""The data that crosses module boundaries, as pydantic v2 models.

Every route takes a :class:`LipSyncRequest` and gives a :class:`LipSyncResult` whose ``record`` is the
production :class:`JobRecord`. Media bytes never enter a record: inputs are named by path or URL and
sha256, so a record can be shipped to a log store without leaking a face or a voice.
"""

from __future__ import annotations

import ipaddress
import math
import numbers
import os
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .errors import UnsupportedSource
from .sync_record import SyncQuality

LoopMode = Literal["pingpong", "loop"]
#: created -> uploaded -> submitting -> submitted -> completed -> fetched; or failed / cancelled. ``submitting``
#: is written before the submit request leaves, so a job found there may or may not exist at the provider.
JobState = Literal["created", "uploaded", "submitting", "submitted", "completed", "fetched", "failed", "cancelled"]
#: The states in which a provider job may exist (and may be billing).
PROVIDER_STATES = ("submitting", "submitted", "completed")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class MediaSource(BaseModel):
    """A video or audio input: a local path, an http(s) URL, or bytes with a file name.

    Plain ``http`` is refused except for loopback hosts: a face sent in clear text is a leak.
    """

    model_config = ConfigDict(frozen=True)

    kind: Literal["path", "url", "bytes"]
    path: Path | None = None
    url: str | None = None
    data: bytes | None = Field(default=None, repr=False, exclude=True)
    name: str | None = None

    @classmethod
    def of(cls, value: MediaSource | str | os.PathLike[str] | bytes, *, name: str | None = None) -> MediaSource:
        """Accept what users naturally have: a path string, a Path, a URL string, or bytes."""
        if isinstance(value, MediaSource):
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            return cls(kind="bytes", data=bytes(value), name=name or "input.bin")
        text = os.fspath(value)
        if text[:5].lower() == "data:":
            # Without this a data: URI would become a path with a giant name (OSError: File name too long).
            raise UnsupportedSource(
                f"data: URIs are not accepted as inputs ({len(text)} characters); pass the bytes or a file path"
            )
        if "://" in text:
            return cls(kind="url", url=text, name=name)
        return cls(kind="path", path=Path(text).expanduser(), name=name or Path(text).name)

    @model_validator(mode="after")
    def _check(self) -> MediaSource:
        if self.kind == "path" and self.path is None:
            raise ValueError("a path source needs a path")
        if self.kind == "bytes" and self.data is None:
            raise ValueError("a bytes source needs data")
        if self.kind == "url":
            if not self.url:
                raise ValueError("a url source needs a url")
            parts = urlsplit(self.url)
            if parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname)):
                return self
            if parts.scheme == "http":
                raise UnsupportedSource(f"plain http is allowed only for loopback hosts, not {parts.hostname!r}")
            raise UnsupportedSource(f"unsupported URL scheme {parts.scheme!r}: use a path, bytes or an https URL")
        return self

    def describe(self) -> str:
        """A short, safe description for records and messages (never the bytes)."""
        if self.kind == "path":
            return str(self.path)
        if self.kind == "url":
            return str(self.url).split("?", 1)[0]
        return f"<{len(self.data or b'')} bytes: {self.name}>"


class MediaInfo(BaseModel):
    """What a PyAV probe learnt from the headers of one input."""

    container: str
    duration: float
    size: int | None = None
    sha256: str | None = None
    has_video: bool = False
    has_audio: bool = False
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    sample_rate: int | None = None


#: Sanity bounds checked before any probe, upload or payment; each route narrows them further.
SEED_MAX = 2**32 - 1
INFERENCE_STEPS_MAX = 1000
GUIDANCE_SCALE_MAX = 100.0


def _bad(where: str, message: str) -> PydanticCustomError:
    """A clean message (no "Value error," prefix); ``where`` names the key inside ``extras``, if any."""
    text = f"{where}: {message}" if where else message
    return PydanticCustomError("invalid_parameter", "{text}", {"text": text})


def _finite_real(where: str, value: Any, *, low: float, high: float) -> float:
    """A real number, never a bool (``True`` is not 1.0 here), never NaN or infinity."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _bad(where, f"must be a number, not {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise _bad(where, f"must be finite, not {result}")
    if not low <= result <= high:
        raise _bad(where, f"must be between {low:g} and {high:g}, not {result:g}")
    return result


def _bounded_int(where: str, value: Any, *, low: int, high: int) -> int:
    """An integer, never a bool and never a float (``1.5`` steps or ``True`` as a seed are mistakes)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _bad(where, f"must be an integer, not {type(value).__name__}")
    result = int(value)
    if not low <= result <= high:
        raise _bad(where, f"must be between {low} and {high}, not {result}")
    return result


def _check_named(name: str, value: Any, where: str = "") -> Any:
    if value is None:
        return None
    if name == "guidance_scale":
        return _finite_real(where, value, low=0.0, high=GUIDANCE_SCALE_MAX)
    if name == "seed":
        return _bounded_int(where, value, low=0, high=SEED_MAX)
    if name == "inference_steps":
        return _bounded_int(where, value, low=1, high=INFERENCE_STEPS_MAX)
    return value


def _check_finite(path: str, value: Any) -> None:
    """Extras reach provider JSON: NaN and infinity are not JSON and no model parameter wants them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise _bad(path, f"must be finite, not {value}")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(f"{path}.{key}", item)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_finite(f"{path}[{index}]", item)


class LipSyncRequest(BaseModel):
    """One lip-sync job as the user asked for it, before any route maps it to provider inputs.

    ``None`` means "the route's default"; a value that a route cannot honour is refused, never dropped.
    Every value is checked here, before any probe or upload: finite, in a sane range, and of its own type
    (a bool is never taken for a number).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    video: MediaSource
    audio: MediaSource
    guidance_scale: float | None = None
    seed: int | None = None
    loop_mode: LoopMode | None = None
    inference_steps: int | None = None
    extras: dict[str, Any] = Field(default_factory=dict)

    @field_validator("guidance_scale", "seed", "inference_steps", mode="before")
    @classmethod
    def _typed_number(cls, value: Any, info: ValidationInfo) -> Any:
        return _check_named(str(info.field_name), value)

    @field_validator("extras")
    @classmethod
    def _sane_extras(cls, value: dict[str, Any]) -> dict[str, Any]:
        # An extra named like a typed parameter overrides it in given_parameters(): same rules apply.
        checked = {key: _check_named(key, item, f"extras.{key}") for key, item in value.items()}
        for key, item in checked.items():
            _check_finite(f"extras.{key}", item)
        return checked

    def given_parameters(self) -> dict[str, Any]:
        """The parameters the user actually set, extras included."""
        named = (name for name in type(self).model_fields if name not in ("video", "audio", "extras"))
        given = {name: getattr(self, name) for name in named if getattr(self, name) is not None}
        given.update(self.extras)
        return given


class CostEstimate(BaseModel):
    """A price before the call, with the arithmetic spelt out and where the price came from."""

    route: str
    currency: str = "USD"
    amount: float
    low: float
    high: float
    is_exact: bool
    basis: str
    price_source: str
    price_checked: date
    output_seconds: float | None = None
    expected_wall_seconds: float | None = None
    expected_vram_gb: float | None = None
    #: Why the route (or the policy) would refuse these inputs (a limit, and the value over it); ``None``
    #: when it would take them. A refused route is still priced, so a list stays comparable, but
    #: ``run`` on it stops before anything is uploaded; ``check`` shows the same reason as a STOP row.
    refused: str | None = None


class Attempt(BaseModel):
    """One try at one step; failure billing is recorded here, per attempt."""

    number: int
    step: Literal["probe", "upload", "submit", "wait", "fetch", "cancel", "run"]
    status: Literal["ok", "error"]
    started_at: datetime
    ended_at: datetime
    error_type: str | None = None
    error_message: str | None = None
    retryable: bool = False
    http_status: int | None = None
    provider_request_id: str | None = None
    billed_amount: float = 0.0


class Cost(BaseModel):
    """What a job cost: the estimate, the actual, failure billing, and what is not known yet.

    ``billed_unknown`` holds the worst case (the estimate's high end) of a charge the provider has not
    reported (a cancelled job that may have run on): it is never counted as $0, and budgets add it.
    """

    currency: str = "USD"
    estimated: float
    #: the estimate's high end: what a job in flight holds of ``budget_total`` until it settles
    estimated_high: float | None = None
    actual: float | None = None
    billed_failures: float = 0.0
    basis: str = ""
    #: worst case of charges whose amount the provider did not report, and why
    billed_unknown: float = 0.0
    billed_unknown_basis: str = ""
    #: the provider's own usage figure, raw (fal: ``x-fal-billable-units``), and what it prices at
    billable_units: float | None = None
    units_cost: float | None = None
    #: set when the provider's figure and the price book's rule disagree
    disagreement: str | None = None
    #: what the provider's billing records say the job cost (fal: billing events), when it said; the note
    #: says where that came from, or why the recorded charge is the price book's figure instead
    provider_charge: float | None = None
    provider_charge_note: str = ""

    def worst_case(self) -> float:
        """Actual, failure-billed and unknown (at its worst case) together: what a budget must count."""
        from .money import total

        return total([self.actual, self.billed_failures, self.billed_unknown])


class InputRecord(BaseModel):
    """How an input entered the job: by path or URL and hash, never by content."""

    role: Literal["video", "audio"]
    source: str
    kind: Literal["path", "url", "bytes"]
    #: the URL as given, query included, so a resume can send the same input again (URL inputs only)
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    duration: float | None = None


class JobRecord(BaseModel):
    """The production record of one job: who ran what, on whose consent, where files went and for how long."""

    job_id: str
    """The journal's id of this job (``jobs show`` takes it)."""
    idempotency_key: str
    """Hash of the inputs, route and parameters: the same job asked twice is paid for once."""
    state: JobState = "created"
    """Where the job stands: created, uploaded, submitting, submitted, completed, fetched, failed, cancelled."""
    route: str
    """The route that ran the job (``local``, ``fal``, ``replicate``, ``wavespeed``)."""
    route_owner: str
    """Who operates the route's endpoint (the provider, or you for ``local``)."""
    billing_owner: str
    """Whose account is charged for the job."""
    model: str
    """The model as the route names it (e.g. ``fal-ai/latentsync``)."""
    model_version: str
    """The pinned model version or checkpoint that ran."""
    inputs: list[InputRecord] = Field(default_factory=list)
    """The video and audio as probed: name, hash, size, duration; never the media itself."""
    parameters: dict[str, Any] = Field(default_factory=dict)
    """The model parameters sent (seed, guidance scale, steps, ...)."""
    consent_basis: str | None = None
    """The consent statement the caller gave for the person in the video."""
    upload_destination: str
    """Where the inputs were uploaded (a provider's storage, or nowhere)."""
    retention_policy: str
    """How long the provider keeps uploads and outputs, per the route's fact sheet."""
    deletion_policy: str
    """What this package deletes after the job, and when."""
    code_licence: str = "Apache-2.0"
    """The licence of the code that ran the model."""
    weights_licence: str | None = None
    """The licence of the model weights, when known."""
    support_path: str | None = None
    """Where to ask about this job at the provider (a support address or page)."""
    uploaded_uris: list[str] = Field(default_factory=list)
    """The URLs the inputs were uploaded to."""
    upload_intents: list[str] = Field(default_factory=list)
    """Uploads begun and not yet in ``uploaded_uris``, by the tag each carries to the provider: a run
    after a crash looks them up there and deletes what they left."""
    sandbox: bool = False
    """Run against a base-URL override (a fake, a test gateway): its money is not counted as real spend."""
    provider_request_id: str | None = None
    """The provider's id of the job (fal request id, Replicate prediction id, ...): name it to support."""
    provider_inputs: dict[str, Any] | None = None
    """The provider inputs of the last submit (written with ``submitting``): how an ambiguous submit is found."""
    previous_request_ids: list[str] = Field(default_factory=list)
    """Provider jobs of earlier attempts of this job (a ``retry_failed`` or ``force_resubmit`` re-run)."""
    interrupted: str | None = None
    """Set while a job is stopped by a local failure after its provider job may exist: re-running resumes it."""
    route_choice: str | None = None
    """Why this route was chosen when the caller asked for ``cheapest``."""
    fallback_from: list[dict[str, Any]] = Field(default_factory=list)
    """The earlier routes' jobs of a ``fallback=True`` run: route, job_id, state, cost, error, and why the
    run moved on from each (``fallback``)."""
    fallback_note: str | None = None
    """In a ``fallback=True`` run, why the run did or did not move on from this job to the next route (a
    billed failure stops it unless ``fallback_after_billed_failure=True``)."""
    output_uri: str | None = None
    """The provider's URL of the output, while it lasts."""
    output_path: str | None = None
    """Where the output video was written on this machine."""
    output_expires_at: datetime | None = None
    """When the provider has surely deleted the output by its lifecycle (the route's fact sheet), counted
    from when this side saw the job end; after it, a job whose local output is gone is told so up front."""
    output_expiry_basis: str = ""
    """Why the output expires then, in words (fal: the lifetime asked for at submit)."""
    outputs_deleted_at: datetime | None = None
    """When ``jobs delete`` deleted the job's outputs on request (the record, paid and fetched, stays)."""
    previous_job_id: str | None = None
    """The journal job this one pays again for (``new_job=True``, ``--new-job``), whose record stays as it is."""
    failure_reason: str | None = None
    """Why the job failed, in words, when it did."""
    retry_reasons: list[str] = Field(default_factory=list)
    """Why each retry happened (status codes, timeouts), in order."""
    attempts: list[Attempt] = Field(default_factory=list)
    """Every attempt at the provider, with its outcome and what it was billed."""
    cost: Cost
    """Estimated and actual cost, and what failed attempts were billed."""
    policy_checks: list[dict[str, Any]] = Field(default_factory=list)
    """The safety checklist as it stood when the job started: each row, its outcome, and why."""
    deleted: list[str] = Field(default_factory=list)
    """Uploads deleted after the job."""
    not_deleted: list[str] = Field(default_factory=list)
    """Uploads that could not be deleted (they expire by the provider's retention)."""
    retention_sent: dict[str, str] = Field(default_factory=dict)
    """The retention headers actually sent to the provider (name -> value), on the submit and each upload."""
    created_at: datetime = Field(default_factory=utcnow)
    """When the job was claimed in the journal (UTC)."""
    submitting_at: datetime | None = None
    """When the submit was about to be sent (UTC)."""
    submit_window_end: datetime | None = None
    """When the last submit's request could no longer reach the provider (its own timeout); written with
    ``submitting``, it bounds the window an ambiguous submit is decided in (routes/hosted_lookup.py)."""
    submit_settles_at: datetime | None = None
    """When any request the last submit created has surely ended and is listed (``None``: no such bound,
    so no listing miss proves that nothing was created)."""
    submitted_at: datetime | None = None
    """When the provider accepted the job (UTC)."""
    completed_at: datetime | None = None
    """When the job reached its final state (UTC)."""
    timings: dict[str, float] = Field(default_factory=dict)
    """Seconds spent per stage (probe, upload, queue, run, download)."""
    sync_scores: SyncQuality | None = None
    """LSE-C / LSE-D of the output and the quality gate's outcome, when ``evaluate`` was asked (sync_gate.py)."""
    library_version: str
    """The version of this package that ran the job."""

    @field_validator("parameters")
    @classmethod
    def _no_bytes(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key, item in value.items():
            if isinstance(item, (bytes, bytearray)):
                raise ValueError(f"parameter {key!r} holds bytes; records never hold media")
        return value


class LipSyncResult(BaseModel):
    """What ``run()`` returns: where the video is, what it cost, and the full record."""

    route: str
    job_id: str
    output_path: Path | None
    output_url: str | None = None
    provider_request_id: str | None = None
    model_version: str
    attempts: list[Attempt]
    cost: Cost
    timings: dict[str, float]
    record: JobRecord
    #: the job had finished before this call, which returned its result and charged nothing
    already_done: bool = False
    #: the output's LSE-C / LSE-D and the gate's outcome (``evaluate=True`` or ``min_sync_confidence``)
    sync_scores: SyncQuality | None = None
