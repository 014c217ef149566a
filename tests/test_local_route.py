"""The local route end to end through the public client, with tiny random-weight models and real faces
(MediaPipe on the astronaut), plus its device/version choice and model cache."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

import latentsync_routes
from latentsync_routes import LipSyncClient
from latentsync_routes.errors import ConfigurationError, DeadlineExceeded, InputError, LocalRouteError
from latentsync_routes.local import runtime
from latentsync_routes.local.runtime import LoadedModels, ModelCache, choose, choose_version
from latentsync_routes.testing.tiny_local import register_tiny_models
from tests.local_fixtures import astronaut_frames, write_h264
from tests.mediafactory import make_wav

pytest.importorskip("mediapipe")

MODEL_VERSION = "tiny random test models (no checkpoint)"


def decode_all(path: Path) -> tuple[np.ndarray, bool]:
    with av.open(str(path)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
        has_audio = bool(container.streams.audio)
    return frames, has_audio


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> ModelCache:
    """A fresh process cache for the test, so no model set leaks into other tests."""
    fresh = ModelCache()
    monkeypatch.setattr(runtime, "CACHE", fresh)
    return fresh


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LATENTSYNC_ROUTES_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LATENTSYNC_ROUTES_LOCAL_DEVICE", "cpu")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "home"


@pytest.fixture
def tiny(cache: ModelCache) -> LoadedModels:
    """The tiny 1.5 set on the CPU, registered in the test's fresh cache so it leaks into no other test."""
    return register_tiny_models("1.5", model_version=MODEL_VERSION, weights_licence="test-only", cache=cache)


