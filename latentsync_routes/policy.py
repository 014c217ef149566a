"""The six checks a job must pass before a face or a voice leaves the machine.

consent, retention, licence, input limits, failure billing, support path. Each is evaluated against the
route's declared facts (:class:`RouteInfo`) and the user's :class:`PolicySettings`, and each yields an
outcome with a reason a person can act on. A stop lists *every* failed check at once, so fixing a config
is one round trip, not six.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from .config import PolicySettings
from .errors import PolicyViolation
from .routes.base import RouteInfo
from .types import MediaInfo

CheckName = Literal["consent", "retention", "licence", "input_limits", "failure_billing", "support_path"]

#: Consent bases that declare no real person's face or voice is involved.
SYNTHETIC_BASES = ("synthetic", "test")


class CheckResult(BaseModel):
    check: CheckName
    passed: bool
    reason: str


def meaningful_consent(consent: str | None) -> str | None:
    """The consent text with control and invisible characters removed; ``None`` if nothing readable is left.

    ``"\\x00\\x01\\n\\t "`` or a zero-width space is not a consent basis, and must not pass as one just
    because ``str.strip`` keeps control characters.
    """
    if consent is None:
        return None
    shown = " ".join("".join(ch if ch.isprintable() else " " for ch in consent).split())
    return shown or None


def _consent(info: RouteInfo, policy: PolicySettings, consent: str | None) -> CheckResult:
    if not info.uploads_media:
        return CheckResult(check="consent", passed=True, reason="nothing is uploaded on this route")
    if not policy.allow_uploads:
        return CheckResult(
            check="consent", passed=False, reason="the policy forbids uploads (policy.allow_uploads = false)"
        )
    if not policy.require_consent:
        return CheckResult(check="consent", passed=True, reason="the policy does not require a consent basis")
    basis = meaningful_consent(consent)
    if basis:
        return CheckResult(check="consent", passed=True, reason=f"consent basis given: {basis!r}")
    return CheckResult(
        check="consent",
        passed=False,
        reason=f"route {info.name!r} uploads the face and voice to {info.upload_destination}; give a consent "
        f"basis (consent='...', or --consent), or declare {' / '.join(SYNTHETIC_BASES)!s} media",
    )


def _days(days: float) -> str:
    """A retention figure for people: hours under a day."""
    return f"{days * 24:.3g} hours" if days < 1 else f"{days:g} days"


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
            reason=f"route keeps files {_days(info.retention_days)}{how}; the policy allows {_days(cap)}",
        )
    return CheckResult(check="retention", passed=True, reason=f"route keeps files {_days(info.retention_days)}{how}")


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


def _limits(info: RouteInfo, policy: PolicySettings, video: MediaInfo | None, audio: MediaInfo | None) -> CheckResult:
    problems: list[str] = []

    def over(what: str, value: float | None, *caps: float | None) -> None:
        limits = [c for c in caps if c is not None]
        if value is not None and limits and value > min(limits):
            problems.append(f"{what} {value:g} > {min(limits):g}")

    for role, media, route_cap, policy_cap in (
        ("video seconds", video, info.max_video_seconds, policy.max_video_seconds),
        ("audio seconds", audio, info.max_audio_seconds, policy.max_audio_seconds),
    ):
        if media is not None:
            over(role, media.duration, route_cap, policy_cap)
            over(f"{role.split()[0]} bytes", media.size, info.max_input_bytes, policy.max_input_bytes)
    if problems:
        return CheckResult(check="input_limits", passed=False, reason="; ".join(problems))
    return CheckResult(check="input_limits", passed=True, reason="inputs are within the route's and policy's limits")


def evaluate(
    info: RouteInfo,
    policy: PolicySettings,
    *,
    consent: str | None,
    video: MediaInfo | None = None,
    audio: MediaInfo | None = None,
) -> list[CheckResult]:
    """Run all six checks and return every outcome (passing ones too, for the record)."""
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
        results.append(
            CheckResult(check="failure_billing", passed=True, reason=info.failure_billing or "not required")
        )
    if policy.require_support_path and not info.support_path:
        results.append(CheckResult(check="support_path", passed=False, reason="the route names no support path"))
    else:
        results.append(
            CheckResult(check="support_path", passed=True, reason=", ".join(info.support_path) or "not required")
        )
    return results


def enforce(results: list[CheckResult], *, route: str) -> None:
    failed = [r for r in results if not r.passed]
    if failed:
        raise PolicyViolation(failed, route=route)
