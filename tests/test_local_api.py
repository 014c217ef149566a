"""The local model as a library: its own errors (translated by the route), the pipeline object, the speed
figures and the estimate made for the device the job will run on, regional compilation, and the boundary
that keeps routes and prices out of ``latentsync_routes.local``."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch

import latentsync_routes.local as local_pkg
from latentsync_routes import LipSyncClient
from latentsync_routes.errors import ConfigurationError, InvalidParameter, LocalRouteError, RouteNotInstalled
from latentsync_routes.local import runtime, speed
from latentsync_routes.local.checkpoint_manifest import manifest
from latentsync_routes.local.checkpoints import CheckpointError, CheckpointMissing
from latentsync_routes.local.compiling import compile_unet_regions, compiled_regions
from latentsync_routes.local.errors import LocalRunError, MissingFace, ModuleMissing
from latentsync_routes.local.lipsync import LatentSyncPipeline
from latentsync_routes.local.video_base import VideoError
from latentsync_routes.routes.local import route as route_mod
from latentsync_routes.testing.media import write_test_video
from latentsync_routes.testing.tiny_local import tiny_mask, tiny_unet, tiny_vae, tiny_whisper
from tests.mediafactory import make_wav

torch.set_num_threads(2)


def test_nothing_under_local_imports_routes_prices_or_package_errors() -> None:
    forbidden = {"errors", "pricing", "routes", "types", "config", "client", "journal"}
    offenders = []
    for path in Path(local_pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level >= 2 and module.split(".")[0] in forbidden:
                    offenders.append(f"{path.name}: from {'.' * node.level}{module}")
                if node.level == 0 and module.startswith("latentsync_routes.") and \
                        module.split(".")[1] in forbidden:  # fmt: skip
                    offenders.append(f"{path.name}: from {module}")
    assert offenders == []


@pytest.mark.parametrize(
    ("error", "kind", "exit_code"),
    [
        (CheckpointMissing(manifest("1.5")[0], "1.5"), ConfigurationError, 2),
        (ModuleMissing("no mediapipe", module="mediapipe", extra="faces"), RouteNotInstalled, 2),
        (MissingFace(5, 25.0), LocalRouteError, 4),
        (LocalRunError("wrote 3 frames but the audio needs 4"), LocalRouteError, 4),
        (VideoError("cannot open x.mp4"), LocalRouteError, 4),
    ],
)
def test_the_route_translates_the_local_errors(error: Exception, kind: type, exit_code: int) -> None:
    translated = route_mod._translate(error)
    assert type(translated) is kind and translated.exit_code == exit_code and translated.route == "local"
    assert str(error) in translated.message


def test_missing_face_names_the_frame_and_the_way_out() -> None:
    error = MissingFace(5, 25.0)
    assert error.frame_index == 5 and "t = 0.20 s" in error.message and "passthrough" in error.message


def test_route_defaults_are_the_official_inference_defaults() -> None:
    defaults = {spec.name: spec.default for spec in route_mod.INFO.parameters}
    assert defaults["deepcache"] is True and defaults["inference_steps"] == 20 and defaults["guidance_scale"] == 1.5
    assert defaults["dtype"] == "auto" and defaults["compile"] is False


# --------------------------------------------------------------------------------------------- estimate


@pytest.fixture
def cpu_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LipSyncClient:
    monkeypatch.setenv("LATENTSYNC_ROUTES_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LATENTSYNC_ROUTES_LOCAL_DEVICE", "cpu")
    return LipSyncClient(route="local")


@pytest.fixture
def media(tmp_path: Path) -> tuple[Path, Path]:
    return write_test_video(tmp_path / "v.mp4", seconds=1.0), make_wav(tmp_path / "a.wav", seconds=7.0)


def test_cpu_estimate_quotes_cpu_figures_and_no_vram(cpu_client: LipSyncClient, media: tuple[Path, Path]) -> None:
    estimate = cpu_client.estimate(*media)
    assert estimate.expected_vram_gb is None and "VRAM" not in estimate.basis and "cuda" not in estimate.basis
    assert estimate.amount == 0.0 and "CPU time is not billed" in estimate.basis
    dtype = runtime.dtype_name_for("cpu")
    per_second = speed.wall_seconds_per_output_second("cpu", dtype, "1.5", deepcache=True)
    assert estimate.expected_wall_seconds == pytest.approx(per_second * estimate.output_seconds)
    uncached = cpu_client.estimate(*media, extras={"deepcache": False})
    assert uncached.expected_wall_seconds > 2 * estimate.expected_wall_seconds  # type: ignore[operator]
    fewer = cpu_client.estimate(*media, inference_steps=10)
    assert fewer.expected_wall_seconds == pytest.approx(estimate.expected_wall_seconds / 2)  # type: ignore[operator]
    fp32 = cpu_client.estimate(*media, extras={"dtype": "float32"})
    assert fp32.expected_wall_seconds >= estimate.expected_wall_seconds  # type: ignore[operator]
    with pytest.raises(InvalidParameter, match="float16 on the CPU"):
        cpu_client.estimate(*media, extras={"dtype": "float16"})


def test_gpu_estimate_quotes_vram_and_gpu_hours() -> None:
    estimate = route_mod.local_estimate(10.0, device="cuda:0", dtype="float16", version="1.6", gpu_hour_usd=3.6)
    assert estimate.expected_vram_gb == 18 and "VRAM" in estimate.basis and estimate.amount > 0
    assert "not measured here" in estimate.basis  # GPU figures are public reports, said so
    assert speed.vram_gb("mps", "1.5") is None and speed.vram_gb("cpu", "1.6") is None


def test_without_torch_the_estimate_assumes_the_cpu_unless_a_gpu_is_visible(
    cpu_client: LipSyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    route = cpu_client.route("local")
    monkeypatch.setattr(route, "availability", lambda: "torch is not installed")
    monkeypatch.setattr(route.settings, "local_device", None)
    monkeypatch.setattr(route_mod.shutil, "which", lambda name: None)
    assert route.device_and_version()[0] == "cpu"  # type: ignore[attr-defined]
    monkeypatch.setattr(route_mod.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    assert route.device_and_version()[:1] == ("cuda",)  # type: ignore[attr-defined]


def test_speed_figures_scale_with_threads_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speed, "_cpu_threads", lambda: 2)
    two = speed.wall_seconds_per_output_second("cpu", "bfloat16", "1.5")
    monkeypatch.setattr(speed, "_cpu_threads", lambda: 4)
    assert speed.wall_seconds_per_output_second("cpu", "bfloat16", "1.5") == pytest.approx(two / 2)
    assert speed.wall_seconds_per_output_second("cpu", "bfloat16", "1.6") == pytest.approx(2 * two)
    assert speed.wall_seconds_per_output_second("cpu", "float32", "1.5") < two / 2  # bf16 measured slower here
    with pytest.raises(ValueError, match="version"):
        speed.speed_figure("cpu", "float32", "2.0")


# --------------------------------------------------------------------------------------------- pipeline object


def test_from_pretrained_folder_names_the_missing_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from latentsync_routes.local import lipsync

    kept: list[int] = []
    monkeypatch.setattr(lipsync, "keep_freed_memory_", lambda: kept.append(1) or "kept")
    (tmp_path / "whisper").mkdir()
    with pytest.raises(CheckpointError, match="latentsync_unet.pt") as info:
        LatentSyncPipeline.from_pretrained(tmp_path, device="cpu")
    assert "mask.png" in info.value.message
    assert kept == [1]  # a CPU pipeline keeps freed memory (local/allocator.py) unless told not to
    with pytest.raises(CheckpointError):
        LatentSyncPipeline.from_pretrained(tmp_path, device="cpu", keep_freed_memory=False)
    assert kept == [1]


def test_from_pretrained_version_without_checkpoints_says_how_to_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LATENTSYNC_ROUTES_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointMissing, match="latentsync-routes download --version 1.5"):
        LatentSyncPipeline.from_pretrained("1.5", device="cpu", cache_dir=tmp_path)


@pytest.mark.slow
def test_the_pipeline_object_syncs_a_video(tmp_path: Path) -> None:
    models = runtime.LoadedModels(
        unet=tiny_unet(), vae=tiny_vae(), whisper=tiny_whisper(), mask=tiny_mask(64), version="1.5", device="cpu",
        dtype="float32", model_version="tiny", weights_licence=None,
    )  # fmt: skip
    anchors = np.array([[22.0, 26.0], [42.0, 26.0], [32.0, 40.0]])
    pipe = LatentSyncPipeline(models, detector=lambda frame: anchors)
    video = write_test_video(tmp_path / "v.mp4", seconds=0.4)
    audio = make_wav(tmp_path / "a.wav", seconds=0.4)
    stats = pipe(video, audio, tmp_path / "out.mp4", num_inference_steps=3)
    assert stats.output_path.is_file() and stats.frames_written > 0
    assert stats.unet_passes == 1  # the step cache is on by default: 3 steps, one full pass
    again = pipe(video, audio, tmp_path / "plain.mp4", num_inference_steps=3, deepcache=False)
    assert again.unet_passes == 3 and again.frames_written == stats.frames_written
    assert "cpu" in repr(pipe) and pipe.resolution == 64


def test_regional_compile_leaves_the_cached_resnet_eager() -> None:
    unet = tiny_unet()
    assert compiled_regions(unet) == 0
    count = compile_unet_regions(unet)  # lazy: nothing is compiled until the first call
    assert count == compiled_regions(unet) > 10
    assert getattr(unet.up_blocks[-1].resnets[-1], "_compiled_call_impl", None) is None


def test_download_errors_reach_the_cli_as_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from latentsync_routes.local import checkpoints

    def offline(version: str, cache_dir: object = None) -> None:
        raise CheckpointMissing(manifest(version)[0], version, "the hub is offline")

    monkeypatch.setattr(checkpoints, "download", offline)
    with pytest.raises(ConfigurationError, match="latentsync-routes download --version 1.6") as info:
        route_mod.download_checkpoints("1.6")
    assert info.value.exit_code == 2
