"""Everything decided about a job before it is claimed, in one place: ``check`` shows it, ``run`` enforces it.

A job's estimate and its checklist are computed together, once, from the probed inputs: the estimate is
marked :attr:`~latentsync_routes.types.CostEstimate.refused` when the inputs are over a limit (the same
words the checklist's ``input_limits`` row STOPs with), the deadline row compares the estimate's expected
time with the job's deadline, and the face row samples the video's frames. A route that cannot run on
this machine (its extra not installed) gets an ``availability`` STOP row with the ``pip install`` line.
``estimate``, ``check`` and ``run`` all go through here, so they cannot disagree about a limit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .face_check import face_row
from .policy import CheckResult, evaluate, limit_problems

if TYPE_CHECKING:
    from .config import PolicySettings
    from .routes.base import Route
    from .types import CostEstimate, LipSyncRequest, MediaInfo


def missing_install(route: Route) -> str | None:
    """What to install before ``route`` can run here (its ``pip install`` line), or ``None``.

    A missing credential is not this: it is refused by ``run`` once the checks pass, as before, and the
    route's estimate (its expected time included) holds whoever's key is used.
    """
    why_not = route.availability()
    return why_not if why_not is not None and "pip install" in why_not else None


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
    why_not = missing_install(route)
    checks = evaluate(
        info,
        policy,
        consent=consent,
        video=video,
        audio=audio,
        estimate=estimate,
        deadline_seconds=None if why_not else deadline,
        face=face,
    )
    if why_not:
        # A route that cannot run here stops on what to install; its expected time describes a machine
        # that does not exist yet (no torch: a CPU guess), so the deadline is not judged on it.
        checks.insert(0, CheckResult(check="availability", passed=False, reason=why_not))
        checks.insert(
            len(checks) - 1,
            CheckResult(
                check="deadline",
                passed=True,
                skipped=True,
                reason="not judged: the route cannot run here (see availability)",
            ),
        )
    return checks, estimate
