"""Deciding an ambiguous submit by time, once for every hosted route.

A submit that may or may not have created a provider job (a dropped connection after sending, a gateway
5xx, a process killed mid-request) is decided from the provider's request listing, never from the
payload: a provider may store no inputs (fal with ``X-Fal-Store-IO: 0``) or drop them (Replicate, an hour
after the end). What the listing does give is *when* each request was sent. So:

* the **window** is when our submit could have reached the provider: from ``submitting_at`` (written before
  the request left) to the end of the submit request's own timeout, widened by a clock skew on each side;
* **candidates** are requests of this endpoint sent inside the window, that started, and that no other job
  in the journal holds (a request id another job owns is never adopted);
* **one candidate for one ambiguous job** (no other job of the route was ambiguous in an overlapping
  window): adopt it;
* **none yet** while a request sent in the window could still be running and not yet listed (the route's
  bound, journalled with ``submitting`` as ``submit_settles_at``): stay ambiguous until then;
* **none after that bound**: nothing was created, so submitting again cannot pay twice;
* **more candidates than ambiguous jobs**, or a provider with no listing: stay ambiguous, list what was
  seen, and count the worst case in ``cost.billed_unknown`` until the user decides.

A route takes part through two hooks: ``lookup`` (its listing, as :class:`Listed` items) and
``submit_bounds`` (how long its submit may be in flight, and by when a request it created has surely
ended and is listed). Pure functions here; the template (:mod:`.hosted`) runs them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from ..errors import AmbiguousSubmit, LatentSyncError
from ..money import from_micros, micros, total
from ..retry import record_attempt, run_step
from ..types import JobRecord, utcnow
from .hosted_status import Listed as Listed

if TYPE_CHECKING:
    from .base import JobContext
    from .hosted_hooks import HostedHooks

#: Clock skew allowed between this machine and the provider's timestamps, on each side of the window: wide,
#: since a window that missed our own request would let a later run submit again (and pay twice).
CLOCK_SKEW_S = 60.0
#: The submit window of a record written before windows were journalled: the longest submit timeout.
DEFAULT_SUBMIT_WINDOW_S = 60.0
#: The ``billed_unknown_basis`` prefix of an ambiguous submit's worst case (removed once it is decided).
WORST_CASE_NOTE = "ambiguous submit"


@dataclass(frozen=True)
class Finding:
    """What the listing says about one ambiguous submit."""

    #: the one request to adopt
    adopt: str | None = None
    #: nothing was created: submitting again cannot pay twice
    resubmit: bool = False
    #: the requests that could be this job's (when not exactly one for one job)
    candidates: tuple[str, ...] = ()
    #: no candidate yet; the submit can be decided at this time
    decide_at: datetime | None = None
    #: False when the provider has no listing
    searchable: bool = True
    #: jobs of this route whose ambiguous submits overlap this one's window (this one included)
    ambiguous_jobs: int = 1

    def describe(self, route: str) -> str:
        if not self.searchable:
            return f"{route} has no request listing to look it up in"
        if self.candidates:
            return (
                f"{len(self.candidates)} request(s) of {self.ambiguous_jobs} ambiguous job(s) were sent in the "
                f"submit's window ({', '.join(self.candidates)}), so none can be told to be this job's"
            )
        if self.decide_at is not None:
            return (
                f"no request sent in the submit's window is listed yet; one sent then may still be running "
                f"until {self.decide_at:%Y-%m-%d %H:%M:%S} UTC, when it can be decided"
            )
        return "no request sent in the submit's window is listed"


def window(record: JobRecord) -> tuple[datetime, datetime]:
    """When this job's last submit could have reached the provider, widened by the clock skew."""
    start = record.submitting_at or record.created_at
    end = record.submit_window_end or start + timedelta(seconds=DEFAULT_SUBMIT_WINDOW_S)
    skew = timedelta(seconds=CLOCK_SKEW_S)
    return start - skew, end + skew


def held_elsewhere(record: JobRecord, others: Iterable[JobRecord]) -> set[str]:
    """Request ids other journal jobs hold (now or from earlier attempts), and this job's earlier ones."""
    held = set(record.previous_request_ids)
    for other in others:
        if other.job_id != record.job_id:
            held.update(r for r in (other.provider_request_id, *other.previous_request_ids) if r)
    return held


