from __future__ import annotations

from pathlib import Path

import pytest

from latentsync_routes import LipSyncClient, PolicyViolation
from latentsync_routes.config import PolicySettings, load_settings
from latentsync_routes.policy import evaluate
from latentsync_routes.routes.fal import route as fal
from latentsync_routes.routes.local import route as local
from latentsync_routes.routes.replicate import route as replicate
from latentsync_routes.types import MediaInfo
from tests.mediafactory import make_video, make_wav

VIDEO = MediaInfo(container="mp4", duration=10.0, size=1_000_000, has_video=True)
AUDIO = MediaInfo(container="wav", duration=10.0, size=320_000, has_audio=True)


def outcome(info: object, policy: PolicySettings, consent: str | None = "signed release") -> dict[str, bool]:
    return {r.check: r.passed for r in evaluate(info, policy, consent=consent, video=VIDEO, audio=AUDIO)}  # type: ignore[arg-type]


def test_all_six_checks_reported_and_pass_by_default() -> None:
    results = evaluate(fal.INFO, PolicySettings(), consent="signed release", video=VIDEO, audio=AUDIO)
    assert [r.check for r in results] == [
        "consent",
        "retention",
        "licence",
        "input_limits",
        "failure_billing",
        "support_path",
    ]
    assert all(r.passed for r in results)
    assert all(r.reason for r in results)


def test_consent_required_for_uploading_routes_only() -> None:
    assert outcome(fal.INFO, PolicySettings(), consent=None)["consent"] is False
    assert outcome(replicate.INFO, PolicySettings(), consent=" ")["consent"] is False
    assert outcome(local.INFO, PolicySettings(), consent=None)["consent"] is True
    assert outcome(fal.INFO, PolicySettings(require_consent=False), consent=None)["consent"] is True


def test_policy_forbidding_uploads_blocks_hosted_not_local() -> None:
    policy = PolicySettings(allow_uploads=False)
    assert outcome(fal.INFO, policy)["consent"] is False
    assert outcome(replicate.INFO, policy)["consent"] is False
    assert all(outcome(local.INFO, policy).values())


def test_retention_cap() -> None:
    policy = PolicySettings(max_retention_days=0.01)
    assert outcome(replicate.INFO, policy)["retention"] is False  # 1 h > 0.01 day
    assert outcome(replicate.INFO, PolicySettings(max_retention_days=1))["retention"] is True
    capped = fal.FalRoute(settings=load_settings(policy=policy), credential=None).info()
    assert outcome(capped, policy)["retention"] is True  # the lifetime sent on submit and uploads is cut to the cap
    assert outcome(capped, PolicySettings(max_retention_days=0.0001))["retention"] is False  # 60 s minimum sent
    unknown = fal.INFO.model_copy(update={"name": "other", "retention_days": None, "retention_control": None})
    assert outcome(unknown, policy)["retention"] is False


def test_licence_checks() -> None:
    assert outcome(fal.INFO, PolicySettings(allowed_weight_licences=["apache-2.0"]))["licence"] is False
    assert outcome(fal.INFO, PolicySettings(allowed_weight_licences=["openrail++"]))["licence"] is True
    unstated = fal.INFO.model_copy(update={"weights_licence": None})
    assert outcome(unstated, PolicySettings())["licence"] is False
    no_commercial = fal.INFO.model_copy(update={"commercial_use_allowed": False})
    assert outcome(no_commercial, PolicySettings(intended_use="commercial"))["licence"] is False
    assert outcome(no_commercial, PolicySettings(intended_use="research"))["licence"] is True


def test_input_limits() -> None:
    assert outcome(fal.INFO, PolicySettings(max_video_seconds=5))["input_limits"] is False
    assert outcome(fal.INFO, PolicySettings(max_input_bytes=1000))["input_limits"] is False
    long_audio = AUDIO.model_copy(update={"duration": 400.0})
    results = evaluate(replicate.INFO, PolicySettings(), consent="x", video=VIDEO, audio=long_audio)
    assert {r.check: r.passed for r in results}["input_limits"] is False


def test_failure_billing_and_support_path() -> None:
    undocumented = fal.INFO.model_copy(update={"failure_billing": None, "support_path": []})
    result = outcome(undocumented, PolicySettings())
    assert result["failure_billing"] is False and result["support_path"] is False
    relaxed = PolicySettings(require_failure_billing_documented=False, require_support_path=False)
    result = outcome(undocumented, relaxed)
    assert result["failure_billing"] is True and result["support_path"] is True


def test_violation_lists_every_failed_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATENTSYNC_ROUTES_HOME", str(tmp_path))
    video = make_video(tmp_path / "clip.mp4", 1.0)
    audio = make_wav(tmp_path / "voice.wav", 1.0)
    client = LipSyncClient(route="replicate", credentials={"replicate": "r8_test"})
    client.settings.policy.max_retention_days = 0.001
    with pytest.raises(PolicyViolation) as info:
        client.run(video, audio, tmp_path / "out.mp4")
    failed = {f.check for f in info.value.failures}
    assert failed == {"consent", "retention"}
    assert info.value.exit_code == 3
    assert not (tmp_path / "jobs.sqlite3").exists()  # stopped before any job was created
