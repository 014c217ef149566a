"""The LatentSync 1.5/1.6 denoising UNet, its config, and checkpoint loading.

The network is an SD-1.5 UNet inflated to video: 13 input channels (noisy latents, mouth mask,
masked-image latents, reference latents), audio cross-attention on Whisper-tiny features in every
spatial transformer, and temporal motion modules in every encoder and decoder stage. 1.5 and 1.6 share
the architecture and the key list; only the training resolution differs (256 vs 512).

This module and its helpers (:mod:`.unet_blocks`, :mod:`.motion`) need torch and diffusers; nothing in
the top-level package imports them, so ``import latentsync_routes`` stays cheap for users of the hosted
backends. The config (:mod:`.unet_config`) is plain Python and can be read without them.

Typical use::

    unet = load_unet_checkpoint("checkpoints/latentsync_unet.pt")      # fp16 on CUDA, fp32 on CPU
    eps = unet(latent_input, timestep, audio_embeds)                    # (B, 4, F, H, W)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from latentsync_routes.local.unet_blocks import (
    DownBlock,
    FrameConv2d,
    FrameGroupNorm,
    MidBlock,
    StageSettings,
    UpBlock,
)
from latentsync_routes.local.unet_config import (
    CROSS_DOWN_BLOCK,
    CROSS_UP_BLOCK,
    MotionModuleConfig,
    UNetConfig,
    UNetConfigError,
    as_unet_config,
)

__all__ = [
    "LatentSyncUNet",
    "MotionModuleConfig",
    "UNetCheckpointError",
    "UNetConfig",
    "UNetConfigError",
    "iter_unet_checkpoint",
    "load_unet_checkpoint",
    "unet_dtype_for",
]

logger = logging.getLogger(__name__)


class UNetCheckpointError(RuntimeError):
    """A checkpoint does not match the network: missing, unexpected or mis-shaped entries."""


class LatentSyncUNet(nn.Module):
    """Predicts the noise for one chunk of frames: ``eps = unet(sample, timestep, audio)``.

    * ``sample``: (B, in_channels, F, H, W); F at most the motion modules' position table (24).
    * ``timestep``: int, float, 0-d or (B,) tensor.
    * ``encoder_hidden_states``: audio tokens as (B*F, S, D) with rows in (batch, frame) order, or
      (B, F, S, D); ``None`` skips the audio cross-attention.

    Returns (B, out_channels, F, H, W) in the model's dtype. ResNet GroupNorms pool statistics over the
    whole chunk, so a frame's output depends on the other frames of its chunk, as in the original.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        cfg = config or UNetConfig()
        self.config = cfg
        channels = cfg.block_out_channels
        temb_channels = channels[0] * 4

        # Built in this order (encoder, middle, decoder): a seeded fresh init draws its numbers in it.
        self.conv_in = FrameConv2d(cfg.in_channels, channels[0], kernel_size=3, padding=1)
        self.time_proj = Timesteps(channels[0], cfg.flip_sin_to_cos, cfg.freq_shift)
        self.time_embedding = TimestepEmbedding(channels[0], temb_channels)

        settings = _stage_settings(cfg, temb_channels)
        down_blocks = _down_blocks(cfg, settings)
        mid_block = MidBlock(
            settings,
            channels[-1],
            heads=cfg.attention_head_dim[-1],
            with_motion=cfg.use_motion_module and cfg.motion_module_mid_block,
            scale=cfg.mid_block_scale_factor,
        )
        up_blocks = _up_blocks(cfg, settings)

        # The official model registers up_blocks before mid_block; keeping that order makes our
        # state_dict() list keys exactly as the released checkpoint does.
        self.down_blocks = nn.ModuleList(down_blocks)
        self.up_blocks = nn.ModuleList(up_blocks)
        self.mid_block = mid_block
        self.num_upsamplers = len(channels) - 1

        norm_cls = FrameGroupNorm if cfg.use_inflated_groupnorm else nn.GroupNorm
        self.conv_norm_out = norm_cls(cfg.norm_num_groups, channels[0], eps=cfg.norm_eps)
        self.conv_out = FrameConv2d(channels[0], cfg.out_channels, kernel_size=3, padding=1)

        # Same starting point as the original training code (input/output convs at zero, so a fresh
        # model predicts exactly 0); inference always loads a checkpoint over it.
        for conv in (self.conv_in, self.conv_out):
            nn.init.zeros_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)

    @classmethod
    def from_config(cls, config: UNetConfig | Mapping[str, Any] | str | Path | None = None) -> LatentSyncUNet:
        """Build with fresh (untrained) weights from a :class:`UNetConfig`, the official ``model:``
        mapping, a whole ``unet_config_v1.x.json`` mapping, or a path to such a JSON file.

        Build under ``with torch.device("meta"):`` to get the structure without allocating memory.
        """
        return cls(as_unet_config(config))

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.conv_in.weight.device

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int | float,
        encoder_hidden_states: torch.Tensor | None = None,
    ) -> torch.Tensor:
        cfg = self.config
        if sample.ndim != 5 or sample.shape[1] != cfg.in_channels:
            raise ValueError(f"sample must be (B, {cfg.in_channels}, F, H, W), got {tuple(sample.shape)}")
        batch, _, frames, height, width = sample.shape
        audio = self.audio_rows(encoder_hidden_states, batch, frames)
        temb = self.embed_timestep(timestep, batch, sample.device)

        if cfg.center_input_sample:
            sample = 2 * sample - 1.0
        video = self.conv_in(sample)

        skips = [video]
        for down in self.down_blocks:
            video, block_skips = down(video, temb, audio)
            skips.extend(block_skips)

        video = self.mid_block(video, temb, audio)

        stride = 2**self.num_upsamplers
        odd_size = height % stride != 0 or width % stride != 0
        for up in cast("list[UpBlock]", list(self.up_blocks)):
            n = len(up.resnets)
            block_skips, skips = skips[-n:], skips[:-n]
            # Off-grid latent sizes: upsample to the next skip's size instead of x2 so the concat fits.
            size = tuple(skips[-1].shape[-2:]) if odd_size and up.upsamplers is not None else None
            video = up(video, block_skips, temb, audio, size)

        out: torch.Tensor = self.conv_out(F.silu(self.conv_norm_out(video)))
        return out

    def embed_timestep(self, timestep: torch.Tensor | int | float, batch: int, device: torch.device) -> torch.Tensor:
        """The (batch, 4 * width) timestep embedding every ResNet adds.

        Public because the step cache of :mod:`.sampler` runs the shallow path of the network by hand and must
        embed the timestep exactly as :meth:`forward` does.
        """
        if isinstance(timestep, torch.Tensor):
            steps = timestep.to(device)
        else:
            is_mps = device.type == "mps"
            if isinstance(timestep, float):
                step_dtype = torch.float32 if is_mps else torch.float64
            else:
                step_dtype = torch.int32 if is_mps else torch.int64
            steps = torch.tensor([timestep], dtype=step_dtype, device=device)
        if steps.ndim == 0:
            steps = steps[None]
        steps = steps.expand(batch)
        # The sinusoid is computed in float32 whatever the model dtype; cast before the MLP.
        embedded: torch.Tensor = self.time_embedding(self.time_proj(steps).to(dtype=self.dtype))
        return embedded

    def audio_rows(self, audio: torch.Tensor | None, batch: int, frames: int) -> torch.Tensor | None:
        """Audio tokens as the cross-attention takes them: (B*F, S, D) in the model's dtype, shape-checked.

        Accepts (B*F, S, D) or (B, F, S, D); public for the same reason as :meth:`embed_timestep`.
        """
        if audio is None:
            return None
        if audio.ndim == 4:
            if tuple(audio.shape[:2]) != (batch, frames):
                raise ValueError(
                    f"4-D encoder_hidden_states must be (B={batch}, F={frames}, S, D), got {tuple(audio.shape)}"
                )
            audio = audio.reshape(batch * frames, *audio.shape[2:])
        if audio.ndim != 3 or audio.shape[0] != batch * frames:
            raise ValueError(
                f"encoder_hidden_states must be (B*F={batch * frames}, S, D) or (B, F, S, D), got {tuple(audio.shape)}"
            )
        if self.config.add_audio_layer and audio.shape[-1] != self.config.cross_attention_dim:
            raise ValueError(
                f"audio features have width {audio.shape[-1]}, the UNet expects {self.config.cross_attention_dim}"
            )
        return audio.to(dtype=self.dtype)


