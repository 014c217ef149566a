"""Replicate uploads that a crash can interrupt, found again by the tag each carries in its ``metadata``.

Each upload is journalled before it leaves (:mod:`..upload_intents`) and sends that tag to Replicate as
the file's ``metadata``. A run that finds tags left over lists the files (``GET /v1/files``, newest
first), deletes each one that carries such a tag (``DELETE /v1/files/{id}``), and records it in
``uploaded_uris`` and ``deleted``. Facts ``files-metadata``, ``files-list``, ``files-delete`` and
``files-interrupted`` in :mod:`.facts`; the listing is a few pages, as the interrupted upload is recent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import upload_intents
from .api import parse_time

if TYPE_CHECKING:
    from ...types import JobRecord
    from ..base import JobContext

#: The ``metadata`` key each upload carries: the tag journalled before it left.
TAG_KEY = "latentsync_upload"
#: Pages of the files listing searched for a left-over upload.
PAGES = 3
#: Clock skew allowed between this machine and Replicate's ``created_at``.
SKEW_S = 300.0


def begin(job: JobContext) -> dict[str, str]:
    """Journal a new upload's tag before it leaves; the ``metadata`` it carries to Replicate."""
    return {TAG_KEY: upload_intents.begin(job)}


def finish(job: JobContext, metadata: dict[str, str], url: str) -> None:
    """The upload answered: its URL replaces its tag, in one journal write."""
    upload_intents.finish(job, metadata[TAG_KEY], url)


@dataclass
class LeftOver:
    """What the files left by unanswered uploads came to: each file's URL, and which were deleted."""

    found: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def recover(call: Callable[..., Any], client: Any, job: JobContext) -> None:
    """Delete the files that uploads journalled but never answered left at Replicate, and record them.

    A listing that fails keeps the tags for a later try (the job goes on; such a file expires after 24 h).
    """
    record = job.record
    try:
        left = delete_left_over(call, client, record)
    except Exception as exc:  # noqa: BLE001 - never fails the job: the tags stay for the next run
        job.report(f"replicate: could not look for uploads an earlier run left ({type(exc).__name__})", None)
        return
    for url in left.deleted:
        job.report(f"replicate: deleted {url}, left by an upload an earlier run did not finish", None)
    job.mark(
        uploaded_uris=[*record.uploaded_uris, *left.found],
        deleted=[*record.deleted, *left.deleted],
        not_deleted=[*record.not_deleted, *left.kept],
        upload_intents=[],
    )


def delete_left_over(call: Callable[..., Any], client: Any, record: JobRecord) -> LeftOver:
    """Find the files ``record``'s unanswered uploads left (by their tags) and delete each; the listing's
    failure is raised, a delete's failure is a ``kept`` line (such a file expires at Replicate)."""
    pending = set(record.upload_intents)
    outcome = LeftOver()
    if not pending:
        return outcome
    for item in [f for f in _recent_files(call, client, _earliest(pending)) if _tag(f) in pending]:
        url = str((item.get("urls") or {}).get("get") or "")
        if not url or url in record.uploaded_uris:
            continue  # recorded already: the job's own cleanup deletes it
        outcome.found.append(url)
        problem = _delete(call, client, str(item.get("id")))
        if problem is None:
            outcome.deleted.append(url)
        else:
            why = f"left by an interrupted upload; delete failed: {problem}; it expires at Replicate"
            outcome.kept.append(f"{url} ({why})")
    return outcome


def _recent_files(call: Callable[..., Any], client: Any, earliest: float) -> list[dict[str, Any]]:
    """Files newest first, down to ``earliest`` (epoch seconds, less the skew) or :data:`PAGES` pages."""
    found: list[dict[str, Any]] = []
    path: str | None = "/v1/files"
    for _ in range(PAGES):
        if path is None:
            break
        data = call(client._request, "GET", path).json()
        results = [f for f in data.get("results") or [] if isinstance(f, dict)]
        found += results
        times = [parse_time(f.get("created_at")) for f in results]
        if any(t is not None and t.timestamp() < earliest - SKEW_S for t in times):
            break
        path = data.get("next") or None
    return found


def _delete(call: Callable[..., Any], client: Any, file_id: str) -> str | None:
    try:
        call(client.files.delete, file_id)
    except Exception as exc:  # noqa: BLE001 - a failed delete is recorded, never fatal
        if getattr(exc, "status", None) != 404:
            return f"{type(exc).__name__} {getattr(exc, 'status', '')}".strip()
    return None


def _tag(item: dict[str, Any]) -> str | None:
    metadata = item.get("metadata")
    tag = metadata.get(TAG_KEY) if isinstance(metadata, dict) else None
    return tag if isinstance(tag, str) else None


def _earliest(tags: set[str]) -> float:
    return min(upload_intents.started_at(tag) for tag in tags)
