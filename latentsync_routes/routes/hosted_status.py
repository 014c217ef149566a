"""What the hosted template's hooks answer with: a poll's status, a cancel's outcome, a finished job's output,
a request in the provider's listing.

Its own module so routes and the template share these shapes without the template's state machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal


@dataclass
class Status:
    """One poll's answer, in the template's words."""

    state: Literal["queued", "running", "succeeded", "failed", "cancelled"]
    message: str = ""
    fraction: float | None = None
    logs: list[str] = field(default_factory=list)
    error: str | None = None
    queue_position: int | None = None
    #: what a failed or cancelled provider job was billed (None: not known yet), and how that was worked out
    billed: float | None = None
    billed_basis: str = ""
    data: Any = None


@dataclass
class CancelOutcome:
    """What the provider answered to a cancel: whether it took it, in a sentence for the record."""

    accepted: bool
    text: str


@dataclass
class Output:
    """Where the finished provider job's video is, and what the job cost."""

    url: str
    file_name: str | None = None
    actual_cost: float | None = None
    cost_basis: str = ""
    request_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Listed:
    """One request in a provider's listing: its id, when it was sent, and whether it ever started (a request
    that never started never ran and is never billed: fal's time-to-start timeout)."""

    request_id: str
    sent_at: datetime
    started: bool = True