def _stage_settings(cfg: UNetConfig, temb_channels: int) -> StageSettings:
    """What every encoder, middle and decoder stage shares (norms, timestep width, audio and motion layers)."""
    return StageSettings(
        temb_channels=temb_channels,
        norm_groups=cfg.norm_num_groups,
        norm_eps=cfg.norm_eps,
        per_frame_resnet_norm=cfg.use_inflated_groupnorm,
        cross_attention_dim=cfg.cross_attention_dim if cfg.add_audio_layer else None,
        motion_kwargs=asdict(cfg.motion_module),
    )


def _motion_at(cfg: UNetConfig, level_scale: int, *, encoder: bool) -> bool:
    """Whether the stage at this downscale factor has a motion module (the config may keep them to the decoder)."""
    if not cfg.use_motion_module or level_scale not in cfg.motion_module_resolutions:
        return False
    return not (encoder and cfg.motion_module_decoder_only)


def _down_blocks(cfg: UNetConfig, settings: StageSettings) -> list[DownBlock]:
    """The encoder stages, widest resolution first; every stage but the last halves the size."""
    channels = cfg.block_out_channels
    levels = len(channels)
    blocks = []
    out_ch = channels[0]
    for i, kind in enumerate(cfg.down_block_types):
        in_ch, out_ch = out_ch, channels[i]
        blocks.append(
            DownBlock(
                settings,
                in_ch,
                out_ch,
                n_layers=cfg.layers_per_block,
                heads=cfg.attention_head_dim[i] if kind == CROSS_DOWN_BLOCK else None,
                with_motion=_motion_at(cfg, 2**i, encoder=True),
                downsample_padding=cfg.downsample_padding if i < levels - 1 else None,
            )
        )
    return blocks


