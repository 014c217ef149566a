"""What a finished job answers when it is asked for again, told from its record, and how a new one is paid.

A job that was fetched and paid stays fetched and paid, whatever happens to its output afterwards. When it is
asked for again (``run`` with the same inputs, ``jobs resume``, ``Job.wait``) and its output is still on this
machine, that output is the answer. When it is not, the record says why before any request is made: the
outputs were deleted on request (``jobs delete``), or the provider has deleted them by the lifecycle its fact
sheet states (``output_expires_at``). Then the answer is :class:`OutputGone`, naming when and what the job was
paid, and ``new_job=True`` (``--new-job``) is the only way to pay again; ``retry_failed`` and
``force_resubmit`` never do it. Only an output that may still be at the provider is fetched again, and a
failure of that fetch leaves the record fetched (:func:`keep_fetched`), never failed.

``new_job`` makes a *new* journal job of the same identity (:func:`.records.renewed`), admitted under
``budget_total`` in the same transaction that hands it the claim, so the old record keeps its own cost and
``jobs spend`` counts each payment once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from .errors import (
    BudgetExceeded,
    JobCancelled,
    JobFailed,
    LatentSyncError,
    OutputGone,
    ProviderInputRejected,
)
from .money import exceeds
from .records import renewed
from .types import JobRecord, utcnow

if TYPE_CHECKING:
    from .budget import BudgetCap
    from .config import Settings
    from .journal import Claim, Journal

T = TypeVar("T")

#: The states in which a job's provider job has ended well: its output was made and paid for.
MADE = ("completed", "fetched")


def output_here(record: JobRecord) -> bool:
    return bool(record.output_path) and Path(record.output_path or "").is_file()


def gone_reason(record: JobRecord, now: datetime | None = None) -> str | None:
    """``"deleted"`` (on request, after the job was fetched) or ``"expired"`` (the provider's lifecycle, by
    the record), or ``None`` while the provider may still hold the output; only for a made job."""
    if record.state not in MADE:
        return None
    deleted = record.outputs_deleted_at
    if deleted is not None and (record.completed_at is None or deleted >= record.completed_at):
        return "deleted"
    expires = record.output_expires_at
    if expires is not None and (now or utcnow()) >= expires:
        return "expired"
    return None


def was_fetched(record: JobRecord) -> JobRecord | None:
    """The record as it stood fetched, for a job fetched once whose output is asked for again: ``fetched``
    now, or ``completed`` with ``completed_at`` set (a re-fetch stopped part-way, by a kill); else ``None``."""
    if record.state == "fetched" or (record.state == "completed" and record.completed_at is not None):
        return record.model_copy(deep=True, update={"state": "fetched", "interrupted": None, "failure_reason": None})
    return None


def paid_words(record: JobRecord) -> str:
    """What the job was paid, as the record says (sandbox money marked as such)."""
    cost = record.cost
    amount = cost.actual if cost.actual is not None else cost.estimated
    known = "" if cost.actual is not None else " (estimated; the provider did not say)"
    sandbox = " in the sandbox (a base-URL override, not real money)" if record.sandbox else ""
    return f"the job was paid ${amount:.4f}{known}{sandbox}"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment is not None else "an unknown time"


def output_gone(record: JobRecord, reason: str) -> OutputGone:
    """The error a made job whose output is nowhere answers with, from its record alone."""
    here = f"; the local output {record.output_path} is not there either" if record.output_path else ""
    if reason == "deleted":
        what = f"its outputs were deleted on request at {_when(record.outputs_deleted_at)} (jobs delete)"
    elif reason == "expired":
        basis = f" ({record.output_expiry_basis})" if record.output_expiry_basis else ""
        what = f"{record.route} deleted the output by {_when(record.output_expires_at)}{basis}"
    else:
        what = f"{record.route} no longer gives its output ({reason})"
    error = OutputGone(
        f"job {record.job_id} finished and {what}{here}; {paid_words(record)}. Nothing was charged now: "
        "new_job=True (CLI: --new-job) pays for a new job",
        reason=reason if reason in ("deleted", "expired") else "gone",
        route=record.route,
        request_id=record.provider_request_id,
    )
    error.job_id = record.job_id
    return error


def start_new_job(
    journal: Journal, claim: Claim, old: JobRecord, settings: Settings, budget: BudgetCap | None = None
) -> JobRecord:
    """Write a new job of ``old``'s identity and move ``claim`` onto it, in one claim-checked transaction that
    also admits it under ``budget_total`` (``budget``, else the settings' cap at the job's worst case)."""
    record = renewed(old)
    worst = record.cost.estimated_high or record.cost.estimated
    per_call = settings.budget_per_call
    if per_call is not None and exceeds(worst, per_call):
        raise BudgetExceeded(
            f"a new job may cost up to ${worst:.4f}, over the per-call budget of ${per_call:.4f}",
            route=record.route,
            amount=worst,
            cap=per_call,
        )
    cap = budget or _cap(settings, record, worst)
    journal.move_claim_to_new_job(claim, record, cap)
    return record


def _cap(settings: Settings, record: JobRecord, worst: float) -> BudgetCap | None:
    if settings.budget_total is None:
        return None
    from .budget import BudgetCap

    return BudgetCap(settings.budget_total, settings.budget_period, worst, record.route, sandbox=record.sandbox)


@contextmanager
def keep_fetched(journal: Journal, owner: str, before: JobRecord) -> Iterator[None]:
    """Fetch a fetched job's output again (it went missing here) without ever un-fetching the job: whatever
    the attempt wrote, a failure puts the record back as it was (``before``), fetched and paid. A provider
    that says the job failed, was cancelled or is not there becomes :class:`OutputGone`; other failures (a
    network error, a full disk) are raised as they are, and running again tries again."""
    try:
        yield
    except LatentSyncError as exc:
        try:
            journal.save(before, owner=owner)
        except (sqlite3.Error, LatentSyncError):  # the claim or the journal is gone: nothing more to write
            pass
        if isinstance(exc, (JobFailed, JobCancelled, ProviderInputRejected)) or _not_there(exc):
            raise output_gone(before, f"asked again, it answered {type(exc).__name__}: {exc.message}") from exc
        raise


def _not_there(exc: LatentSyncError) -> bool:
    return getattr(exc, "status_code", None) in (404, 410)


def guarded(journal: Journal, owner: str, before: JobRecord | None, run: Callable[[], T]) -> T:
    """``run()``; under :func:`keep_fetched` when it fetches again the output of the fetched job ``before``."""
    if before is None:
        return run()
    with keep_fetched(journal, owner, before):
        return run()
