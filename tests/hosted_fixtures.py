"""Fixtures for the hosted-route tests: a clean environment, tiny media, the fakes, and job helpers.

Every test runs the public ``LipSyncClient`` against :class:`FakeFal` / :class:`FakeReplicate` on
loopback, with the real fal-client and replicate packages doing real HTTP. Test modules import the
fixtures they use from here (``from tests.hosted_fixtures import ...``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from latentsync_routes import LipSyncClient, load_settings
from latentsync_routes.routes.base import JobContext
from latentsync_routes.testing import FakeFal, FakeReplicate
from latentsync_routes.types import Cost, JobRecord, LipSyncRequest, MediaInfo, MediaSource
from tests.mediafactory import make_video, make_wav

FAL_KEY = "test-key"
REPLICATE_TOKEN = "r8_test_token_value"
SECRETS = (FAL_KEY, REPLICATE_TOKEN)


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 1 s H.264 clip and a 1 s wav (made once per session)."""
    root = tmp_path_factory.mktemp("hosted-media")
    return make_video(root / "clip.mp4", 1.0), make_wav(root / "voice.wav", 1.0)


@pytest.fixture
def hosted_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clean environment: no real credentials or base URLs, a private home, fast polls and backoff."""
    import os

    for name in list(os.environ):
        if name.startswith(("LATENTSYNC_ROUTES_", "FAL_", "REPLICATE_")):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("LATENTSYNC_ROUTES_POLICY__FACE_CHECK", "false")  # synthetic clips: no face (conftest.py)
    monkeypatch.setenv("LATENTSYNC_ROUTES_POLICY__DEADLINE_CHECK", "false")  # fakes beat any estimate (conftest.py)
    monkeypatch.setenv("LATENTSYNC_ROUTES_HOME", str(home))
    monkeypatch.setenv("LATENTSYNC_ROUTES_POLL_INTERVAL", "0.01")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    monkeypatch.setattr("latentsync_routes.retry.BASE_DELAY_S", 0.01)
    return home


@pytest.fixture
def fal(hosted_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeFal]:
    """A strict FakeFal (unknown paths fail the test) wired in through LATENTSYNC_ROUTES_FAL_BASE_URL."""
    with FakeFal(expected_key=FAL_KEY, queue_polls=1, progress_polls=1) as server:
        monkeypatch.setenv("LATENTSYNC_ROUTES_FAL_BASE_URL", server.url)
        yield server


@pytest.fixture
def rep(hosted_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeReplicate]:
    """A strict FakeReplicate wired in through LATENTSYNC_ROUTES_REPLICATE_BASE_URL."""
    with FakeReplicate(expected_token=REPLICATE_TOKEN) as server:
        monkeypatch.setenv("LATENTSYNC_ROUTES_REPLICATE_BASE_URL", server.url)
        yield server


def fal_client(key: str = FAL_KEY, **kwargs: Any) -> LipSyncClient:
    return LipSyncClient(route="fal", credentials={"fal": key}, consent="test", **kwargs)


def replicate_client(token: str = REPLICATE_TOKEN, **kwargs: Any) -> LipSyncClient:
    return LipSyncClient(route="replicate", credentials={"replicate": token}, consent="test", **kwargs)


def steps(record: Any) -> list[tuple[str, str, int | None]]:
    """(step, status, http_status) of each recorded attempt."""
    return [(a.step, a.status, a.http_status) for a in record.attempts]


def assert_no_secrets(*texts: str, home: Path | None = None) -> None:
    """No credential value in any text, nor in any file under ``home`` (the journal, records)."""
    blobs = list(texts)
    if home is not None and home.exists():
        blobs += [p.read_bytes().decode("latin-1") for p in home.rglob("*") if p.is_file()]
    for secret in SECRETS:
        for blob in blobs:
            assert secret not in blob, f"a credential value leaked: {blob[:200]!r}"


def make_job(tmp_path: Path, *, deadline_s: float = 30.0, overwrite: bool = False, **settings: Any) -> JobContext:
    """A JobContext outside the client, for unit tests of retry and download."""
    cfg = load_settings(home=tmp_path / "home", **settings)
    record = JobRecord(
        job_id="job1",
        idempotency_key="k",
        route="test",
        route_owner="o",
        billing_owner="b",
        model="m",
        model_version="v",
        upload_destination="d",
        retention_policy="r",
        deletion_policy="d",
        cost=Cost(estimated=0.0),
        library_version="0",
    )
    source = MediaSource(kind="url", url="https://example.invalid/x.mp4")
    info = MediaInfo(container="mp4", duration=1.0)
    return JobContext(
        record=record,
        request=LipSyncRequest(video=source, audio=source),
        video_info=info,
        audio_info=info,
        output_path=tmp_path / "out.mp4",
        settings=cfg,
        credential=None,
        deadline=time.monotonic() + deadline_s,
        overwrite=overwrite,
    )