def _overlaps(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]


def ambiguous_jobs(record: JobRecord, others: Iterable[JobRecord]) -> int:
    """This job and the other jobs of its route left ambiguous in an overlapping submit window."""
    mine = window(record)
    return 1 + sum(
        1
        for o in others
        if o.job_id != record.job_id
        and o.route == record.route
        and o.state == "submitting"
        and o.provider_request_id is None
        and _overlaps(window(o), mine)
    )


def decide(record: JobRecord, listed: list[Listed] | None, others: list[JobRecord], now: datetime) -> Finding:
    """The protocol of the module docstring, for one ambiguous job."""
    peers = ambiguous_jobs(record, others)
    if listed is None:
        return Finding(searchable=False, ambiguous_jobs=peers)
    start, end = window(record)
    held = held_elsewhere(record, others)
    candidates = tuple(
        dict.fromkeys(
            item.request_id
            for item in listed
            if item.started and start <= item.sent_at <= end and item.request_id not in held
        )
    )
    if len(candidates) == 1 and peers == 1:
        return Finding(adopt=candidates[0])
    if candidates:
        return Finding(candidates=candidates, ambiguous_jobs=peers)
    settles = record.submit_settles_at
    if settles is not None and now >= settles + timedelta(seconds=CLOCK_SKEW_S):
        return Finding(resubmit=True, ambiguous_jobs=peers)
    decide_at = settles + timedelta(seconds=CLOCK_SKEW_S) if settles is not None else None
    return Finding(decide_at=decide_at, ambiguous_jobs=peers)


def with_worst_case(record: JobRecord, worst: float, why: str, note: str = WORST_CASE_NOTE) -> dict[str, Any]:
    """The cost update that counts an undecided charge (``note`` names it) at its worst case, once."""
    cost = record.cost
    if note in cost.billed_unknown_basis:
        return {}
    text = f"{note}: {why}; counted at its worst case ${worst:.4f} (the estimate's high end) until decided"
    basis = f"{text}; {cost.billed_unknown_basis}" if cost.billed_unknown_basis else text
    return {
        "cost": cost.model_copy(
            update={"billed_unknown": total([cost.billed_unknown, worst]), "billed_unknown_basis": basis}
        )
    }


def without_worst_case(record: JobRecord, worst: float, note: str = WORST_CASE_NOTE) -> dict[str, Any]:
    """The cost update that removes the worst case counted under ``note`` once it is decided."""
    cost = record.cost
    if note not in cost.billed_unknown_basis:
        return {}
    left = max(0, micros(cost.billed_unknown) - micros(worst))
    parts = [p for p in cost.billed_unknown_basis.split("until decided") if p.strip("; ")]
    rest = "until decided".join(p for p in parts if note not in p).strip("; ")
    return {"cost": cost.model_copy(update={"billed_unknown": from_micros(left), "billed_unknown_basis": rest})}


def resolve(route: HostedHooks, job: JobContext, cause: str) -> str | None:
    """Decide the job's ambiguous submit: the adopted request id, or ``None`` to submit again (nothing was
    created, or the caller forced it); else :class:`AmbiguousSubmit`, the job left ``submitting``.

    While no candidate is listed yet and one could still appear, the listing is read again, for at most
    three quarters of the time left: the rest is kept for the adopted job's wait and download.
    """
    keep = max(1.0, job.remaining() * 0.25)
    while True:
        try:
            finding = _find(route, job)
        except LatentSyncError as exc:
            return _undecided(route, job, f"{cause}; looking it up failed ({exc.message})", None)
        if finding.adopt is not None:
            job.mark(
                "submitted",
                provider_request_id=finding.adopt,
                submitted_at=utcnow(),
                **without_worst_case(job.record, _worst(route, job)),
            )
            record_attempt(job, "submit", ok=True, request_id=finding.adopt)
            job.report(
                f"{route.name}: the submit was ambiguous; request {finding.adopt} was sent in its window "
                "and no other job holds it: adopted",
                None,
            )
            return finding.adopt
        if finding.resubmit:
            job.report(
                f"{route.name}: the ambiguous submit created no request ({finding.describe(route.name)} "
                "after every request sent then has ended); submitting again",
                None,
            )
            job.mark("uploaded", provider_inputs=None, **without_worst_case(job.record, _worst(route, job)))
            return None
        waiting = finding.decide_at is not None and not finding.candidates
        if not waiting or job.force_resubmit or job.remaining() <= keep or job.cancel_requested():
            return _undecided(route, job, cause, finding)
        job.report(f"{route.name}: the submit was ambiguous; {finding.describe(route.name)}", None)
        job.sleep(min(job.settings.poll_interval, max(0.0, job.remaining() - keep)))