def spy_on_the_allocator(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from latentsync_routes.local import allocator

    calls: list[int] = []
    monkeypatch.setattr(allocator, "keep_freed_memory", lambda: calls.append(1) or "kept")
    return calls


def test_end_to_end_through_the_client(
    tmp_path: Path, home: Path, tiny: LoadedModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    allocator_calls = spy_on_the_allocator(monkeypatch)
    video = write_h264(tmp_path / "face.mp4", astronaut_frames(25))  # 1 s of a moving face
    audio = make_wav(tmp_path / "voice.wav", seconds=1.0)
    messages: list[tuple[str, float | None]] = []
    client = LipSyncClient(route="local")
    result = client.run(video, audio, tmp_path / "out.mp4", inference_steps=2, seed=3,
                        progress=lambda m, f: messages.append((m, f)))  # fmt: skip

    frames, has_audio = decode_all(Path(result.output_path or ""))
    assert frames.shape == (latentsync_routes.output_frame_count(1.0), 192, 160, 3)  # 27: follows the audio
    assert has_audio
    record = result.record
    assert record.state == "fetched" and record.model_version == MODEL_VERSION
    assert record.weights_licence == "test-only"
    assert result.cost.actual == 0.0 and "CPU" in result.cost.basis
    assert [(a.step, a.status) for a in record.attempts] == [("run", "ok")]
    assert any(m.startswith("chunk 2/2") for m, _ in messages)
    assert any("CPU" in m for m, _ in messages)  # the CPU warning, with its time estimate
    assert allocator_calls == [1]  # a CPU run keeps freed memory (local/allocator.py)
    assert not list(tmp_path.glob(".out.partial-*"))
    # The face region changed (the model pasted a mouth), the background did not.
    source = astronaut_frames(25)
    assert np.abs(frames[0, 5:30, 5:30].astype(int) - source[0, 5:30, 5:30]).mean() < 4
    assert np.abs(frames[0, 110:150, 50:110].astype(int) - source[0, 110:150, 50:110]).mean() > 1


def faceless_clip(tmp_path: Path) -> tuple[Path, Path]:
    frames = astronaut_frames(15)
    frames[5:8] = 110  # three frames with no face (a cut to grey)
    return write_h264(tmp_path / "cut.mp4", frames), make_wav(tmp_path / "voice.wav", seconds=0.5)


def test_missing_face_fails_by_default_naming_the_frame(tmp_path: Path, home: Path, tiny: LoadedModels) -> None:
    video, audio = faceless_clip(tmp_path)
    client = LipSyncClient(route="local")
    with pytest.raises(LocalRouteError, match=r"frame 5 \(t = 0\.20 s") as info:
        client.run(video, audio, tmp_path / "out.mp4", inference_steps=1)
    assert "passthrough" in str(info.value)
    assert not (tmp_path / "out.mp4").exists()
    failed = client.journal.list()[0]
    assert failed.state == "failed" and "frame 5" in (failed.failure_reason or "")
    assert [(a.step, a.status) for a in failed.attempts] == [("run", "error")]


def test_missing_face_passthrough_keeps_those_frames(
    tmp_path: Path, home: Path, tiny: LoadedModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LATENTSYNC_ROUTES_LOCAL_KEEP_FREED_MEMORY", "0")
    allocator_calls = spy_on_the_allocator(monkeypatch)
    video, audio = faceless_clip(tmp_path)
    client = LipSyncClient(route="local")
    result = client.run(video, audio, tmp_path / "out.mp4", inference_steps=1,
                        extras={"on_missing_face": "passthrough"})  # fmt: skip
    frames, _ = decode_all(Path(result.output_path or ""))
    assert frames.shape[0] == latentsync_routes.output_frame_count(0.5) == 14
    assert np.abs(frames[5:8].astype(int) - 110).max() <= 3  # grey in, grey out (two lossy encodes)
    assert allocator_calls == []  # turned off by the setting


def test_bytes_inputs_and_the_deadline(tmp_path: Path, home: Path, tiny: LoadedModels) -> None:
    # Bytes land in the job's private folder; the deadline is checked before each chunk's model work.
    video = write_h264(tmp_path / "face.mp4", astronaut_frames(5)).read_bytes()
    audio = make_wav(tmp_path / "voice.wav", seconds=0.2).read_bytes()
    calls: list[int] = []
    handle = tiny.unet.register_forward_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(DeadlineExceeded, match="deadline"):
            LipSyncClient(route="local").run(video, audio, tmp_path / "out.mp4", deadline_seconds=1e-6)
    finally:
        handle.remove()
    assert not calls and not (tmp_path / "out.mp4").exists()


def test_missing_checkpoints_name_the_download_command(tmp_path: Path, home: Path, cache: ModelCache) -> None:
    video = write_h264(tmp_path / "face.mp4", astronaut_frames(3))
    audio = make_wav(tmp_path / "voice.wav", seconds=0.2)
    with pytest.raises(ConfigurationError, match="latentsync-routes download --version 1.5"):
        LipSyncClient(route="local").run(video, audio, tmp_path / "out.mp4")


def test_an_existing_output_is_not_overwritten(tmp_path: Path, home: Path, tiny: LoadedModels) -> None:
    video = write_h264(tmp_path / "face.mp4", astronaut_frames(3))
    audio = make_wav(tmp_path / "voice.wav", seconds=0.2)
    (tmp_path / "out.mp4").write_bytes(b"keep me")
    with pytest.raises(InputError, match="already exists"):
        LipSyncClient(route="local").run(video, audio, tmp_path / "out.mp4")
    assert (tmp_path / "out.mp4").read_bytes() == b"keep me"


# --------------------------------------------------------------------------------------------- choice, cache


@pytest.mark.parametrize(
    ("free", "version", "warns"),
    [(40.0, "1.6", False), (18.0, "1.6", False), (17.9, "1.5", False), (8.0, "1.5", False), (5.0, "1.5", True)],
)
def test_auto_picks_the_version_by_free_vram(free: float, version: str, warns: bool) -> None:
    chosen, reason, warnings = choose_version("auto", "cuda", free)
    assert chosen == version and f"{free:.1f} GB" in reason
    assert bool(warnings) is warns


def test_explicit_versions_loaded_models_and_cpu() -> None:
    assert choose_version("1.6", "cuda", 10.0)[0] == "1.6" and choose_version("1.6", "cuda", 10.0)[2]
    assert choose_version("auto", "cuda", 4.0, loaded=("1.6",))[0] == "1.6"  # keep what is loaded
    version, reason, _ = choose_version("auto", "cpu", None)
    assert version == "1.5" and "no CUDA" in reason
    with pytest.raises(ValueError, match="local_version"):
        choose_version("2.0", "cpu", None)


def test_choice_on_cpu_warns_with_a_time_estimate(cache: ModelCache) -> None:
    choice = choose("auto", "cpu")
    assert (choice.device, choice.version, choice.dtype) == ("cpu", "1.5", runtime.dtype_name_for("cpu"))
    assert any("min of wall time per second" in w for w in choice.warnings)
    assert choose("auto", "cuda:0", cache).dtype == "float16"


def test_describe_choice_for_doctor(home: Path, cache: ModelCache) -> None:
    route = LipSyncClient(route="local").route("local")
    report = route.describe_choice()  # type: ignore[attr-defined]
    assert report["device"] == "cpu" and report["version"] == "1.5" and report["resolution"] == 256
    assert report["reason"] and report["cpu_seconds_per_output_second"] > 0
    assert "latentsync-routes download --version 1.5" in report["checkpoints"]


def test_model_cache_loads_each_set_once_across_threads() -> None:
    cache = ModelCache()
    loads: list[int] = []

    def loader() -> LoadedModels:
        loads.append(1)
        time.sleep(0.05)
        return LoadedModels(unet=None, vae=None, whisper=None, mask=np.zeros((256, 256), np.uint8), version="1.5",
                            device="cpu", dtype="float32", model_version="x", weights_licence=None)  # fmt: skip

    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("1.5", "cpu", "float32", loader)))
               for _ in range(6)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 1 and all(g is got[0] for g in got) and len(got) == 6
    assert cache.loaded_versions("cpu", "float32") == ("1.5",)


def test_vae_slices_its_batch_on_gpu_only() -> None:
    from latentsync_routes.testing.tiny_local import tiny_vae

    assert runtime.fit_vae_to_device(tiny_vae(), "cuda").use_slicing is True
    assert runtime.fit_vae_to_device(tiny_vae(), "cpu").use_slicing is False
