"""The records ``FakeFal`` keeps: its fault queues, how a job fails, its cancels, and its jobs.

Kept apart from ``fal.py`` so each fake module stays small; ``fal.py`` re-exports them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from ...testing._faults import Fault
from ...testing._storage import FileStore, StoredFile
from ...testing._wire import Headers

JobState = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]


@dataclass
class FalFaults:
    """Per-endpoint fault queues; each request pops the first fault of its endpoint."""

    submit: list[Fault] = field(default_factory=list)
    status: list[Fault] = field(default_factory=list)
    result: list[Fault] = field(default_factory=list)
    cancel: list[Fault] = field(default_factory=list)
    run: list[Fault] = field(default_factory=list)
    cdn_token: list[Fault] = field(default_factory=list)
    cdn_upload: list[Fault] = field(default_factory=list)
    multipart_create: list[Fault] = field(default_factory=list)
    multipart_part: list[Fault] = field(default_factory=list)
    multipart_complete: list[Fault] = field(default_factory=list)
    storage_initiate: list[Fault] = field(default_factory=list)
    storage_put: list[Fault] = field(default_factory=list)
    file_download: list[Fault] = field(default_factory=list)
    list_requests: list[Fault] = field(default_factory=list)
    pricing: list[Fault] = field(default_factory=list)
    delete_payloads: list[Fault] = field(default_factory=list)
    billing_events: list[Fault] = field(default_factory=list)


@dataclass(frozen=True)
class FalFailure:
    """How a job fails: the result fetch answers ``status_code`` with ``body``.

    ``status_error`` is the ``error`` string put on the COMPLETED status (fal sets
    it for platform failures); ``error_type`` also goes to ``X-Fal-Error-Type``.
    """

    status_code: int
    body: Any
    error_type: str | None = None
    status_error: str | None = None
    billable_units: float | None = None


@dataclass(frozen=True)
class CancelRecord:
    request_id: str
    app: str
    outcome: str  # CANCELLATION_REQUESTED | ALREADY_COMPLETED | NOT_FOUND


@dataclass(eq=False)
class FalJob:
    """One queued request as the fake provider holds it (one per billed provider job)."""

    request_id: str
    app: str
    path: str
    arguments: Any
    headers: Headers
    webhook_url: str | None
    queue_polls: int
    progress_polls: int
    store: FileStore = field(repr=False)
    state: JobState = "IN_QUEUE"
    polls: int = 0
    cancelled: bool = False
    logs: list[dict[str, Any]] = field(default_factory=list)
    failure: FalFailure | None = None
    result: Any = None
    output: StoredFile | None = None
    billable_units: float | None = None
    inference_time: float = 0.0
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    payloads_deleted: bool = False

    @property
    def stores_payloads(self) -> bool:
        """False when the submit carried ``X-Fal-Store-IO: 0`` (fal then stores no payloads)."""
        return (self.headers.get("X-Fal-Store-IO") or "").strip() != "0"

    @property
    def start_timeout(self) -> float | None:
        """The submit's ``X-Fal-Request-Timeout`` (time-to-start bound, seconds), if one was sent."""
        try:
            return float(self.headers.get("X-Fal-Request-Timeout") or "")
        except ValueError:
            return None

    def input_bytes(self, name: str) -> bytes | None:
        """Bytes of input ``name`` when it is a ``data:`` URI or a file uploaded to this fake."""
        args = self.arguments if isinstance(self.arguments, dict) else {}
        return self.store.resolve(args.get(name))
