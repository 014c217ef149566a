"""How the hosted template ends a submit it cannot be sure of, and a job it stopped: written once.

* (an ambiguous submit is decided by time in :mod:`.hosted_lookup`);
* :func:`billing`: what a job that ended badly was billed (the route's ``settle``), an unknown charge
  counted at its worst case (:func:`count_worst_case`), never as $0;
* :func:`cancel_and_follow`: one cancel request, then the provider job followed to its end, bounded;
* :func:`ended_badly` and :func:`stop`: a job that failed or was cancelled at the provider, or that this
  side stops (deadline, cancel), recorded with what it was billed, and raised as the error it is.

They use only the hooks a route declares (docs/new-route.md), so every hosted route gets them unchanged.
"""

from __future__ import annotations

import sqlite3
import time
from typing import TYPE_CHECKING, Literal, NoReturn

from .. import money
from ..deadlines import deadline_scope
from ..errors import ClaimLost, DeadlineExceeded, DeadlinePassed, JobCancelled, JobFailed, LatentSyncError
from ..retry import StepFailure, record_attempt
from ..types import utcnow
from .hosted_status import CancelOutcome, Status

if TYPE_CHECKING:
    from .base import JobContext
    from .hosted_hooks import HostedHooks

#: The most one cancel request may take (its own bound: the job's deadline may be gone, and the follow-up
#: after it may be short; a cancel that is never sent leaves the provider job running and billed).
CANCEL_REQUEST_SECONDS = 30.0


def billing(
    route: HostedHooks, job: JobContext, request_id: str, status: Status | None, *, follow_seconds: float
) -> tuple[float, str]:
    """What a job that ended badly was billed, for its attempt; an unknown charge is recorded at its
    worst case (the estimate's high end) in ``cost.billed_unknown``, never as $0."""
    with deadline_scope(time.monotonic() + follow_seconds):
        try:
            amount, basis = route.settle(job, request_id, status)
        except (StepFailure, LatentSyncError, DeadlinePassed) as exc:
            amount, basis = None, f"asking {route.name} what it billed failed ({type(exc).__name__})"
    if amount is not None:
        return amount, basis
    return 0.0, count_worst_case(route, job, basis)


def count_worst_case(route: HostedHooks, job: JobContext, basis: str) -> str:
    """Record a charge the provider may have made but did not report at its worst case (the estimate's
    high end) in ``cost.billed_unknown``, so budgets and fallbacks count it; returns the note said."""
    try:
        worst = route.estimate(job.request, job.video_info, job.audio_info).high
    except Exception:  # noqa: BLE001 - the estimate ran before the job; this only guards a resume
        worst = job.record.cost.estimated
    note = (
        f"{basis}; billing unknown, counted at its worst case ${worst:.4f} (the estimate's high end) "
        "until the provider's usage page says otherwise"
    )
    cost = job.record.cost
    job.mark(
        cost=cost.model_copy(
            update={"billed_unknown": money.total([cost.billed_unknown, worst]), "billed_unknown_basis": note}
        )
    )
    return note


def cancel_and_follow(
    route: HostedHooks, job: JobContext, request_id: str, *, follow_seconds: float
) -> tuple[str, Status | None]:
    """One cancel request (bounded by its own :data:`CANCEL_REQUEST_SECONDS`, so a short follow-up or a
    slow machine never keeps the cancel from being sent), then polls until the provider job ends (at
    most ``follow_seconds``)."""
    started = utcnow()
    try:
        with deadline_scope(time.monotonic() + max(CANCEL_REQUEST_SECONDS, follow_seconds)):
            answer = route.cancel(job, request_id)
        record_attempt(job, "cancel", ok=answer.accepted, started_at=started, request_id=request_id)
        outcome = answer.text
    except (StepFailure, DeadlinePassed) as exc:
        error = exc.error if isinstance(exc, StepFailure) else exc
        http_status = exc.http_status if isinstance(exc, StepFailure) else None
        record_attempt(
            job, "cancel", ok=False, started_at=started, error=error, http_status=http_status, request_id=request_id
        )
        answer = CancelOutcome(False, "")
        said = error.message
        outcome = f"the cancel failed ({said}), so the job may still run and be billed"
    give_up = time.monotonic() + follow_seconds
    last: Status | None = None
    with deadline_scope(give_up):
        while time.monotonic() < give_up:
            try:
                last = route.poll(job, request_id)
            except (StepFailure, DeadlinePassed):  # a failed poll, or the follow-up's time is up
                break
            if last.state in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(min(max(route.settings.poll_interval, 0.05), 1.0))
    if last is not None and last.state == "succeeded" and not answer.accepted:
        outcome += "; it finished (and is billed), but its output was not fetched"
    return outcome, last


def ended_badly(route: HostedHooks, job: JobContext, request_id: str, status: Status, follow_s: float) -> NoReturn:
    """The provider job failed or was cancelled there: record what it was billed, mark the job, raise."""
    billed, said = billing(route, job, request_id, status, follow_seconds=follow_s)
    basis = f"; {said}" if said else ""
    error: LatentSyncError
    if status.state == "failed":
        reason = " ".join((status.error or "no error message").split())[:300]
        error = JobFailed(f"the model failed on {route.name}: {reason}{basis}", route=route.name, request_id=request_id)
    else:
        ended = status.message or "cancelled"
        error = JobCancelled(
            f"the {route.name} job ended {ended} at the provider{basis}", route=route.name, request_id=request_id
        )
    record_attempt(job, "wait", ok=False, error=error, request_id=request_id, billed_amount=billed)
    job.mark(
        "failed" if status.state == "failed" else "cancelled",
        failure_reason=f"{type(error).__name__}: {error.message}",
    )
    raise error


def stop(
    route: HostedHooks, job: JobContext, request_id: str, why: Literal["deadline", "cancel"], follow_s: float
) -> NoReturn:
    """Cancel at the provider, follow the job to its end for ``follow_s``, record it, raise (a route without
    a cancel is left to run on instead: :func:`.hosted_runs_on.outlive_deadline`)."""
    try:
        job.mark()  # journalled before the cancel leaves: an owner whose claim was taken over stops here
    except ClaimLost:
        raise  # the caller holding the job now carries the cancel out; a second one is not sent from here
    except (sqlite3.Error, LatentSyncError):
        pass  # a journal that cannot be written now must not keep the provider job running
    outcome, status = route.cancel_and_follow(job, request_id)
    billed, said = billing(route, job, request_id, status, follow_seconds=follow_s)
    basis = f"; {said}" if said else ""
    error: LatentSyncError
    if why == "deadline":
        text = f"{route.name} request {request_id} did not finish within the job deadline; {outcome}{basis}"
        error = DeadlineExceeded(text, route=route.name, request_id=request_id)
    else:
        text = f"{route.name} request {request_id} was cancelled by the caller; {outcome}{basis}"
        error = JobCancelled(text, route=route.name, request_id=request_id)
    record_attempt(job, "wait", ok=False, error=error, request_id=request_id, billed_amount=billed)
    job.mark("cancelled", failure_reason=f"{type(error).__name__}: {error.message}")
    raise error
