"""How the hosted template ends a submit it cannot be sure of, and a job it stopped: written once.

* :func:`resolve_ambiguous`: after an ambiguous submit, look the job up (the route's ``lookup``) and adopt
  the one match, stop with :class:`AmbiguousSubmit` saying where to look, or (forced) give it up;
* :func:`billing`: what a job that ended badly was billed (the route's ``settle``), an unknown charge
  counted at its worst case, never as $0;
* :func:`cancel_and_follow`: one cancel request, then the provider job followed to its end, bounded.

They use only the hooks a route declares (docs/new-route.md), so every hosted route gets them unchanged.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING

from .. import money
from ..deadlines import deadline_scope
from ..errors import AmbiguousSubmit, DeadlinePassed, LatentSyncError
from ..retry import StepFailure, record_attempt, run_step
from ..types import utcnow
from .hosted_status import CancelOutcome, Status

if TYPE_CHECKING:
    from .base import JobContext
    from .hosted import HostedRoute


def resolve_ambiguous(route: HostedRoute, job: JobContext, cause: str) -> str | None:
    """Find the provider job of an ambiguous submit; adopt it, or stop, or (forced) give it up."""
    inputs = job.record.provider_inputs or {}
    since = job.record.submitting_at or job.record.created_at
    try:
        found = run_step(job, "submit", partial(route.lookup, job, inputs, since), record_success=False)
    except LatentSyncError as exc:
        found, cause = None, f"{cause}; looking it up failed ({exc.message})"
    if found is not None and len(found) == 1:
        request_id = found[0]
        job.mark("submitted", provider_request_id=request_id, submitted_at=utcnow())
        record_attempt(job, "submit", ok=True, request_id=request_id)
        job.report(f"{route.name}: the submit was ambiguous; found request {request_id} by lookup", None)
        return request_id
    if found is None:
        seen = f"{route.name} cannot be searched for it"
    elif found:
        seen = f"a lookup found {len(found)} candidates ({', '.join(found)})"
    else:
        seen = "a lookup found no job with these inputs yet"
    if job.force_resubmit:
        job.report(f"{route.name}: ambiguous submit ({seen}); submitting again as forced", None)
        job.mark("uploaded", provider_inputs=None)
        return None
    error = AmbiguousSubmit(
        f"the submit to {route.name} may or may not have created a job ({cause}); {seen}. Nothing was submitted "
        f"again. Check {route.ambiguity_hint()} for a job started at {since:%Y-%m-%d %H:%M:%S} UTC, then run the "
        "same command again (it looks again) or pass force_resubmit=True / --force-resubmit to submit anew "
        "(if the first job exists, both are billed)",
        route=route.name,
    )
    record_attempt(job, "submit", ok=False, error=error)
    raise error


def billing(
    route: HostedRoute, job: JobContext, request_id: str, status: Status | None, *, follow_seconds: float
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
    return 0.0, note


def cancel_and_follow(
    route: HostedRoute, job: JobContext, request_id: str, *, follow_seconds: float
) -> tuple[str, Status | None]:
    """One cancel request, then polls until the provider job ends (at most ``follow_seconds``)."""
    started = utcnow()
    try:
        answer = route.cancel(job, request_id)
        record_attempt(job, "cancel", ok=answer.accepted, started_at=started, request_id=request_id)
        outcome = answer.text
    except StepFailure as failure:
        record_attempt(
            job,
            "cancel",
            ok=False,
            started_at=started,
            error=failure.error,
            http_status=failure.http_status,
            request_id=request_id,
        )
        answer = CancelOutcome(False, "")
        outcome = f"the cancel failed ({failure.error.message}), so the job may still run and be billed"
    give_up = time.monotonic() + follow_seconds
    last: Status | None = None
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
