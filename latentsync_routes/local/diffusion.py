"""The DDIM scheduler and the Stable Diffusion VAE, configured as LatentSync 1.5/1.6 use them.

Both are stock diffusers components; what matters is their configuration. The scheduler values are facts of
the released model (its ``configs/scheduler_config.json``), kept here as data so that building the scheduler
needs no file and no network. The VAE is ``stabilityai/sd-vae-ft-mse``; its weights come from the local
checkpoint cache (see :mod:`latentsync_routes.local.checkpoints`) and are never fetched from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, cast

import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL
from diffusers.schedulers.scheduling_ddim import DDIMScheduler

__all__ = [
    "DDIM_ETA",
    "DEFAULT_INFERENCE_STEPS",
    "SCHEDULER_CONFIG",
    "VAE_SCALING_FACTOR",
    "VAE_SHIFT_FACTOR",
    "build_scheduler",
    "load_vae",
]

# LatentSync's scheduler config. ``prediction_type`` ("epsilon") and ``timestep_spacing`` ("leading") are not
# in the released file; they are diffusers defaults, written out here so a change of default cannot move the
# timesteps (20 steps must give 951, 901, ..., 51, 1).
SCHEDULER_CONFIG: Mapping[str, Any] = MappingProxyType(
    {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "trained_betas": None,
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "prediction_type": "epsilon",
        "timestep_spacing": "leading",
    }
)

DEFAULT_INFERENCE_STEPS = 20
DDIM_ETA = 0.0  # deterministic DDIM: no noise is added between steps

# LatentSync sets these on the VAE config explicitly rather than trusting the checkpoint's config.json.
VAE_SCALING_FACTOR = 0.18215
VAE_SHIFT_FACTOR = 0.0


def build_scheduler(num_inference_steps: int | None = None) -> DDIMScheduler:
    """A fresh ``DDIMScheduler`` with LatentSync's config, optionally with its timesteps already set.

    A new instance per run matters: the scheduler keeps the current timestep table as state.
    """
    scheduler = DDIMScheduler.from_config(dict(SCHEDULER_CONFIG))
    if num_inference_steps is not None:
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        scheduler.set_timesteps(num_inference_steps)
    return cast("DDIMScheduler", scheduler)


def load_vae(
    directory: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> AutoencoderKL:
    """Load ``AutoencoderKL`` from a local directory holding ``config.json`` and the weights.

    ``local_files_only`` guarantees no network access even if ``directory`` were mistaken for a hub id.
    The scaling factor and shift are forced to LatentSync's values because the pipeline reads them from the
    config when it scales latents in and out of the UNet.
    """
    path = Path(directory)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"no VAE config.json in {path}")
    vae = AutoencoderKL.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True)
    vae.register_to_config(scaling_factor=VAE_SCALING_FACTOR, shift_factor=VAE_SHIFT_FACTOR)
    vae.requires_grad_(False)
    vae.eval()
    if device is not None:
        vae.to(device)
    return cast("AutoencoderKL", vae)
