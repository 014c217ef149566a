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
        settings = load_settings(home=tmp_path, route_settings={"fal": {"base_url": fal.url}})
        client = LipSyncClient(route="fal", credentials={"fal": "test-key"}, settings=settings)
        with pytest.raises(PolicyViolation) as stop:
            client.run(*media, tmp_path / "out.mp4")
        assert [f.check for f in stop.value.failures] == ["consent"]
        assert fal.requests == [] and len(fal.jobs) == 0
    assert not (tmp_path / "out.mp4").exists()


def test_replicate_upload_ban_and_budget_send_nothing(tmp_path: Path, media: tuple[Path, Path]) -> None:
    with FakeReplicate(expected_token="r8_test") as rep:
        banned = load_settings(
            home=tmp_path,
            route_settings={"replicate": {"base_url": rep.url}},
            policy=PolicySettings(allow_uploads=False),
        )
        client = LipSyncClient(route="replicate", credentials={"replicate": "r8_test"}, settings=banned)
        with pytest.raises(PolicyViolation, match="forbids uploads"):
            client.run(*media, tmp_path / "out.mp4", consent="signed release")
        capped = LipSyncClient(
            route="replicate",
            credentials={"replicate": "r8_test"},
            budget_per_call=0.01,
            settings=load_settings(home=tmp_path, route_settings={"replicate": {"base_url": rep.url}}),
        )
        with pytest.raises(BudgetExceeded):
            capped.run(*media, tmp_path / "out.mp4", consent="signed release")
        assert rep.requests == [] and len(rep.predictions) == 0


def test_record_in_journal_and_jsonl_holds_every_field(tmp_path: Path, media: tuple[Path, Path]) -> None:
    sink = tmp_path / "records.jsonl"
    with FakeFal(expected_key="test-key", billable_units=40) as fal:
        settings = load_settings(
            home=tmp_path, route_settings={"fal": {"base_url": fal.url}}, poll_interval=0.01, jsonl_path=sink
        )
        client = LipSyncClient(route="fal", credentials={"fal": "test-key"}, settings=settings)
        result = client.run(*media, tmp_path / "out.mp4", consent="signed release #7", seed=3)
    import json

    from latentsync_routes.journal import Journal

    journalled = Journal(settings.journal_path).get(result.job_id)
    assert journalled is not None
    (line,) = sink.read_text().splitlines()
    from_jsonl = json.loads(line)
    for record in (journalled.model_dump(mode="json"), from_jsonl):
        assert record["state"] == "fetched"
        assert record["route"] == "fal" and "fal" in record["route_owner"]
        assert record["model"] == "fal-ai/latentsync" and record["model_version"]
        assert record["billing_owner"] == "the fal account that owns FAL_KEY"
        assert record["consent_basis"] == "signed release #7"
        assert "fal CDN" in record["upload_destination"] and len(record["uploaded_uris"]) == 2
        assert record["retention_policy"] and record["deletion_policy"]
        assert record["code_licence"] == "Apache-2.0" and record["weights_licence"] == "openrail++"
        assert record["output_path"] == str(tmp_path / "out.mp4") and record["output_uri"]
        assert record["provider_request_id"] == result.provider_request_id
        assert [i["role"] for i in record["inputs"]] == ["video", "audio"]
        assert all(len(i["sha256"]) == 64 and i["source"].endswith((".mp4", ".wav")) for i in record["inputs"])
        assert record["parameters"] == {"seed": 3}
        assert {c["check"] for c in record["policy_checks"]} >= {"consent", "retention", "licence"}
        assert record["attempts"] and record["cost"]["estimated"] == pytest.approx(0.20)
        assert record["cost"]["actual"] == pytest.approx(0.20)
        assert record["library_version"] and record["timings"]["total_seconds"] > 0
        assert record["failure_reason"] is None
        assert "test-key" not in json.dumps(record)
