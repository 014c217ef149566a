"""Building a job's identity and record, and reading a request back out of a record.

The idempotency key is what makes a repeated call the *same* job: same inputs (by content), parameters,
route and destination. The record is the production record of that job; :func:`request_from_record` is
the way back, for ``resume`` and ``cancel``, which have only the journal to go on.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._version import __version__
from .consent import normalise_consent
from .errors import ConfigurationError
from .options import JOB_PARAMETERS
from .policy import CheckResult
from .routes.base import RouteInfo
from .types import (
    Cost,
    CostEstimate,
    InputRecord,
    JobRecord,
    LipSyncRequest,
    LipSyncResult,
    MediaInfo,
    MediaSource,
)

_KNOWN = tuple(name for name in JOB_PARAMETERS if name != "extras")


def derive_idempotency_key(
    route: str, request: LipSyncRequest, video: MediaInfo, audio: MediaInfo, output: Path
) -> str:
    """Same inputs (by content), parameters, route and destination -> same key."""
    material = {
        "route": route,
        "video": video.sha256 or request.video.describe(),
        "audio": audio.sha256 or request.audio.describe(),
        "parameters": request.given_parameters(),
        "output": str(output),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:32]


def input_record(role: str, source: MediaSource, info: MediaInfo) -> InputRecord:
    path = str(source.path.expanduser().resolve()) if source.kind == "path" and source.path is not None else None
    return InputRecord(
        role=role,  # type: ignore[arg-type]
        source=path or source.describe(),
        kind=source.kind,
        url=source.url if source.kind == "url" else None,
        sha256=info.sha256,
        size=info.size,
        duration=info.duration,
    )


def new_record(
    info: RouteInfo,
    request: LipSyncRequest,
    key: str,
    consent: str | None,
    checks: Sequence[CheckResult],
    estimate: CostEstimate,
    video_info: MediaInfo,
    audio_info: MediaInfo,
    output: Path,
    *,
    sandbox: bool = False,
) -> JobRecord:
    return JobRecord(
        job_id=uuid.uuid4().hex,
        idempotency_key=key,
        route=info.name,
        route_owner=info.owner,
        billing_owner=info.billing_owner,
        model=info.model,
        model_version=info.model_version,
        inputs=[input_record("video", request.video, video_info), input_record("audio", request.audio, audio_info)],
        parameters=request.given_parameters(),
        consent_basis=normalise_consent(consent),  # never a terminal escape, whatever was typed
        upload_destination=info.upload_destination,
        retention_policy=info.retention,
        deletion_policy=info.deletion,
        code_licence=info.code_licence,
        weights_licence=info.weights_licence,
        support_path=", ".join(info.support_path),
        cost=Cost(
            currency=estimate.currency, estimated=estimate.amount, estimated_high=estimate.high, basis=estimate.basis
        ),
        sandbox=sandbox,
        policy_checks=[c.model_dump() for c in checks],
        output_path=str(output),
        library_version=__version__,
    )


def request_from_record(record: JobRecord, *, need_inputs: bool) -> tuple[LipSyncRequest, MediaInfo, MediaInfo]:
    """The request a journalled job was made with. With ``need_inputs`` (it must upload again), every input
    must still be there as it was: a path with the same content, the URL as given; bytes cannot come back."""
    sources: list[MediaSource] = []
    infos: list[MediaInfo] = []
    for entry in record.inputs[:2]:
        infos.append(
            MediaInfo(container="recorded", duration=entry.duration or 0.0, size=entry.size, sha256=entry.sha256)
        )
        if entry.kind == "path":
            source = MediaSource(kind="path", path=Path(entry.source))
            if need_inputs:
                _same_file(source, entry, record.job_id)
        elif entry.kind == "url" and (entry.url or "?" not in entry.source):
            source = MediaSource(kind="url", url=entry.url or entry.source)
        elif need_inputs:
            raise ConfigurationError(
                f"job {record.job_id} must upload its {entry.role} again, but it was given as "
                f"{'bytes' if entry.kind == 'bytes' else 'a URL whose query was not journalled'}, which the journal "
                "does not keep; run the job again with the same inputs instead",
                route=record.route,
            )
        else:  # not needed: the provider already has it; a placeholder keeps the request well-formed
            source = MediaSource(kind="bytes", data=b"", name=f"{entry.role}.journalled")
        sources.append(source)
    extras = {k: v for k, v in record.parameters.items() if k not in _KNOWN}
    known: dict[str, Any] = {k: v for k, v in record.parameters.items() if k in _KNOWN}
    request = LipSyncRequest(video=sources[0], audio=sources[1], extras=extras, **known)
    return request, infos[0], infos[1]


def _same_file(source: MediaSource, entry: InputRecord, job_id: str) -> None:
    from .media import sha256_of

    assert source.path is not None
    if not source.path.is_file():
        raise ConfigurationError(f"job {job_id} must upload its {entry.role} again, but {source.path} is gone")
    if entry.sha256 and sha256_of(source) != entry.sha256:
        raise ConfigurationError(
            f"job {job_id} must upload its {entry.role} again, but {source.path} has changed since the job was made"
        )


def result_from_record(record: JobRecord) -> LipSyncResult:
    """The result a finished job's record stands for (what ``run`` returns, now or on a later call)."""
    return LipSyncResult(
        route=record.route,
        job_id=record.job_id,
        output_path=Path(record.output_path) if record.output_path else None,
        output_url=record.output_uri,
        provider_request_id=record.provider_request_id,
        model_version=record.model_version,
        attempts=record.attempts,
        cost=record.cost,
        timings=record.timings,
        record=record,
        sync_scores=record.sync_scores,
    )


def append_jsonl(path: Path, record: JobRecord) -> None:
    """Append one record as a JSON line (the optional log-shipping sink)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(json.loads(record.model_dump_json()), sort_keys=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")


#: What a new job paid for again (``new_job``) keeps of the old one: who, what, on whose consent, where to.
_IDENTITY = {
    "idempotency_key",
    "route",
    "route_owner",
    "billing_owner",
    "model",
    "model_version",
    "inputs",
    "parameters",
    "consent_basis",
    "upload_destination",
    "retention_policy",
    "deletion_policy",
    "code_licence",
    "weights_licence",
    "support_path",
    "sandbox",
    "policy_checks",
    "output_path",
}


def renewed(record: JobRecord) -> JobRecord:
    """A new job of the same identity (``new_job=True``): a fresh id and record that pays on its own, so the
    old record stays as it ended (fetched and paid, or failed) and ``jobs spend`` counts both once."""
    kept = record.model_dump(include=_IDENTITY)
    cost = Cost(
        currency=record.cost.currency,
        estimated=record.cost.estimated,
        estimated_high=record.cost.estimated_high,
        basis=record.cost.basis,
    )
    return JobRecord(
        **kept, job_id=uuid.uuid4().hex, cost=cost, previous_job_id=record.job_id, library_version=__version__
    )
