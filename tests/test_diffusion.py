"""DDIM scheduler parity with the official schedule, and the VAE loader on a tiny local model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

from latentsync_routes.local.diffusion import (
    DDIM_ETA,
    DEFAULT_INFERENCE_STEPS,
    SCHEDULER_CONFIG,
    VAE_SCALING_FACTOR,
    VAE_SHIFT_FACTOR,
    build_scheduler,
    load_vae,
)
from tests.conftest import goldens_path


@pytest.fixture(scope="module")
def schedule() -> dict:
    return json.loads(goldens_path("schedule.json").read_text())


def test_config_equals_the_released_scheduler_config() -> None:
    released = json.loads(goldens_path("scheduler_config.json").read_text())
    for key, value in released.items():
        if key.startswith("_") or key == "skip_prk_steps":  # PNDM-only flag, meaningless to DDIM
            continue
        assert SCHEDULER_CONFIG[key] == value, key


def test_effective_config_matches_official(schedule: dict) -> None:
    effective = build_scheduler().config
    for key, value in schedule["scheduler_config_effective"].items():
        if key.startswith("_") or key == "skip_prk_steps":
            continue
        assert effective[key] == value, key


@pytest.mark.parametrize("steps", [20, 50])
def test_timesteps_and_alphas(schedule: dict, steps: int) -> None:
    expected = schedule[f"ddim_{steps}"]
    scheduler = build_scheduler(steps)
    timesteps = scheduler.timesteps.tolist()
    assert timesteps == expected["timesteps"]
    step = scheduler.config["num_train_timesteps"] // steps
    assert [t - step for t in timesteps] == expected["prev_timesteps"]
    alphas = scheduler.alphas_cumprod
    got_t = [alphas[t].item() for t in timesteps]
    got_prev = [
        alphas[p].item() if p >= 0 else scheduler.final_alpha_cumprod.item() for p in expected["prev_timesteps"]
    ]
    assert got_t == pytest.approx(expected["alphas_cumprod_t"], abs=1e-7)
    assert got_prev == pytest.approx(expected["alphas_cumprod_prev"], abs=1e-7)
    assert scheduler.final_alpha_cumprod.item() == pytest.approx(schedule["final_alpha_cumprod"], abs=1e-7)
    assert scheduler.init_noise_sigma == schedule["init_noise_sigma"]


def test_ddim_step_example(schedule: dict) -> None:
    example = schedule["ddim_step_example"]
    assert example["eta"] == DDIM_ETA
    scheduler = build_scheduler(example["num_inference_steps"])
    shape = tuple(example["shape"])
    sample = torch.tensor(example["sample"], dtype=torch.float32).reshape(shape)
    eps = torch.tensor(example["model_output"], dtype=torch.float32).reshape(shape)
    for case in example["steps"]:
        result = scheduler.step(eps, case["timestep"], sample, eta=DDIM_ETA)
        assert not isinstance(result, tuple)
        out = result.prev_sample
        want = torch.tensor(case["prev_sample"], dtype=torch.float32).reshape(shape)
        torch.testing.assert_close(out, want, rtol=0, atol=1e-5)


def test_scheduler_instances_are_independent() -> None:
    a = build_scheduler(DEFAULT_INFERENCE_STEPS)
    b = build_scheduler(3)
    assert a.timesteps.tolist()[:2] == [951, 901]
    assert b.timesteps.tolist() == [667, 334, 1]
    with pytest.raises(ValueError):
        build_scheduler(0)


# ---- VAE -------------------------------------------------------------------------------------------------


def _tiny_vae(directory: Path) -> AutoencoderKL:
    torch.manual_seed(0)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=32,
        scaling_factor=1.0,  # deliberately wrong: the loader must force LatentSync's value
    )
    vae.save_pretrained(str(directory), safe_serialization=True)
    return vae


def test_load_vae_from_local_directory(tmp_path: Path) -> None:
    original = _tiny_vae(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    vae = load_vae(tmp_path)
    assert vae.config["scaling_factor"] == VAE_SCALING_FACTOR == 0.18215
    assert vae.config["shift_factor"] == VAE_SHIFT_FACTOR == 0.0
    assert not vae.training
    assert not any(p.requires_grad for p in vae.parameters())
    for (name, a), (_, b) in zip(original.state_dict().items(), vae.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        latents = vae.encode(image).latent_dist.mean
        decoded = vae.decode(latents).sample
    assert latents.shape == (1, 4, 16, 16) and decoded.shape == image.shape


def test_load_vae_dtype(tmp_path: Path) -> None:
    _tiny_vae(tmp_path)
    vae = load_vae(tmp_path, dtype=torch.bfloat16)
    assert next(vae.parameters()).dtype == torch.bfloat16


def test_load_vae_never_reaches_for_the_hub(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_vae(tmp_path / "stabilityai" / "sd-vae-ft-mse")
