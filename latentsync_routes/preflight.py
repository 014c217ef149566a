"""Everything decided about a job before it is claimed, in one place: ``check`` shows it, ``run`` enforces it.

A job's estimate and its checklist are computed together, once, from the probed inputs: the estimate is
marked :attr:`~latentsync_routes.types.CostEstimate.refused` when the inputs are over a limit (the same
words the checklist's ``input_limits`` row STOPs with), the deadline row compares the estimate's expected
time with the job's deadline, and the face row samples the video's frames. ``estimate``, ``check`` and
``run`` all go through here, so they cannot disagree about a limit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .face_check import face_row
from .policy import CheckResult, evaluate, limit_problems

if TYPE_CHECKING:
    from .config import PolicySettings
    from .routes.base import Route
    from .types import CostEstimate, LipSyncRequest, MediaInfo


def marked_estimate(
    route: Route, policy: PolicySettings, request: LipSyncRequest, video: MediaInfo, audio: MediaInfo
) -> CostEstimate:
    """The route's estimate, with ``refused`` set to every limit the inputs are over (``None`` if none)."""
    estimate = route.estimate(request, video, audio)
    problems = limit_problems(route.info(), policy, video, audio)
    return estimate.model_copy(update={"refused": "; ".join(problems)}) if problems else estimate


def preflight(
    route: Route,
    policy: PolicySettings,
    request: LipSyncRequest,
    video: MediaInfo,
    audio: MediaInfo,
    *,
    consent: str | None,
    deadline: float,
    face_check: bool | None,
) -> tuple[list[CheckResult], CostEstimate]:
    """The job's whole checklist and its estimate; a failed row is a STOP for ``run`` (exit 3)."""
    info = route.info()
    estimate = marked_estimate(route, policy, request, video, audio)
    face = face_row(info, policy, request.video, enabled=face_check)
    checks = evaluate(
        info, policy, consent=consent, video=video, audio=audio, estimate=estimate, deadline_seconds=deadline, face=face
    )
    return checks, estimate
