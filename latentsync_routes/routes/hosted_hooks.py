"""What the hosted template's helpers need of a route: the hooks they call, as a protocol.

:mod:`.hosted_endings`, :mod:`.hosted_lookup` and :mod:`.hosted_runs_on` decide how a job ends, an
ambiguous submit and a job left running; :class:`~latentsync_routes.routes.hosted.HostedRoute` calls them
with itself. They depend on this protocol, not on the template, so the template sits above its helpers and
not in a circle with them (mypy checks that the template satisfies it wherever it passes itself).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..config import Settings
    from ..types import CostEstimate, LipSyncRequest, MediaInfo
    from .base import JobContext
    from .hosted_status import CancelOutcome, Listed, Status


class HostedHooks(Protocol):
    """The route facts and single-try hooks (docs/new-route.md) the helpers call; nothing of the loop."""

    @property
    def name(self) -> str: ...

    @property
    def settings(self) -> Settings: ...

    def estimate(self, request: LipSyncRequest, video: MediaInfo, audio: MediaInfo) -> CostEstimate: ...

    def poll(self, job: JobContext, request_id: str) -> Status: ...

    def cancel(self, job: JobContext, request_id: str) -> CancelOutcome: ...

    def settle(self, job: JobContext, request_id: str, status: Status | None) -> tuple[float | None, str]: ...

    def lookup(
        self, job: JobContext, inputs: dict[str, Any], start: datetime, end: datetime
    ) -> list[Listed] | None: ...

    def ambiguity_hint(self) -> str: ...

    def output_lifetime(self, job: JobContext) -> tuple[float, str] | None: ...

    def cancel_and_follow(self, job: JobContext, request_id: str) -> tuple[str, Status | None]: ...
