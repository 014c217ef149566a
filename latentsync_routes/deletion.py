"""``delete_job``: remove what a job left, as the job's owner, and keep its truth in the record.

A delete is a write of the job like any other, so it takes the job's claim first. A job another caller is
running (its claim is held) is refused: deleting its provider files while it runs would leave a paid output
unrecorded (fal writes it after the delete) or unreachable (WaveSpeed deletes a running prediction). A job
whose provider job has not ended and that nobody runs (a killed process) is refused too: ``jobs resume``
or ``jobs cancel`` ends it first. Both refusals are :class:`JobStillRunning` and delete nothing.

The record stays what it was (fetched and paid, or failed) and says what was deleted, what was not, and
when (``outputs_deleted_at``); a later ``run`` of the same job answers from it (:mod:`.job_truth`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ClaimTimeout, JobStillRunning
from .outputs import delete_job_files
from .types import PROVIDER_STATES, JobRecord, utcnow

if TYPE_CHECKING:
    from .journal import Journal
    from .routes.base import Route


def delete_job(journal: Journal, route_of: Route | None, home: Path, job_id: str, *, delete_output: bool) -> JobRecord:
    """Delete the job's local output (with ``delete_output``), its staged input copies and, through its
    route, what it left at the provider; the record, kept, says what went. ``route_of``: the job's route."""
    record = journal.find(job_id)
    try:
        claim, _ = journal.claim_job(record.job_id, wait_s=0.0)
    except ClaimTimeout:
        raise _refused(record, "it is running in another process (or thread) now") from None
    try:
        record = journal.get(record.job_id) or record  # as it stands under the claim
        if record.state in PROVIDER_STATES:
            raise _refused(record, f"its provider job has not ended (state {record.state}) and nobody runs it")
        remote = route_of.delete_remote if route_of is not None else _nothing_remote
        before = len(record.deleted)
        record = delete_job_files(record, home, remote, delete_output=delete_output)
        record.upload_intents = []  # the route found and deleted, or listed as possibly left, each of them
        if len(record.deleted) > before and record.state == "fetched" and record.outputs_deleted_at is None:
            record.outputs_deleted_at = utcnow()
        journal.save(record, owner=claim.owner)
        return record
    finally:
        claim.release()


def _nothing_remote(record: JobRecord) -> tuple[list[str], list[str]]:
    """A job whose route is no longer configured: nothing can be asked of its provider from here."""
    return [], []


def _refused(record: JobRecord, why: str) -> JobStillRunning:
    error = JobStillRunning(
        f"job {record.job_id} was not deleted: {why}. Cancel it (jobs cancel {record.job_id[:12]}) or wait "
        f"for it to end (jobs resume {record.job_id[:12]}), then delete it; nothing was deleted",
        route=record.route,
        request_id=record.provider_request_id,
    )
    error.job_id = record.job_id
    return error
