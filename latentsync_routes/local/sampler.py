"""The per-chunk numerical core of the LatentSync pipeline: one chunk of aligned faces in, synced frames out.

:mod:`latentsync_routes.local.pipeline` drives it two ways (in memory and streaming); both call
:func:`sync_chunk` with a :class:`ChunkSampler`, so they compute the same numbers. The order of operations
follows the official ``LipsyncPipeline`` exactly, because every step changes the result:

1. pixel values ``(face / 255 - 0.5) / 0.5``; the masked copy multiplies by the float64 mouth mask;
2. VAE encode of the masked faces, then of the full faces, each a posterior *sample* ``mean + std * noise``,
   scaled by 0.18215 (the noise comes in that order: masked first);
3. the CFG batch is built after the VAE: ``[zero audio, audio]``, latents duplicated;
4. per DDIM step: ``unet(cat[latents, mask, masked, reference])``, guidance, ``scheduler.step`` (eta 0);
5. decode ``latents / 0.18215`` and take only the mouth region from it, the rest from the input face.

Nothing computed here stays on the GPU after a chunk: synced faces come back as float32 on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F

from .align import FaceAligner
from .diffusion import DDIM_ETA, VAE_SCALING_FACTOR, VAE_SHIFT_FACTOR, build_scheduler

__all__ = [
    "DEEPCACHE_INTERVAL",
    "LATENT_CHANNELS",
    "ChunkResult",
    "ChunkSampler",
    "deepcache_full_steps",
    "sync_chunk",
]

LATENT_CHANNELS = 4
DEEPCACHE_INTERVAL = 3  # full UNet passes every 3rd step, as ``--enable_deepcache`` does
NoisePair = tuple[torch.Tensor, torch.Tensor]


def deepcache_full_steps(num_inference_steps: int, interval: int = DEEPCACHE_INTERVAL) -> list[int]:
    """Step indices at which the step cache runs the whole UNet (every chunk restarts at step 0)."""
    if interval < 1:
        raise ValueError("the cache interval must be >= 1")
    return [i for i in range(num_inference_steps) if i % interval == 0]


# --------------------------------------------------------------------------------------------- random numbers


class Noise:
    """The pipeline's random numbers, in the official order: the initial frame, then per chunk the masked and
    the reference posterior noise. Injected values replace draws one for one.

    Draws are float32 on the CPU, from ``generator`` or (when it is None) torch's global generator, so a seed
    gives the same numbers on every device, and on CPU the same ones the official run takes after
    ``set_seed`` with that seed.
    """

    def __init__(
        self,
        init_noise: Any | None,
        posterior_noise: Sequence[tuple[Any, Any]] | None,
        generator: torch.Generator | None,
    ) -> None:
        self.init_noise = init_noise
        self.posterior_noise = posterior_noise
        self.generator = generator

    def _draw(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, dtype=torch.float32)

    @staticmethod
    def _given(value: Any, shape: tuple[int, ...], what: str) -> torch.Tensor:
        tensor = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{what} must have shape {shape}, got {tuple(tensor.shape)}")
        return tensor.to(torch.float32)

    def initial(self, shape: tuple[int, ...]) -> torch.Tensor:
        if self.init_noise is not None:
            return self._given(self.init_noise, shape, "init_noise")
        return self._draw(shape)

    def posterior(self, chunk: int, shape: tuple[int, ...]) -> NoisePair:
        if self.posterior_noise is not None:
            if chunk >= len(self.posterior_noise):
                raise ValueError(f"posterior_noise has {len(self.posterior_noise)} chunks; chunk {chunk} needs one")
            masked, ref = self.posterior_noise[chunk]
            masked_noise = self._given(masked, shape, f"posterior_noise[{chunk}][0]")
            return masked_noise, self._given(ref, shape, f"posterior_noise[{chunk}][1]")
        masked_noise = self._draw(shape)  # drawn first, as the official masked-image encode draws first
        return masked_noise, self._draw(shape)


# --------------------------------------------------------------------------------------------- step cache


class _StepCache:
    """DeepCache-style reuse of the deep UNet features between full steps (``cache_branch_id=0``).

    On a full step the whole UNet runs and the input of the last decoder layer (before its skip is
    concatenated) is kept. On the other steps only the shallow path runs: timestep embedding and ``conv_in``
    (whose output is that layer's skip), then the last decoder layer (ResNet, audio attention, motion module)
    on the kept features, and the output head. These are the modules DeepCache 0.1.1 recomputes; it also
    re-runs two motion modules on cached inputs, whose outputs equal the cached ones, so they are skipped.

    The features are caught with a forward pre-hook on the (shared) UNet during the full pass, so jobs that
    share a model set must not run full passes at the same moment: the route holds the set's lock per chunk.
    """

    def __init__(self, unet: torch.nn.Module, interval: int) -> None:
        self.unet = cast(Any, unet)
        self.interval = interval
        self.block = cast(Any, self.unet.up_blocks[-1])
        if self.block.upsamplers is not None:
            raise ValueError("the step cache expects a last decoder block without an upsampler")
        self.kept: torch.Tensor | None = None
        self.full_passes = 0

    def _keep(self, _module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        joined = args[0]
        self.kept = joined[:, : joined.shape[1] - self.unet.conv_in.out_channels]

    def __call__(self, sample: torch.Tensor, t: torch.Tensor, audio: torch.Tensor, step: int) -> torch.Tensor:
        if step % self.interval == 0 or self.kept is None:
            handle = self.block.resnets[-1].register_forward_pre_hook(self._keep)
            try:
                out: torch.Tensor = self.unet(sample, t, audio)
            finally:
                handle.remove()
            self.full_passes += 1
            return out
        return self.shallow(sample, t, audio)

    def shallow(self, sample: torch.Tensor, t: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        unet, block = self.unet, self.block
        assert self.kept is not None
        batch, frames = sample.shape[0], sample.shape[2]
        temb = unet.embed_timestep(t, batch, sample.device)
        rows = unet.audio_rows(audio, batch, frames)
        if unet.config.center_input_sample:
            sample = 2 * sample - 1.0
        video = block.resnets[-1](torch.cat([self.kept, unet.conv_in(sample)], dim=1), temb)
        if block.attentions is not None:
            video = block.attentions[-1](video, rows)
        if len(block.motion_modules):
            video = block.motion_modules[-1](video)
        out: torch.Tensor = unet.conv_out(F.silu(unet.conv_norm_out(video)))
        return out


# --------------------------------------------------------------------------------------------- the chunk core


class ChunkSampler:
    """Encode, denoise and decode one chunk of aligned faces; the numerical core shared by both paths.

    It runs in the UNet's device and dtype (fp16 on CUDA, fp32 elsewhere) and the VAE's. Everything it hands
    back (synced faces) is float32 on the CPU, so decoded frames never pile up on the GPU.
    """

    def __init__(
        self,
        *,
        unet: torch.nn.Module,
        vae: Any,
        mask: Any,
        resolution: int = 256,
        num_inference_steps: int = 20,
        guidance_scale: float = 1.5,
        deepcache: bool = False,
        deepcache_interval: int = DEEPCACHE_INTERVAL,
    ) -> None:
        if resolution <= 0 or resolution % 8:
            raise ValueError(f"resolution must be a positive multiple of 8, got {resolution}")
        mask_u8 = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask)
        if mask_u8.shape != (resolution, resolution):
            raise ValueError(f"mask must be ({resolution}, {resolution}) uint8, got {mask_u8.shape}")
        self.unet, self.vae = unet, vae
        first = next(unet.parameters())
        self.device, self.dtype = first.device, first.dtype
        vae_first = next(vae.parameters())
        self.vae_device, self.vae_dtype = vae_first.device, vae_first.dtype
        self.resolution, self.latent_size = resolution, resolution // 8
        self.guidance_scale = float(guidance_scale)
        self.do_cfg = self.guidance_scale > 1.0
        self.scheduler = build_scheduler(num_inference_steps)
        self.timesteps: list[int] = [int(t) for t in self.scheduler.timesteps]
        self.deepcache_interval = deepcache_interval if deepcache else 0
        # The official mask is float64 in [0, 1] (1 = keep); products with it are formed in float64 and then
        # cast, and the paste uses ``1 - mask`` cast to the working dtype, exactly as there.
        self._mask64 = torch.from_numpy(mask_u8.astype(np.float64) / 255.0)[None]
        self._mask_latent = F.interpolate(self._mask64[None], size=(self.latent_size, self.latent_size))[0]
        self._from_model = (1 - self._mask64).to(torch.float32)
        self.full_passes = 0  # whole-UNet forwards run so far (the step cache makes this smaller)

    @property
    def mask_latent(self) -> torch.Tensor:
        """The (1, h, w) mask the UNet sees: the mouth mask sampled nearest at latent size."""
        return self._mask_latent.to(torch.float32)

    def _posterior_sample(self, images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        dist = self.vae.encode(images.to(self.vae_device, self.vae_dtype)).latent_dist
        sample = dist.mean + dist.std * noise.to(self.vae_device, self.vae_dtype)
        return cast("torch.Tensor", (sample - VAE_SHIFT_FACTOR) * VAE_SCALING_FACTOR)

    @torch.inference_mode()
    def encode(
        self, faces: torch.Tensor, masked_noise: torch.Tensor, ref_noise: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pixel values (f, 3, R, R) in [-1, 1] and the scaled masked and reference latents (f, 4, h, w)."""
        pixels = (faces.to(torch.float32) / 255.0 - 0.5) / 0.5
        masked = (pixels.to(torch.float64) * self._mask64).to(torch.float32)
        masked_latents = self._posterior_sample(masked, masked_noise)
        ref_latents = self._posterior_sample(pixels, ref_noise)
        return pixels, masked_latents, ref_latents

    def _video(self, frames_first: torch.Tensor) -> torch.Tensor:
        """(f, c, h, w) -> (1, c, f, h, w) on the UNet's device and dtype."""
        return frames_first.transpose(0, 1).unsqueeze(0).to(self.device, self.dtype)

    @torch.inference_mode()
    def denoise(
        self,
        latents: torch.Tensor,
        masked_latents: torch.Tensor,
        ref_latents: torch.Tensor,
        audio: torch.Tensor,
        on_step: Callable[[int, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """DDIM from ``latents`` (1, 4, f, h, w) to the final latents, guided by ``audio`` (f, S, D)."""
        frames = latents.shape[2]
        mask = self._mask_latent.to(self.dtype).expand(frames, -1, -1, -1)
        cond = torch.cat([self._video(mask), self._video(masked_latents), self._video(ref_latents)], dim=1)
        audio = audio.to(self.device, self.dtype)
        if self.do_cfg:
            cond = torch.cat([cond] * 2)
            audio = torch.cat([torch.zeros_like(audio), audio])
        cache = _StepCache(self.unet, self.deepcache_interval) if self.deepcache_interval else None
        latents = latents.to(self.device, self.dtype)
        for step, t in enumerate(self.scheduler.timesteps):
            unet_in = torch.cat([torch.cat([latents] * 2) if self.do_cfg else latents, cond], dim=1)
            if cache is not None:
                eps = cache(unet_in, t, audio, step)
            else:
                eps = self.unet(unet_in, t, audio)
            if self.do_cfg:
                uncond, cond_eps = eps.chunk(2)
                eps = uncond + self.guidance_scale * (cond_eps - uncond)
            latents = self.scheduler.step(eps, t, latents, eta=DDIM_ETA, return_dict=False)[0]
            if on_step is not None:
                on_step(step, latents)
        self.full_passes += cache.full_passes if cache is not None else len(self.timesteps)
        return latents

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """Decode (1, 4, f, h, w) and keep only the mouth region: synced faces (f, 3, R, R), not clamped."""
        scaled = latents / VAE_SCALING_FACTOR + VAE_SHIFT_FACTOR
        flat = scaled.transpose(1, 2).reshape(-1, *scaled.shape[1:2], *scaled.shape[3:])
        decoded = self.vae.decode(flat.to(self.vae_device, self.vae_dtype)).sample.to("cpu", torch.float32)
        return cast("torch.Tensor", decoded * self._from_model + pixels.to(torch.float32) * (1 - self._from_model))


@dataclass
class ChunkResult:
    """One chunk's output: restored frames, final latents and synced faces (None when it had no face)."""

    frames: list[np.ndarray]
    latents: torch.Tensor | None
    synced: torch.Tensor | None


def _stand_ins(faces: Sequence[np.ndarray | None]) -> list[np.ndarray] | None:
    """Every frame's face, face-less frames borrowing the nearest face of the chunk (earlier on ties).

    A chunk keeps its 16 frames so that the audio and the network's temporal context stay in step; what the
    network makes for a borrowed face is thrown away (that frame passes through).
    """
    present = [i for i, face in enumerate(faces) if face is not None]
    if not present:
        return None
    filled = []
    for i, face in enumerate(faces):
        if face is None:
            face = faces[min(present, key=lambda j: (abs(j - i), j))]
        assert face is not None
        filled.append(face)
    return filled


def sync_chunk(
    sampler: ChunkSampler,
    aligner: FaceAligner,
    frames: Sequence[np.ndarray],
    faces: Sequence[np.ndarray | None],
    matrices: Sequence[np.ndarray | None],
    audio: torch.Tensor,
    latents: torch.Tensor,
    noise: NoisePair,
    *,
    exclusive: AbstractContextManager[Any] | None = None,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> ChunkResult:
    """Lip-sync one chunk of output frames: both :func:`sync_frames` and :func:`sync_video` run exactly this.

    ``faces`` (3, R, R) uint8 and ``matrices`` (2x3) are None for frames without a face; those frames are
    returned unchanged. ``exclusive`` (e.g. a lock) is held around the model work only.
    """
    filled = _stand_ins(faces)
    if filled is None:
        return ChunkResult(frames=list(frames), latents=None, synced=None)
    with exclusive if exclusive is not None else nullcontext():
        pixels, masked_latents, ref_latents = sampler.encode(torch.from_numpy(np.stack(filled)), *noise)
        final = sampler.denoise(latents, masked_latents, ref_latents, audio, on_step)
        synced = sampler.decode(final, pixels)
        final = final.to("cpu", torch.float32)
    out = [
        frame if matrix is None or face is None else aligner.restore(frame, synced[i], matrix)
        for i, (frame, face, matrix) in enumerate(zip(frames, faces, matrices, strict=True))
    ]
    return ChunkResult(frames=out, latents=final, synced=synced)
