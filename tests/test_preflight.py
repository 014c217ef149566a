"""estimate, check and run read every input limit from one place, and agree on it; the deadline row.

Each limit (the route's and the policy's, on duration and on size) is tried just over and just under:
``estimate`` marks the route ``refused`` with a reason, ``check`` STOPs on the ``input_limits`` row with
the same reason, and ``run`` stops with :class:`PolicyViolation` (exit 3) before anything is uploaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from latentsync_routes import LipSyncClient, PolicyViolation, load_settings
from latentsync_routes.async_client import AsyncLipSyncClient
from latentsync_routes.routes.replicate import route as replicate
from latentsync_routes.testing import FakeReplicate, write_test_audio, write_test_video
from tests.conftest import DEADLINE_CHECK_ENV

TOKEN = "r8_preflight_token"


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("preflight")
    return write_test_video(root / "clip.mp4", 2.0), write_test_audio(root / "voice.wav", 6.0)


def _sizes(media: tuple[Path, Path]) -> tuple[int, int]:
    return media[0].stat().st_size, media[1].stat().st_size


def _cases(media: tuple[Path, Path]) -> list[tuple[str, dict[str, Any], dict[str, Any], str]]:
    video_bytes, audio_bytes = _sizes(media)
    biggest = max(video_bytes, audio_bytes)
    route = "route 'replicate' takes at most"
    return [
        ("route audio seconds", {"max_audio_seconds": 5.0}, {}, f"the audio is 6 s; {route} 5 s"),
        ("route video seconds", {"max_video_seconds": 1.5}, {}, f"the video is 2 s; {route} 1.5 s"),
        ("route bytes", {"max_input_bytes": biggest - 1}, {}, f"is {biggest} bytes; {route}"),
        ("policy audio seconds", {}, {"max_audio_seconds": 5.5}, "the audio is 6 s; the policy takes at most 5.5 s"),
        ("policy video seconds", {}, {"max_video_seconds": 1.0}, "the video is 2 s; the policy takes at most 1 s"),
        ("policy bytes", {}, {"max_input_bytes": biggest - 1}, f"is {biggest} bytes; the policy takes at most"),
    ]


@pytest.mark.parametrize("case", range(6))
def test_estimate_check_and_run_agree_on_every_limit(
    case: int, media: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, route_update, policy_update, expected = _cases(media)[case]
    monkeypatch.setattr(replicate, "INFO", replicate.INFO.model_copy(update=route_update))
    settings = load_settings(home=tmp_path, policy=policy_update)
    with FakeReplicate(expected_token=TOKEN) as fake:
        monkeypatch.setenv("LATENTSYNC_ROUTES_REPLICATE_BASE_URL", fake.url)
        client = LipSyncClient(route="replicate", credentials={"replicate": TOKEN}, consent="test", settings=settings)
        refused = client.estimate(*media).refused
        assert refused is not None and expected in refused, name
        marked = {e.route: e.refused for e in client.estimate_all(*media)}
        assert marked["replicate"] == refused
        if not policy_update:  # a route's own limit marks that route only
            assert all(reason is None for route, reason in marked.items() if route != "replicate")
        else:  # the policy's holds on every route
            assert all(reason and expected in reason for reason in marked.values())
        rows = {r.check: r for r in client.check(*media)}
        assert rows["input_limits"].passed is False and rows["input_limits"].reason == refused
        with pytest.raises(PolicyViolation) as stop:
            client.run(*media, tmp_path / "out.mp4")
        assert stop.value.exit_code == 3 and refused in stop.value.message
        assert fake.requests == []  # nothing uploaded, nothing submitted
    assert not (tmp_path / "out.mp4").exists()
    assert client.journal.list() == []  # refused before the claim: nothing journalled


def test_within_every_limit_nothing_is_refused(media: tuple[Path, Path], tmp_path: Path) -> None:
    video_bytes, audio_bytes = _sizes(media)
    policy = {"max_audio_seconds": 6.5, "max_video_seconds": 2.5, "max_input_bytes": max(video_bytes, audio_bytes)}
    client = LipSyncClient(route="replicate", consent="test", settings=load_settings(home=tmp_path, policy=policy))
    assert all(e.refused is None for e in client.estimate_all(*media))
    rows = {r.check: r for r in client.check(*media)}
    assert rows["input_limits"].passed, rows["input_limits"].reason


def test_async_client_marks_refused_routes_too(media: tuple[Path, Path], tmp_path: Path) -> None:
    import asyncio

    async def go() -> tuple[list[Any], list[Any]]:
        settings = load_settings(home=tmp_path, policy={"max_audio_seconds": 5.0})
        async with AsyncLipSyncClient(route="fal", settings=settings, consent="test") as client:
            return await client.estimate_all(*media), await client.check(*media)

    estimates, rows = asyncio.run(go())
    assert all(e.refused and "the policy takes at most 5 s" in e.refused for e in estimates)
    assert {r.check: r.passed for r in rows}["input_limits"] is False


@pytest.fixture
def deadline_check_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEADLINE_CHECK_ENV, "true")


def test_deadline_row_stops_a_job_expected_to_outlast_it(
    media: tuple[Path, Path], tmp_path: Path, deadline_check_on: None
) -> None:
    client = LipSyncClient(route="replicate", consent="test", settings=load_settings(home=tmp_path))
    expected = client.estimate(*media).expected_wall_seconds
    assert expected is not None and expected > 2
    rows = {r.check: r for r in client.check(*media, deadline_seconds=expected / 2)}
    assert rows["deadline"].passed is False and "over the deadline" in rows["deadline"].reason
    assert {r.check: r for r in client.check(*media, deadline_seconds=expected * 2)}["deadline"].passed
    with pytest.raises(PolicyViolation, match="deadline: expected time"):
        client.run(*media, tmp_path / "out.mp4", deadline_seconds=expected / 2)
    assert client.journal.list() == []
    off = LipSyncClient(
        route="replicate", consent="test", settings=load_settings(home=tmp_path, policy={"deadline_check": False})
    )
    row = {r.check: r for r in off.check(*media, deadline_seconds=expected / 2)}["deadline"]
    assert row.passed and row.reason.startswith("skipped (policy.deadline_check = false)")


def test_deadline_row_when_no_expected_time_is_known(
    media: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deadline_check_on: None
) -> None:
    from latentsync_routes.routes.fal.route import FalRoute

    original = FalRoute.estimate

    def without_time(self: Any, *args: Any) -> Any:
        return original(self, *args).model_copy(update={"expected_wall_seconds": None})

    monkeypatch.setattr(FalRoute, "estimate", without_time)
    client = LipSyncClient(route="fal", consent="test", settings=load_settings(home=tmp_path))
    row = {r.check: r for r in client.check(*media, deadline_seconds=1)}["deadline"]
    assert row.passed and "no expected time" in row.reason


def test_a_local_cpu_job_over_the_default_deadline_is_a_stop(
    media: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deadline_check_on: None
) -> None:
    """The case that used to pass silently: hours of CPU time expected under the default 30 min deadline."""
    pytest.importorskip("torch")
    monkeypatch.setenv("LATENTSYNC_ROUTES_LOCAL_DEVICE", "cpu")
    client = LipSyncClient(route="local", settings=load_settings(home=tmp_path))
    expected = client.estimate(*media).expected_wall_seconds
    assert expected is not None and expected > client.settings.deadline_seconds
    row = {r.check: r for r in client.check(*media)}["deadline"]
    assert not row.passed and "over the deadline of 1800 s" in row.reason
