"""The local route's real loading path, without injected models.

Pinned files in the official formats (``{"state_dict"}`` UNet ``.pt``, openai-format whisper ``tiny.pt``,
a diffusers VAE folder, a mask PNG), at tiny sizes, sit in a Hugging Face-layout cache. The route resolves
them offline, verifies their hashes, loads them (UNet memory-mapped, strict keys) and runs a job through
the public client. Only the sizes differ from a real install: the manifest's hashes and the UNet config
are swapped for the tiny files' own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from dataclasses import asdict
from pathlib import Path

import cv2
import pytest
import torch

from latentsync_routes import LipSyncClient, output_frame_count
from latentsync_routes.local import checkpoints, runtime
from latentsync_routes.local import unet as unet_module
from latentsync_routes.local.checkpoints import CheckpointFile, ChecksumMismatch
from latentsync_routes.testing.tiny_local import tiny_mask, tiny_unet, tiny_vae, tiny_whisper
from tests.local_fixtures import astronaut_frames, write_h264
from tests.mediafactory import make_wav

pytest.importorskip("mediapipe")
REAL_MANIFEST = checkpoints.manifest


def official_format_files(tmp_path: Path) -> tuple[dict[str, bytes], torch.nn.Module]:
    """Bytes of each pinned role, written the way the official files are."""
    unet = tiny_unet()
    buffer = io.BytesIO()
    torch.save({"state_dict": unet.state_dict(), "global_step": 1}, buffer)
    whisper = tiny_whisper()
    dims = {
        **asdict(whisper.dims),
        "n_vocab": 51865,
        "n_text_ctx": 448,
        "n_text_state": 64,
        "n_text_head": 2,
        "n_text_layer": 1,
    }
    encoder = {f"encoder.{k}": v for k, v in whisper.state_dict().items()}
    decoder = {"decoder.token_embedding.weight": torch.zeros(4, 64)}  # ignored on load, as in the real file
    whisper_buffer = io.BytesIO()
    torch.save({"dims": dims, "model_state_dict": {**encoder, **decoder}}, whisper_buffer)
    vae_dir = tmp_path / "vae"
    tiny_vae().save_pretrained(vae_dir, safe_serialization=True)
    ok, png = cv2.imencode(".png", cv2.cvtColor(tiny_mask(256), cv2.COLOR_GRAY2BGR))
    assert ok
    files = {
        "unet": buffer.getvalue(),
        "whisper": whisper_buffer.getvalue(),
        "vae_config": (vae_dir / "config.json").read_bytes(),
        "vae_weights": (vae_dir / "diffusion_pytorch_model.safetensors").read_bytes(),
        "mask": png.tobytes(),
    }
    return files, unet


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, bytes], torch.nn.Module]:
    files, unet = official_format_files(tmp_path)
    home = tmp_path / "home"
    specs: dict[str, tuple[CheckpointFile, ...]] = {}

    def tiny_manifest(version: str) -> tuple[CheckpointFile, ...]:
        if version not in specs:
            specs[version] = tuple(
                dataclasses.replace(
                    spec, sha256=hashlib.sha256(files[spec.role]).hexdigest(), size=len(files[spec.role])
                )
                for spec in REAL_MANIFEST(version)
            )
        return specs[version]

    # A hand-built cache in huggingface_hub's layout (plain snapshot files), as `download` leaves it.
    for spec in tiny_manifest("1.5"):
        if spec.source == "hf":
            folder = home / "models" / "hub" / f"models--{spec.repo.replace('/', '--')}" / "snapshots" / spec.revision
        else:
            folder = home / "models" / "assets" / "github--bytedance--LatentSync" / spec.revision
        (folder / spec.filename).parent.mkdir(parents=True, exist_ok=True)
        (folder / spec.filename).write_bytes(files[spec.role])
    monkeypatch.setattr(checkpoints, "manifest", tiny_manifest)
    monkeypatch.setattr(unet_module, "UNetConfig", lambda: unet.config)  # the released layout, only narrower
    monkeypatch.setattr(runtime, "CACHE", runtime.ModelCache())
    monkeypatch.setenv("LATENTSYNC_ROUTES_HOME", str(home))
    monkeypatch.setenv("LATENTSYNC_ROUTES_LOCAL_DEVICE", "cpu")
    monkeypatch.setenv("LATENTSYNC_ROUTES_LOCAL_VERSION", "1.5")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return files, unet


def test_load_models_reads_the_pinned_files_strictly(installed: tuple[dict[str, bytes], torch.nn.Module]) -> None:
    files, reference = installed
    models = runtime.load_models("1.5", "cpu")
    loaded = models.unet.state_dict()
    assert loaded.keys() == reference.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in reference.state_dict().items())
    assert models.whisper.dims.n_audio_state == 64 and models.mask.shape == (256, 256)
    assert (models.mask == tiny_mask(256)).all()
    unet_sha = hashlib.sha256(files["unet"]).hexdigest()
    assert "ByteDance/LatentSync-1.5@" in models.model_version and unet_sha in models.model_version
    assert models.weights_licence is not None and models.weights_licence.startswith("openrail++")


def test_a_tampered_cache_file_is_refused(installed: tuple[dict[str, bytes], torch.nn.Module], tmp_path: Path) -> None:
    mask = next((tmp_path / "home" / "models" / "assets").rglob("mask.png"))
    mask.write_bytes(mask.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ChecksumMismatch, match="latentsync-routes download --version 1.5"):
        runtime.load_models("1.5", "cpu")


def test_the_route_runs_on_loaded_checkpoints(
    installed: tuple[dict[str, bytes], torch.nn.Module], tmp_path: Path
) -> None:
    video = write_h264(tmp_path / "face.mp4", astronaut_frames(13))
    audio = make_wav(tmp_path / "voice.wav", seconds=0.5)
    result = LipSyncClient(route="local").run(video, audio, tmp_path / "out.mp4", inference_steps=1, seed=1)
    import av

    with av.open(result.output_path or "") as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == output_frame_count(0.5)
    assert result.record.model_version.startswith("LatentSync 1.5: ByteDance/LatentSync-1.5@")
    assert result.record.weights_licence is not None and "openrail++" in result.record.weights_licence


def test_cli_run_local_on_the_downloaded_checkpoints(
    installed: tuple[dict[str, bytes], torch.nn.Module], tmp_path: Path
) -> None:
    import json

    from typer.testing import CliRunner

    from latentsync_routes.cli import app

    video = write_h264(tmp_path / "face.mp4", astronaut_frames(13))
    audio = make_wav(tmp_path / "voice.wav", seconds=0.5)
    out = tmp_path / "cli-out.mp4"
    done = CliRunner().invoke(
        app, ["run", str(video), str(audio), "-o", str(out), "--route", "local", "--inference-steps", "1", "--json"]
    )
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["route"] == "local" and result["output_path"] == str(out) and out.stat().st_size > 0
    assert result["cost"]["actual"] == 0.0 and result["record"]["state"] == "fetched"
