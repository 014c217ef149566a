"""The checks a job must pass before a face or a voice leaves the machine, or money is spent.

consent, retention, licence, input limits, failure billing, support path, deadline and face. Each is
evaluated against the route's declared facts (:class:`RouteInfo`), the user's :class:`PolicySettings`
and, for the last two, the job's estimate and a sample of its frames; each yields an outcome with a
reason a person can act on. A stop lists *every* failed check at once, so fixing a config is one round
trip, not eight.

The route's own input limits are a row here (``input_limits``), not an exception raised earlier: the
checklist, the estimate (:attr:`CostEstimate.refused`) and ``run`` all read them from
:func:`limit_problems`, so the three always agree on what a route would refuse.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from .config import PolicySettings
from .consent import consent_problem, normalise_consent
from .errors import PolicyViolation
from .routes.base import RouteInfo
from .types import CostEstimate, MediaInfo

CheckName = Literal[
    "consent",
    "retention",
    "licence",
    "input_limits",
    "failure_billing",
    "support_path",
    "deadline",
    "face",
    "budget",
]

#: Consent bases that declare no real person's face or voice is involved.
SYNTHETIC_BASES = ("synthetic", "test")


class CheckResult(BaseModel):
    """One row of the checklist: which check, whether it passed, and why (in words a person can act on)."""

    check: CheckName
    passed: bool
    reason: str


def shown_days(days: float) -> str:
    """A retention period as a person reads it: hours under a day (``1/24`` is "1 hour", not "0.0417 days")."""
    if days < 1:
        hours = days * 24
        return f"{hours:.3g} hour{'' if hours == 1 else 's'}"
    return f"{days:.3g} day{'' if days == 1 else 's'}"


def shown_seconds(seconds: float) -> str:
    """A duration in seconds, with minutes or hours beside it once it is long enough to need them."""
    if seconds >= 3600:
        return f"{seconds:.0f} s (~{seconds / 3600:.1f} h)"
    if seconds >= 120:
        return f"{seconds:.0f} s (~{seconds / 60:.0f} min)"
    return f"{seconds:.3g} s"


def meaningful_consent(consent: str | None) -> str | None:
    """The consent basis as checked and stored (:func:`latentsync_routes.consent.normalise_consent`)."""
    return normalise_consent(consent)


def _consent(info: RouteInfo, policy: PolicySettings, consent: str | None) -> CheckResult:
    if not info.uploads_media:
        return CheckResult(check="consent", passed=True, reason="nothing is uploaded on this route")
    if not policy.allow_uploads:
        return CheckResult(
            check="consent", passed=False, reason="the policy forbids uploads (policy.allow_uploads = false)"
        )
    if not policy.require_consent:
        return CheckResult(check="consent", passed=True, reason="the policy does not require a consent basis")
    problem = consent_problem(consent)
    if problem is not None:
        return CheckResult(
            check="consent",
            passed=False,
            reason=f"route {info.name!r} uploads the face and voice to {info.upload_destination}; {problem}",
        )
    basis = normalise_consent(consent)
    if basis:
        return CheckResult(check="consent", passed=True, reason=f"consent basis given: {basis!r}")
    return CheckResult(
        check="consent",
        passed=False,
        reason=f"route {info.name!r} uploads the face and voice to {info.upload_destination}; give a consent "
        f"basis (consent='...', or --consent), or declare {' / '.join(SYNTHETIC_BASES)!s} media",
    )


def _retention(info: RouteInfo, policy: PolicySettings) -> CheckResult:
    """Judge what the route keeps, or asks the provider to keep (``retention_days`` is what it sends)."""
    cap = policy.max_retention_days
    how = f" ({info.retention_control})" if info.retention_control else ""
    if cap is None:
        return CheckResult(check="retention", passed=True, reason=f"no cap set; route keeps: {info.retention}")
    if info.retention_days is None:
        return CheckResult(
            check="retention", passed=False, reason=f"retention is unbounded or unknown ({info.retention})"
        )
    if info.retention_days > cap:
        return CheckResult(
            check="retention",
            passed=False,
            reason=f"route keeps files {shown_days(info.retention_days)}{how}; the policy allows {shown_days(cap)}",
        )
    kept = shown_days(info.retention_days)
    return CheckResult(check="retention", passed=True, reason=f"route keeps files {kept}{how}")


def _licence(info: RouteInfo, policy: PolicySettings) -> CheckResult:
    licence = info.weights_licence
    if licence is None:
        return CheckResult(check="licence", passed=False, reason="the weights' licence is not stated for this route")
    allowed = policy.allowed_weight_licences
    if allowed is not None and licence not in allowed:
        return CheckResult(
            check="licence", passed=False, reason=f"weights licence {licence!r} is not in the allowed {allowed}"
        )
    if policy.intended_use == "commercial" and info.commercial_use_allowed is False:
        return CheckResult(
            check="licence", passed=False, reason=f"weights licence {licence!r} does not allow commercial use"
        )
    return CheckResult(
        check="licence",
        passed=True,
        reason=f"code {info.code_licence}, weights {licence} ({info.weights_licence_source}); "
        f"{policy.intended_use} use allowed under the licence's use restrictions",
    )


def limit_problems(
    info: RouteInfo, policy: PolicySettings, video: MediaInfo | None, audio: MediaInfo | None
) -> list[str]:
    """Every input limit (the route's or the policy's, whichever is lower) these inputs are over.

    The one reading of the limits: the checklist's ``input_limits`` row, ``run`` (through that row) and
    :attr:`CostEstimate.refused` all come from here.
    """
    problems: list[str] = []

    def over(what: str, value: float | None, unit: str, route_cap: float | None, policy_cap: float | None) -> None:
        caps = [
            (cap, whose)
            for cap, whose in ((route_cap, f"route {info.name!r}"), (policy_cap, "the policy"))
            if cap is not None
        ]
        if value is None or not caps:
            return
        cap, whose = min(caps, key=lambda pair: pair[0])
        if value > cap:
            problems.append(f"{what} is {value:g}{unit}; {whose} takes at most {cap:g}{unit}")

    for role, media, route_cap, policy_cap in (
        ("video", video, info.max_video_seconds, policy.max_video_seconds),
        ("audio", audio, info.max_audio_seconds, policy.max_audio_seconds),
    ):
        if media is not None:
            over(f"the {role}", round(media.duration, 2), " s", route_cap, policy_cap)
            over(f"the {role} file", media.size, " bytes", info.max_input_bytes, policy.max_input_bytes)
    return problems


def _limits(info: RouteInfo, policy: PolicySettings, video: MediaInfo | None, audio: MediaInfo | None) -> CheckResult:
    problems = limit_problems(info, policy, video, audio)
    if problems:
        return CheckResult(check="input_limits", passed=False, reason="; ".join(problems))
    return CheckResult(check="input_limits", passed=True, reason="inputs are within the route's and policy's limits")


def deadline_row(estimate: CostEstimate | None, deadline_seconds: float | None, *, enabled: bool = True) -> CheckResult:
    """STOP a job whose expected time (the estimate's) is over its deadline: it would be cancelled part-way,
    after the provider (or the GPU) has started charging for it."""
    if deadline_seconds is None:
        return CheckResult(check="deadline", passed=True, reason="no deadline given")
    expected = None if estimate is None else estimate.expected_wall_seconds
    if not enabled:
        known = "unknown" if expected is None else shown_seconds(expected)
        return CheckResult(
            check="deadline",
            passed=True,
            reason=f"skipped (policy.deadline_check = false): expected "
            f"time {known}, deadline {shown_seconds(deadline_seconds)}",
        )
    if expected is None:
        return CheckResult(
            check="deadline",
            passed=True,
            reason=f"no expected time is known for this route; the "
            f"job is cancelled after {shown_seconds(deadline_seconds)}",
        )
    if expected > deadline_seconds:
        return CheckResult(
            check="deadline",
            passed=False,
            reason=f"expected time {shown_seconds(expected)} (the estimate's) is over the deadline of "
            f"{shown_seconds(deadline_seconds)}: the job would be cancelled part-way; raise the deadline "
            "(deadline_seconds=, --deadline, LATENTSYNC_ROUTES_DEADLINE_SECONDS) or pick a faster route or device",
        )
    return CheckResult(
        check="deadline",
        passed=True,
        reason=f"expected time {shown_seconds(expected)}, within the deadline of {shown_seconds(deadline_seconds)}",
    )


def evaluate(
    info: RouteInfo,
    policy: PolicySettings,
    *,
    consent: str | None,
    video: MediaInfo | None = None,
    audio: MediaInfo | None = None,
    estimate: CostEstimate | None = None,
    deadline_seconds: float | None = None,
    face: CheckResult | None = None,
) -> list[CheckResult]:
    """Run every check and return every outcome (passing ones too, for the record).

    The deadline row is added when ``deadline_seconds`` is given and the face row when ``face`` (the
    outcome of :func:`latentsync_routes.face_check.face_row`, which needs the video's frames) is.
    """
    results = [
        _consent(info, policy, consent),
        _retention(info, policy),
        _licence(info, policy),
        _limits(info, policy, video, audio),
    ]
    if policy.require_failure_billing_documented and not info.failure_billing:
        results.append(
            CheckResult(check="failure_billing", passed=False, reason="the route does not document failure billing")
        )
    else:
        results.append(CheckResult(check="failure_billing", passed=True, reason=info.failure_billing or "not required"))
    if policy.require_support_path and not info.support_path:
        results.append(CheckResult(check="support_path", passed=False, reason="the route names no support path"))
    else:
        results.append(
            CheckResult(check="support_path", passed=True, reason=", ".join(info.support_path) or "not required")
        )
    if deadline_seconds is not None:
        results.append(deadline_row(estimate, deadline_seconds, enabled=policy.deadline_check))
    if face is not None:
        results.append(face)
    return results


def enforce(results: list[CheckResult], *, route: str) -> None:
    """Raise :class:`PolicyViolation` (exit 3) naming every failed row, if any failed."""
    failed = [r for r in results if not r.passed]
    if failed:
        raise PolicyViolation(failed, route=route)