def _find(route: HostedHooks, job: JobContext) -> Finding:
    start, end = window(job.record)
    inputs = job.record.provider_inputs or {}
    listed = run_step(job, "submit", partial(route.lookup, job, inputs, start, end), record_success=False)
    return decide(job.record, listed, job.others(), utcnow())


def _worst(route: HostedHooks, job: JobContext) -> float:
    try:
        return route.estimate(job.request, job.video_info, job.audio_info).high
    except Exception:  # noqa: BLE001 - the estimate ran before the job; this only guards a resume
        return job.record.cost.estimated


def _undecided(route: HostedHooks, job: JobContext, cause: str, finding: Finding | None) -> str | None:
    """Forced: give the submit up (``None``). Else count the worst case where the listing cannot decide,
    and raise :class:`AmbiguousSubmit` saying what was seen and what the user can do."""
    seen = finding.describe(route.name) if finding is not None else "it could not be looked up"
    if job.force_resubmit:
        job.report(f"{route.name}: ambiguous submit ({seen}); submitting again as forced", None)
        job.mark("uploaded", provider_inputs=None)
        return None
    since = job.record.submitting_at or job.record.created_at
    if finding is not None and finding.decide_at is not None and not finding.candidates:
        then = (
            f"run the same command again (or `jobs resume`) after {finding.decide_at:%Y-%m-%d %H:%M:%S} UTC: "
            "it adopts the request if one is listed by then and submits again only if none is"
        )
    else:
        if finding is not None:
            job.mark(**with_worst_case(job.record, _worst(route, job), seen))
        then = (
            f"check {route.ambiguity_hint()} for a request sent at {since:%Y-%m-%d %H:%M:%S} UTC, then run the "
            "same command again (it looks again) or pass force_resubmit=True / --force-resubmit to submit anew "
            "(if the first request exists, both are billed)"
        )
    error = AmbiguousSubmit(
        f"the submit to {route.name} may or may not have created a job ({cause}); {seen}. "
        f"Nothing was submitted again: {then}",
        route=route.name,
    )
    record_attempt(job, "submit", ok=False, error=error)
    raise error


def cancel_undecided(route: HostedHooks, job: JobContext) -> tuple[str | None, str]:
    """``jobs cancel`` of a job left ``submitting``: the request to cancel if the listing names it; else the
    job is marked cancelled, keeping the worst case in ``billed_unknown`` unless nothing was created."""
    finding: Finding | None = None
    try:
        finding = _find(route, job)
        seen = finding.describe(route.name)
    except LatentSyncError as exc:
        seen = f"looking it up failed ({exc.message})"
    if finding is not None and finding.adopt is not None:
        job.mark(
            provider_request_id=finding.adopt,
            submitted_at=utcnow(),
            **without_worst_case(job.record, _worst(route, job)),
        )
        return finding.adopt, ""
    if finding is not None and finding.resubmit:
        job.mark(
            "cancelled",
            failure_reason="JobCancelled: cancelled; the ambiguous submit created no request",
            **without_worst_case(job.record, _worst(route, job)),
        )
        return None, f"the ambiguous submit created no request at {route.name} ({seen}); nothing to cancel there"
    job.mark(
        "cancelled",
        failure_reason=f"JobCancelled: cancelled while its submit was undecided ({seen})",
        **with_worst_case(job.record, _worst(route, job), seen),
    )
    return None, (
        f"the submit may have created a request at {route.name} ({seen}); it was not found, so it was "
        f"not cancelled there and is counted at its worst case in billed_unknown: check "
        f"{route.ambiguity_hint()}"
    )