def _up_blocks(cfg: UNetConfig, settings: StageSettings) -> list[UpBlock]:
    """The decoder stages, mirroring the encoder, with one more layer each to take every skip the encoder left."""
    channels = cfg.block_out_channels
    levels = len(channels)
    rev_channels = channels[::-1]
    rev_heads = cfg.attention_head_dim[::-1]
    blocks = []
    prev_ch = rev_channels[0]
    for i, kind in enumerate(cfg.up_block_types):
        out_ch = rev_channels[i]
        blocks.append(
            UpBlock(
                settings,
                rev_channels[min(i + 1, levels - 1)],
                prev_ch,
                out_ch,
                n_layers=cfg.layers_per_block + 1,
                heads=rev_heads[i] if kind == CROSS_UP_BLOCK else None,
                with_motion=_motion_at(cfg, 2 ** (levels - 1 - i), encoder=False),
                upsample=i < levels - 1,
            )
        )
        prev_ch = out_ch
    return blocks


def unet_dtype_for(device: torch.device | str) -> torch.dtype:
    """fp16 on CUDA (the released pipeline's precision on current GPUs), fp32 elsewhere: CPU fp16
    kernels are slow and MPS has known fp16 artefacts."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


def iter_unet_checkpoint(path: str | Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield a checkpoint's (key, tensor) pairs without reading the whole file into memory.

    ``.safetensors`` files are read one tensor at a time; ``.pt``/``.pth``/``.bin`` files are
    memory-mapped. A ``.pt`` may hold ``{"state_dict": ..., "global_step": ...}`` (the official
    layout) or a bare state dict.
    """
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as handle:
            for key in handle.keys():
                yield key, handle.get_tensor(key)
        return

    try:
        payload = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise
        # Files written with the pre-1.6 torch serialisation cannot be mapped; read them whole.
        logger.warning("%s cannot be memory-mapped (%s); loading it fully into RAM", path, exc)
        payload = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(payload, Mapping) and isinstance(payload.get("state_dict"), Mapping):
        payload = payload["state_dict"]
    if not isinstance(payload, Mapping) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise UNetCheckpointError(f"{path} holds neither a 'state_dict' entry nor a bare state dict")
    yield from payload.items()


def load_unet_checkpoint(
    path: str | Path,
    config: UNetConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> LatentSyncUNet:
    """Load a UNet checkpoint, strictly, for inference.

    The model is built on the meta device and the checkpoint's tensors are assigned into it, so host
    memory peaks near one copy of the weights instead of two (fresh init + loaded copy). ``device``
    defaults to CUDA when available; ``dtype`` defaults to :func:`unet_dtype_for` the device. Every key
    of the network must be present with its exact shape and nothing else may be; otherwise
    :class:`UNetCheckpointError` lists the differences (the official loader's ``strict=False`` would
    silently run a half-initialised model).

    When the file is an fp32 ``.pt`` and the target is fp32 on CPU, the weights stay backed by the
    file's private (copy-on-write) memory map: loading is near-instant and pages are read on first use.
    Otherwise each tensor is converted as it is read, so only the converted copy is held in anonymous
    memory (the mapped file's pages are clean page cache the kernel can drop).

    The result is in eval mode with gradients off.
    """
    target = (
        torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    weight_dtype = dtype or unet_dtype_for(target)
    with torch.device("meta"):
        model = LatentSyncUNet(as_unet_config(config))
    expected = {key: tuple(t.shape) for key, t in model.state_dict().items()}

    state: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    misshaped: dict[str, str] = {}
    for key, tensor in iter_unet_checkpoint(path):
        shape = expected.get(key)
        if shape is None:
            unexpected.append(key)
        elif tuple(tensor.shape) != shape:
            misshaped[key] = f"{key}: checkpoint {tuple(tensor.shape)}, model {shape}"
        else:
            to_dtype = weight_dtype if tensor.is_floating_point() else tensor.dtype
            state[key] = tensor.to(device=target, dtype=to_dtype)
    missing = [key for key in expected if key not in state and key not in misshaped]
    if missing or unexpected or misshaped:
        raise UNetCheckpointError(_mismatch_report(path, missing, unexpected, list(misshaped.values())))

    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def _mismatch_report(path: str | Path, missing: list[str], unexpected: list[str], misshaped: list[str]) -> str:
    def part(title: str, items: list[str]) -> str:
        shown = ", ".join(items[:8]) + (f", ... ({len(items) - 8} more)" if len(items) > 8 else "")
        return f"{len(items)} {title} [{shown}]"

    parts = [
        part(t, items)
        for t, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
        if items
    ]
    return (
        f"{path} does not match the LatentSync UNet ({'; '.join(parts)}). "
        "Check that it is a LatentSync 1.5/1.6 latentsync_unet.pt and that the config matches it."
    )
