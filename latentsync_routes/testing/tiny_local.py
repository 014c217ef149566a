"""Tiny random-weight LatentSync models and a speech-like voice, to run the local route offline in tests.

Why this exists: the local route's real checkpoints are several GB and a CPU run of them takes minutes per
second of video, so neither belongs in a test suite. The builders here make models with the official
architecture (the UNet is LatentSync's own, only narrower), few enough weights to build in a moment and run a
short clip on a CPU in tens of seconds (docs/local.md has the measured times), and seeded random weights, so
every stage (decode, detect, align, Whisper features, denoise, VAE decode, restore, encode) runs for real and
repeatably. :func:`register_tiny_models` puts such a set in the local route's model cache, so
``LipSyncClient(route="local")`` uses it instead of reading checkpoints: an application's own tests can drive
the local route end to end without a download. The output is not lip-sync (the weights are random); it is a
real video of the right length and format.

The SDK's own pipeline tests and the streaming-memory benchmark use the same builders.

Example (in a test; run on the CPU, where the models are registered)::

    from latentsync_routes import LipSyncClient
    from latentsync_routes.testing.tiny_local import register_tiny_models, write_speechy_wav

    monkeypatch.setenv("LATENTSYNC_ROUTES_LOCAL_DEVICE", "cpu")
    register_tiny_models()
    voice = write_speechy_wav(tmp_path / "voice.wav", seconds=1.0)
    result = LipSyncClient(route="local").run("face.mp4", voice, tmp_path / "out.mp4", inference_steps=2)

The video needs a real face the detector can find (the ``faces`` extra, MediaPipe). This module needs the
``local`` extra (torch, diffusers, numpy), which is why ``import latentsync_routes.testing`` does not import
it: import it by name.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import TypeVar, cast

import av
import numpy as np
import torch
from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

from ..local import runtime
from ..local.audio import WhisperDims, WhisperFeatures
from ..local.unet import LatentSyncUNet

__all__ = [
    "TINY_MODEL_VERSION",
    "randomise_weights",
    "register_tiny_models",
    "tiny_mask",
    "tiny_models",
    "tiny_unet",
    "tiny_vae",
    "tiny_whisper",
    "write_speechy_wav",
]

#: What job records show as the model version of a tiny set (a record must never pass for a real run).
TINY_MODEL_VERSION = "tiny random-weight test models (no checkpoint)"

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def randomise_weights(module: ModuleT, seed: int) -> ModuleT:
    """Norm weights 1 + 0.05 N, other weights 0.05 N, biases 0.02 N; returns ``module`` in eval mode.

    Why not the fresh initialisation: a new LatentSync UNet zeroes some layers (e.g. its motion modules'
    outputs), so parts of the network would do no work. This is the recipe the official goldens' tiny models
    were made with; the draws come from a generator of their own, so the weights depend on ``seed`` alone.
    """
    gen = torch.Generator().manual_seed(seed)
    norms = (torch.nn.GroupNorm, torch.nn.LayerNorm)
    with torch.no_grad():
        for sub in module.modules():
            for name, param in sub.named_parameters(recurse=False):
                noise = torch.randn(param.shape, generator=gen)
                if isinstance(sub, norms) and name == "weight":
                    param.copy_(1 + 0.05 * noise)
                else:
                    param.copy_((0.05 if param.ndim >= 2 else 0.02) * noise)
    return module.eval()


def tiny_unet(seed: int = 11) -> LatentSyncUNet:
    """The LatentSync UNet with narrow blocks (32/64/64/64 channels) and 64-wide audio attention.

    The same shape as the official goldens' ``pipeline_tiny`` model: the released UNet's block and
    motion-module layout, only narrower, so the pipeline runs the real layer sequence. ``tiny_whisper``
    produces audio features of the matching width.
    """
    unet = LatentSyncUNet.from_config({"block_out_channels": [32, 64, 64, 64], "cross_attention_dim": 64})
    return randomise_weights(unet, seed)


def tiny_vae(seed: int = 12) -> AutoencoderKL:
    """A four-level (8x downsampling, 4 latent channels) VAE like SD's, but with 8-16 channels per level.

    Draws from the global torch generator, seeded with ``seed``.
    """
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=64,
    )
    with torch.no_grad():
        vae.quant_conv.bias[4:] -= 4.0  # small posterior std, as in a trained VAE
    return cast("AutoencoderKL", vae.eval())


def tiny_whisper(seed: int = 13) -> WhisperFeatures:
    """A Whisper encoder with the real audio context (1500 positions, 80 mels) but 64-wide, 4 layers deep.

    Draws from the global torch generator, seeded with ``seed``.
    """
    torch.manual_seed(seed)
    dims = WhisperDims(n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=4)
    return WhisperFeatures(dims).eval()


def tiny_mask(resolution: int) -> np.ndarray:
    """A mouth mask like the official one: keep (255) everywhere but a lower-middle region (0).

    Its side sets the face crop resolution the pipeline works at (256 for LatentSync 1.5).
    """
    mask = np.full((resolution, resolution), 255, np.uint8)
    r = resolution
    mask[int(r * 0.58) : int(r * 0.94), int(r * 0.16) : int(r * 0.84)] = 0
    return mask


def tiny_models(
    version: str = "1.5",
    *,
    model_version: str = TINY_MODEL_VERSION,
    weights_licence: str | None = None,
    dtype: str | None = None,
) -> runtime.LoadedModels:
    """A tiny model set standing in for LatentSync ``version`` on the CPU.

    The mask has that version's resolution (256 px for 1.5, 512 px for 1.6), because the route crops faces
    at the resolution of the models it finds. The UNet is in ``dtype`` (default: the CPU's, see
    :mod:`latentsync_routes.local.precision`; the VAE as the route would load it), because the route looks
    models up by dtype. ``model_version``
    and ``weights_licence`` are what job records will show.
    """
    from ..local.precision import vae_dtype

    dtype_name = runtime.dtype_name_for("cpu", dtype)
    unet_type, vae_type = getattr(torch, dtype_name), getattr(torch, vae_dtype("cpu", dtype_name))
    return runtime.LoadedModels(
        unet=tiny_unet().to(unet_type), vae=tiny_vae().to(vae_type), whisper=tiny_whisper(),
        mask=tiny_mask(runtime.RESOLUTION[version]), version=version, device="cpu", dtype=dtype_name,
        model_version=model_version, weights_licence=weights_licence,
    )  # fmt: skip


def register_tiny_models(
    version: str = "1.5",
    *,
    model_version: str = TINY_MODEL_VERSION,
    weights_licence: str | None = None,
    cache: runtime.ModelCache | None = None,
    dtype: str | None = None,
) -> runtime.LoadedModels:
    """Build :func:`tiny_models` and put them in the local route's model cache (the process-wide one unless
    ``cache`` is given); returns them, e.g. to hook the UNet.

    Local jobs for that version on the CPU then use them without reading checkpoints. They are registered
    for the CPU only: run the route with ``local_device="cpu"`` (``LATENTSYNC_ROUTES_LOCAL_DEVICE=cpu``), or
    a machine with a GPU will look for the real checkpoints. The process-wide cache keeps them for the life
    of the process; a test that must not leak them into others can swap in a fresh
    :class:`~latentsync_routes.local.runtime.ModelCache` as ``runtime.CACHE`` first.
    """
    models = tiny_models(version, model_version=model_version, weights_licence=weights_licence, dtype=dtype)
    runtime.register_models(models, cache)
    return models


def write_speechy_wav(path: str | Path, seconds: float, seed: int = 0) -> Path:
    """16 kHz mono int16 wav of a gliding harmonic tone with a syllable envelope and a little noise.

    Any audio would drive the pipeline; this one has a voice's pitch range and a 4 Hz syllable rhythm, so the
    Whisper features vary over time as they do with speech, and ``seed`` makes the noise repeatable.
    """
    rate = 16000
    t = np.arange(int(seconds * rate)) / rate
    f0 = 110 + 40 * np.sin(2 * np.pi * 0.7 * t)
    voice = sum(np.sin(2 * np.pi * np.cumsum(f0 * h) / rate) / h for h in range(1, 6))
    noise = np.random.default_rng(seed).normal(0, 0.02, t.size)
    samples = ((0.25 * voice * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) + noise) * 32767 * 0.5).astype(np.int16)
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        stream.layout = "mono"
        for start in range(0, samples.size, 4096):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + 4096], format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)
