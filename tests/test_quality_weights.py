"""The SyncNet weights: fetched through the pinned checkpoint manager, verified as SyncNet, pinned on first use.

The real ``hf_hub_download`` runs against the loopback Hub of tests/test_checkpoints.py, serving a
SyncNet-shaped state dict with random values made here (the real file is never bundled or fetched).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("huggingface_hub")

from huggingface_hub import constants as hf_constants  # noqa: E402

from latentsync_routes.local.checkpoint_manifest import SYNCNET_QUOTED_SHA256, syncnet_file  # noqa: E402
from latentsync_routes.local.checkpoints import CheckpointMissing, ChecksumMismatch  # noqa: E402
from latentsync_routes.quality import SyncNet, SyncNetWeightsError  # noqa: E402
from latentsync_routes.quality.weights import download_syncnet, load_syncnet, resolve_syncnet  # noqa: E402
from tests.test_checkpoints import FakeHub  # noqa: E402

SPEC = syncnet_file()
HUB_PATH = f"/{SPEC.repo}/resolve/{SPEC.revision}/{SPEC.filename}"


def saved(state: dict[str, object]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def syncnet_bytes() -> bytes:
    torch.manual_seed(3)
    return saved(SyncNet().state_dict())


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    server = FakeHub()
    monkeypatch.setenv("LATENTSYNC_ROUTES_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield server
    server.close()


def test_the_pin_names_the_official_file_and_its_licence() -> None:
    assert (SPEC.repo, SPEC.filename) == ("ByteDance/LatentSync-1.5", "auxiliary/syncnet_v2.model")
    assert len(SPEC.revision) == 40 and SPEC.sha256 is None  # no hash could be checked: pinned on first use
    assert "openrail++" in SPEC.licence.name and not SPEC.licence.verified
    assert len(SYNCNET_QUOTED_SHA256) == 64


def test_first_download_is_verified_and_pinned_then_held_to_the_pin(
    hub: FakeHub, syncnet_bytes: bytes, tmp_path: Path
) -> None:
    hub.files[HUB_PATH] = syncnet_bytes
    first = download_syncnet(endpoint=hub.url)
    assert first.pin == "recorded now" and first.path.read_bytes() == syncnet_bytes
    assert first.matches_quoted is False  # random stand-in weights
    pins = list((tmp_path / "home" / "models" / "pins").iterdir())
    assert [json.loads(p.read_text())["sha256"] for p in pins] == [first.sha256]
    hub.requests.clear()
    again = download_syncnet(endpoint=hub.url)
    assert again.pin == "matches the recorded pin" and hub.requests == []  # cached: nothing fetched
    resolved = resolve_syncnet()
    assert (resolved.path, resolved.sha256) == (first.path, first.sha256)
    model = load_syncnet(resolved.path)
    assert torch.equal(model.state_dict()["netfclip.3.bias"], torch.load(io.BytesIO(syncnet_bytes))["netfclip.3.bias"])


def test_a_cached_file_changed_after_its_pin_is_refused(hub: FakeHub, syncnet_bytes: bytes) -> None:
    hub.files[HUB_PATH] = syncnet_bytes
    path = download_syncnet(endpoint=hub.url).path
    path.unlink()
    path.write_bytes(syncnet_bytes[:-10] + b"0123456789")
    with pytest.raises(SyncNetWeightsError, match="no longer matches the sha256 recorded"):
        resolve_syncnet()
    with pytest.raises(ChecksumMismatch):
        download_syncnet(endpoint=hub.url)
    assert path.exists()  # a cached file is left for the user to look at; only a fresh fetch is discarded


def test_a_file_that_is_not_syncnet_is_discarded_and_not_pinned(
    hub: FakeHub, syncnet_bytes: bytes, tmp_path: Path
) -> None:
    hub.files[HUB_PATH] = saved({"netcnnaud.0.weight": torch.zeros(64, 1, 3, 3)})
    with pytest.raises(SyncNetWeightsError, match="missing"):
        download_syncnet(endpoint=hub.url)
    assert not (tmp_path / "home" / "models" / "pins").exists()
    hub.files[HUB_PATH] = syncnet_bytes  # the next download fetches again, and succeeds
    assert download_syncnet(endpoint=hub.url).pin == "recorded now"


def test_nothing_cached_names_the_command_and_offline_download_says_so(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(SyncNetWeightsError, match="latentsync-routes download --syncnet"):
        resolve_syncnet()
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointMissing, match="latentsync-routes download --syncnet"):
        download_syncnet(endpoint=hub.url)


def test_a_user_path_is_used_as_given(tmp_path: Path, syncnet_bytes: bytes) -> None:
    with pytest.raises(SyncNetWeightsError, match="no SyncNet weights file"):
        resolve_syncnet(tmp_path / "absent.model")
    path = tmp_path / "mine.model"
    path.write_bytes(syncnet_bytes)
    assert resolve_syncnet(path).pin == "user-supplied (not pinned)"
    (tmp_path / "junk.model").write_bytes(b"not a checkpoint")
    with pytest.raises(SyncNetWeightsError, match="not a readable torch state dict"):
        load_syncnet(tmp_path / "junk.model")
