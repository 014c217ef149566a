"""The stop rules hold at the wire: a stopped job makes no HTTP request at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from latentsync_routes import BudgetExceeded, LipSyncClient, PolicySettings, PolicyViolation, load_settings
from latentsync_routes.testing import FakeFal, FakeReplicate, write_test_audio, write_test_video


@pytest.fixture
def media(tmp_path: Path) -> tuple[Path, Path]:
    return write_test_video(tmp_path / "clip.mp4", 1.0), write_test_audio(tmp_path / "voice.wav", 2.0)


def test_fal_run_without_consent_sends_nothing(tmp_path: Path, media: tuple[Path, Path]) -> None:
    with FakeFal(expected_key="test-key") as fal:
        settings = load_settings(home=tmp_path, fal_base_url=fal.url)
        client = LipSyncClient(route="fal", fal_key="test-key", settings=settings)
        with pytest.raises(PolicyViolation) as stop:
            client.run(*media, tmp_path / "out.mp4")
        assert [f.check for f in stop.value.failures] == ["consent"]
        assert fal.requests == [] and len(fal.jobs) == 0
    assert not (tmp_path / "out.mp4").exists()


def test_replicate_upload_ban_and_budget_send_nothing(tmp_path: Path, media: tuple[Path, Path]) -> None:
    with FakeReplicate(expected_token="r8_test") as rep:
        banned = load_settings(home=tmp_path, replicate_base_url=rep.url, policy=PolicySettings(allow_uploads=False))
        client = LipSyncClient(route="replicate", replicate_api_token="r8_test", settings=banned)
        with pytest.raises(PolicyViolation, match="forbids uploads"):
            client.run(*media, tmp_path / "out.mp4", consent="signed release")
        capped = LipSyncClient(
            route="replicate", replicate_api_token="r8_test", budget_per_call=0.01,
            settings=load_settings(home=tmp_path, replicate_base_url=rep.url),
        )
        with pytest.raises(BudgetExceeded):
            capped.run(*media, tmp_path / "out.mp4", consent="signed release")
        assert rep.requests == [] and len(rep.predictions) == 0
