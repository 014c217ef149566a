"""Uploads journalled before they leave, so a crash mid-upload never leaves a file no record lists.

A process killed (or an answer lost) while an upload is in flight may have made a file at the provider
whose URL it never read. Before the upload the job's record gets a tag for it (``upload_intents``); the
URL replaces the tag, in one journal write, when the upload answers. A tag still there on a later try
marks such a possible file: a route that can list its uploads finds it by the tag and deletes it
(Replicate: :mod:`.replicate.uploads`); one that cannot records it in ``not_deleted`` with why
(:func:`record_unfindable`). ``jobs delete`` of a job a crash left so does the same through the route's
``delete_remote``, and the record's tags are then cleared.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..types import JobRecord
    from .base import JobContext


def begin(job: JobContext) -> str:
    """Journal a new upload's tag (``<job id>:<epoch seconds>:<random>``) before it leaves."""
    tag = f"{job.record.job_id}:{int(time.time())}:{secrets.token_hex(6)}"
    job.mark(upload_intents=[*job.record.upload_intents, tag])
    return tag


def finish(job: JobContext, tag: str, url: str) -> None:
    """The upload answered: its URL replaces its tag, in one journal write."""
    job.mark(
        uploaded_uris=[*job.record.uploaded_uris, url],
        upload_intents=[t for t in job.record.upload_intents if t != tag],
    )


def started_at(tag: str) -> float:
    """When the tagged upload began (epoch seconds; 0 for a tag not of this form)."""
    part = tag.split(":")[1:2]
    return float(part[0]) if part and part[0].isdigit() else 0.0


def record_unfindable(job: JobContext, provider: str, why: str) -> None:
    """A route that cannot list its uploads: each left-over tag becomes a ``not_deleted`` line."""
    if not job.record.upload_intents:
        return
    lines = unfindable_lines(job.record, provider, why)
    job.mark(not_deleted=[*job.record.not_deleted, *lines], upload_intents=[])


def unfindable_lines(record: JobRecord, provider: str, why: str) -> list[str]:
    """What each left-over tag of ``record`` may have left at a provider that lists no uploads (for
    ``not_deleted``; ``jobs delete`` says them too, as it cannot delete them)."""
    return [
        f"a file an upload begun at {_when(tag)} and never answered may have left at {provider} ({why})"
        for tag in record.upload_intents
    ]


def unfindable_upload(job: JobContext, provider: str, why: str, send: Callable[[], str]) -> str:
    """``send`` one upload on a route whose provider documents no listing or delete of uploads: journalled
    before it leaves, and an earlier one never answered listed as possibly left (``why``)."""
    record_unfindable(job, provider, why)
    tag = begin(job)
    url = send()
    finish(job, tag, url)
    return url


def _when(tag: str) -> str:
    return datetime.fromtimestamp(started_at(tag), timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
