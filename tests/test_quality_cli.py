"""``latentsync-routes evaluate`` and ``download --syncnet`` refusals: exit 2, one message, never a traceback."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from latentsync_routes.quality import SyncNet  # noqa: E402
from tests.cli_helpers import run_cli  # noqa: E402
from tests.mediafactory import make_video  # noqa: E402
from tests.quality_media import speech_like, write_wav  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("weights") / "syncnet_random.model"
    torch.save(SyncNet().state_dict(), path)
    return path


def refused(done: subprocess.CompletedProcess[str], *words: str) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    message = str(json.loads(done.stdout)["error"]["message"])
    for word in words:
        assert word in message, message
    return message


def test_unreadable_media(tmp_path: Path, weights: Path) -> None:
    bogus = tmp_path / "clip.mp4"
    bogus.write_text("not a video")
    refused(run_cli("evaluate", str(bogus), "--syncnet-weights", str(weights), "--json", home=tmp_path), "cannot read")
    refused(run_cli("evaluate", str(tmp_path / "absent.mp4"), "--json", home=tmp_path), "no file at")  # no weights


def test_a_video_without_audio_asks_for_audio(tmp_path: Path, weights: Path) -> None:
    clip = make_video(tmp_path / "silent.mp4", seconds=1.0, size=(64, 48))
    refused(run_cli("evaluate", str(clip), "--syncnet-weights", str(weights), "--json", home=tmp_path),
            "no audio stream", "--audio")  # fmt: skip


def test_no_face(tmp_path: Path, weights: Path) -> None:
    pytest.importorskip("mediapipe")
    clip = make_video(tmp_path / "grey.mp4", seconds=2.4, size=(160, 120), with_audio=True)
    refused(run_cli("evaluate", str(clip), "--syncnet-weights", str(weights), "--json", home=tmp_path),
            "no face track", "a face in 0 of 60 frames")  # fmt: skip


def test_audio_too_short(tmp_path: Path, weights: Path) -> None:
    clip = make_video(tmp_path / "grey.mp4", seconds=2.4, size=(160, 120))
    short = write_wav(tmp_path / "short.wav", speech_like(0.2, seed=3))
    refused(run_cli("evaluate", str(clip), "--audio", str(short), "--syncnet-weights", str(weights), "--json",
                    home=tmp_path), "0.200 s of audio", "at least 0.24 s")  # fmt: skip


def test_no_weights_names_the_download_command(tmp_path: Path) -> None:
    clip = make_video(tmp_path / "grey.mp4", seconds=1.0, size=(64, 48))
    refused(run_cli("evaluate", str(clip), "--json", home=tmp_path), "latentsync-routes download --syncnet")


def test_download_syncnet_refusals(tmp_path: Path) -> None:
    refused(run_cli("download", "--syncnet", "--version", "1.5", "--json", home=tmp_path), "one thing at a time")
    offline = run_cli("download", "--syncnet", "--json", home=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    refused(offline, "syncnet_v2.model", "latentsync-routes download --syncnet")
