"""The quality cost of the local route's speed defaults (bf16 where the CPU probe finds it faster, the step
cache), measured on the official ``pipeline_tiny`` goldens against our float32 uncached run (which matches the
goldens), and the per-device dtype rule. docs/local.md quotes the figures these bounds hold.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from safetensors.torch import load_file

from latentsync_routes.local import pipeline as P
from latentsync_routes.local import precision
from latentsync_routes.local.audio import WhisperFeatures, load_audio
from latentsync_routes.local.unet import LatentSyncUNet
from tests.conftest import goldens_path

torch.set_num_threads(2)

#: Bounds on the difference from float32 without the cache, at the goldens' settings (3 DDIM steps, 256 px):
#: restored frames in 8-bit levels (max, mean over the frame), synced faces in [-1, 1] units (max, mean).
#: The measured values are in docs/local.md; these bounds leave about 1.5x room. With 3 steps the cache
#: runs one full pass and two shallow ones, its largest share of shallow steps.
BOUNDS = {
    "bf16": {"frames_max": 14, "frames_mean": 0.14, "faces_max": 0.13, "faces_mean": 0.0055},
    "cache": {"frames_max": 80, "frames_mean": 0.86, "faces_max": 0.78, "faces_mean": 0.032},
    "bf16+cache": {"frames_max": 80, "frames_mean": 0.87, "faces_max": 0.78, "faces_mean": 0.032},
}


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    root = goldens_path("pipeline_tiny")
    unet = LatentSyncUNet.from_config(json.loads((root / "unet_config.json").read_text()))
    unet.load_state_dict(load_file(str(root / "unet.safetensors")), strict=True)
    vae = AutoencoderKL.from_config(json.loads((root / "vae_config.json").read_text()))
    vae.load_state_dict(load_file(str(root / "vae.safetensors")), strict=True)
    whisper = WhisperFeatures.from_state_dict(
        load_file(str(root / "whisper_encoder.safetensors")), json.loads((root / "whisper_dims.json").read_text())
    )
    return {
        "unet": unet.eval(), "vae": vae.eval(), "whisper": whisper,
        "mask": load_file(str(goldens_path("align", "mask_256.safetensors")))["mask_u8"].numpy(),
        "inputs": load_file(str(root / "inputs.safetensors")),
        "noise": {k: v.float() for k, v in load_file(str(root / "noise.safetensors")).items()},
        "expected": load_file(str(root / "expected.safetensors")),
        "meta": json.loads((root / "meta.json").read_text()), "samples": load_audio(root / "audio.wav"),
    }  # fmt: skip


def golden_run(golden: dict[str, Any], dtype: torch.dtype = torch.float32, **kw: Any) -> P.SyncResult:
    noise, settings = golden["noise"], golden["meta"]["settings"]
    unet = golden["unet"] if dtype == torch.float32 else copy.deepcopy(golden["unet"]).to(dtype)
    vae = golden["vae"]  # float32 on the CPU, as the route loads it (precision.vae_dtype)
    options = {"num_inference_steps": settings["num_inference_steps"], **kw}
    return P.sync_frames(
        golden["inputs"]["frames"].numpy(), golden["inputs"]["points"].numpy(), golden["samples"],
        unet=unet, vae=vae, whisper=golden["whisper"], mask=golden["mask"], resolution=settings["height"],
        guidance_scale=settings["guidance_scale"], init_noise=noise["init_noise"],
        posterior_noise=[(noise[f"chunk{k}.masked_noise"], noise[f"chunk{k}.ref_noise"]) for k in (0, 1)], **options,
    )  # fmt: skip


def differences(got: P.SyncResult, ref: P.SyncResult) -> dict[str, float]:
    frames = np.abs(got.frames.astype(np.int16) - ref.frames.astype(np.int16))
    faces = (got.synced_faces - ref.synced_faces).abs()
    return {"frames_max": float(frames.max()), "frames_mean": float(frames.mean()),
            "faces_max": float(faces.max()), "faces_mean": float(faces.mean())}  # fmt: skip


@pytest.fixture(scope="module")
def reference(golden: dict[str, Any]) -> P.SyncResult:
    """float32 without the cache: sync_frames' defaults, the run the parity tests hold to the goldens."""
    ref = golden_run(golden)
    expected = golden["expected"]["chunk0.latents"]
    assert (ref.latents[0] - expected).abs().max() <= 0.1  # the parity bar of test_pipeline (tier B)
    return ref


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "dtype", "deepcache"),
    [("bf16", torch.bfloat16, False), ("cache", torch.float32, True), ("bf16+cache", torch.bfloat16, True)],
)
def test_quality_cost_against_float32_on_the_goldens(
    golden: dict[str, Any], reference: P.SyncResult, name: str, dtype: torch.dtype, deepcache: bool
) -> None:
    got = golden_run(golden, dtype, deepcache=deepcache)
    diff = differences(got, reference)
    print(name, json.dumps(diff))
    bound = BOUNDS[name]
    assert all(diff[key] <= bound[key] for key in bound), (name, diff)
    assert diff["faces_max"] > 0  # the setting really changed the computation
    assert got.frames.shape == reference.frames.shape
    assert all(lat is not None and lat.dtype == torch.float32 for lat in got.latents)  # handed back as fp32


def test_sync_frames_keeps_its_exact_defaults() -> None:
    import inspect

    params = inspect.signature(P.sync_frames).parameters
    assert params["deepcache"].default is False and params["num_inference_steps"].default == 20


def test_default_dtype_follows_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_has_amx", lambda: True)  # flags no longer decide (tests/test_cpu_probe.py)
    assert precision.default_dtype("cpu") == "float32"  # the suite's injected probe decision
    assert precision.default_dtype("cuda:1") == "float16"
    assert precision.default_dtype("mps") == "float32"
    assert precision.resolve_dtype("float32", "cuda") == "float32"
    assert precision.resolve_dtype("auto", "cpu") == "float32"
    with pytest.raises(ValueError, match="float16 on the CPU"):
        precision.resolve_dtype("float16", "cpu")
    with pytest.raises(ValueError, match="one of"):
        precision.resolve_dtype("float8", "cpu")


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    assert "avx512_bf16" in precision._cpu_flags(info)
    assert precision._FAST_BF16_FLAG not in precision._cpu_flags(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2\n")
    assert not precision._cpu_flags(info) & precision._BF16_FLAGS
    assert precision._cpu_flags(tmp_path / "missing") == frozenset()
