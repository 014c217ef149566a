"""The claimed job: decide what it needs (nothing, a re-run, a carry-on), run it on its route, journal its end.

``LipSyncClient.run``, ``resume`` and ``cancel`` reach this point holding the job's claim; everything here
writes the journal only as the claim's owner, so two callers can never both drive one job.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ClaimLost, DeadlineExceeded, JobAlreadyFailed, JobCancelled, LatentSyncError, RouteError
from .journal import TERMINAL_BAD, TERMINAL_OK, Claim, append_jsonl
from .records import result_from_record
from .routes.base import JobContext, ProgressCallback, Route
from .types import PROVIDER_STATES, JobRecord, LipSyncRequest, LipSyncResult, MediaInfo

if TYPE_CHECKING:
    from .client import LipSyncClient

log = logging.getLogger(__name__)


def drive(
    client: LipSyncClient,
    route: Route,
    claim: Claim,
    record: JobRecord,
    request: LipSyncRequest,
    video_info: MediaInfo,
    audio_info: MediaInfo,
    output_path: Path,
    *,
    deadline: float,
    overwrite: bool,
    progress: ProgressCallback | None,
    retry_failed: bool,
    force_resubmit: bool,
    cancel_event: threading.Event | None = None,
) -> LipSyncResult:
    """Decide what the claimed job needs (nothing, a re-run, a carry-on) and do it."""
    if record.state == TERMINAL_OK and record.output_path and Path(record.output_path).is_file():
        log.info("job %s already fetched; not running again", record.job_id)
        return result_from_record(record)
    if record.state in TERMINAL_BAD:
        if reached_provider(record) and not retry_failed:
            raise JobAlreadyFailed(
                f"job {record.job_id} already ended {record.state} ({record.failure_reason}); running it again "
                "would pay for a new provider job: pass retry_failed=True (CLI: --retry-failed) to do that",
                route=record.route, request_id=record.provider_request_id)
        if record.provider_request_id:
            record.previous_request_ids.append(record.provider_request_id)
        record.provider_request_id = None
        record.provider_inputs = None
        record.state = "created"
        record.failure_reason = None
    elif record.state == TERMINAL_OK:  # the output file went missing: fetch the finished job again
        record.state = "completed"
    record.output_path = str(output_path)
    job = context(client, claim, record, request, video_info, audio_info, output_path, deadline=deadline,
                        overwrite=overwrite or record.state in PROVIDER_STATES, progress=progress,
                        force_resubmit=force_resubmit, cancel_event=cancel_event)
    return execute(client, route, job)

def context(
    client: LipSyncClient,
    claim: Claim,
    record: JobRecord,
    request: LipSyncRequest,
    video_info: MediaInfo,
    audio_info: MediaInfo,
    output_path: Path,
    *,
    deadline: float,
    overwrite: bool,
    progress: ProgressCallback | None,
    force_resubmit: bool = False,
    cancel_event: threading.Event | None = None,
) -> JobContext:
    owner = claim.owner
    claim.start_heartbeat()
    return JobContext(
        record=record, request=request, video_info=video_info, audio_info=audio_info, output_path=output_path,
        settings=client.settings, credential=client.credential(record.route), deadline=time.monotonic() + deadline,
        overwrite=overwrite, progress=progress, persist=lambda r: client.journal.save(r, owner=owner),
        force_resubmit=force_resubmit, cancel_event=cancel_event or threading.Event(),
        cancel_flag=claim.cancel_requested, others=lambda: client.journal.list(limit=500, route=record.route),
    )

def execute(client: LipSyncClient, route: Route, job: JobContext) -> LipSyncResult:
    started = time.monotonic()
    record = job.record
    job.mark(interrupted=None)
    try:
        outcome = route.execute(job)
    except ClaimLost as lost:  # another caller owns the job now; this one writes nothing more
        if _cancelled_all_the_same(job):
            raise JobCancelled(f"job {record.job_id} was cancelled; the caller that took it over carries the cancel "
                               f"out ({lost.message})", route=record.route,
                               request_id=record.provider_request_id) from lost
        raise
    except LatentSyncError as exc:
        finish_failed(client, job, exc, started)
        raise
    except Exception as exc:
        wrapped = RouteError(f"unexpected {type(exc).__name__}: {exc}", route=record.route,
                             request_id=record.provider_request_id)
        finish_failed(client, job, wrapped, started)
        raise wrapped from exc
    record.cost.actual = outcome.actual_cost
    if outcome.cost_basis:
        record.cost.basis = outcome.cost_basis
    record.timings["total_seconds"] = round(time.monotonic() - started, 3)
    job.mark(
        "fetched",
        output_path=str(outcome.output_path),
        output_uri=outcome.output_url,
        provider_request_id=outcome.provider_request_id or record.provider_request_id,
        completed_at=now(),
        failure_reason=None,
    )
    if client.settings.jsonl_path is not None:
        append_jsonl(client.settings.jsonl_path, record)
    return result_from_record(record)

def _cancelled_all_the_same(job: JobContext) -> bool:
    """Whether an owner that lost its claim was cancelled (by its caller, or through the journal): then the
    cancel, not the lost claim, is what its caller is told."""
    try:
        return job.cancel_requested()
    except (sqlite3.Error, LatentSyncError):  # the journal cannot say: only what this owner saw itself
        return job.cancel_event.is_set()


def finish_failed(client: LipSyncClient, job: JobContext, exc: LatentSyncError, started: float) -> None:
    """Journal a failure: terminal if the provider job ended badly (or none was made), else interrupted."""
    record = job.record
    record.timings["total_seconds"] = round(time.monotonic() - started, 3)
    reason = f"{type(exc).__name__}: {exc.message}"
    try:
        if record.state in TERMINAL_BAD:
            job.mark()  # the route already said how the provider job ended
        elif record.state in PROVIDER_STATES:
            job.mark(interrupted=reason, failure_reason=reason)  # re-running carries on the same provider job
        else:
            job.mark("cancelled" if isinstance(exc, (JobCancelled, DeadlineExceeded)) else "failed",
                     failure_reason=reason)
    except Exception as journal_error:  # noqa: BLE001 - the job's own error is the one to raise
        log.warning("could not journal the failure of job %s: %s", record.job_id, journal_error)
        return
    if client.settings.jsonl_path is not None:
        append_jsonl(client.settings.jsonl_path, record)


def reached_provider(record: JobRecord) -> bool:
    """Whether the job ever got as far as a submit (so a new attempt would be a new paid provider job)."""
    return record.provider_request_id is not None or record.provider_inputs is not None


def must_submit(record: JobRecord, retry_failed: bool, force_resubmit: bool) -> bool:
    """Whether carrying this job on may upload its inputs again (then they must still be there)."""
    if record.state in TERMINAL_BAD:
        return retry_failed or not reached_provider(record)
    if record.state == "submitting":
        return force_resubmit
    return record.state in ("created", "uploaded")


def now() -> Any:
    from .types import utcnow

    return utcnow()


