"""Building blocks of the LatentSync UNet: frame-wise convolutions, ResNets, spatial transformers and
the down/mid/up stages that compose them.

Video tensors travel between blocks as (batch, channels, frames, height, width). Image operations
(convolutions, the transformer's GroupNorm) fold the frames into the batch; the ResNet GroupNorms do
not, because LatentSync's ResNets normalise with statistics pooled over every frame of the chunk. That
difference is what makes a short last chunk come out differently from a per-frame model, and the
goldens check it.

Attribute names (``resnets``, ``attentions``, ``motion_modules``, ``downsamplers``...) and their
registration order are fixed by the official checkpoint's keys and state-dict order.

Imported only through :mod:`latentsync_routes.local.unet`: this module needs torch and diffusers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn

from latentsync_routes.local.motion import MotionModule

__all__ = [
    "DownBlock",
    "Downsample",
    "FrameConv2d",
    "FrameGroupNorm",
    "MidBlock",
    "ResnetBlock",
    "SpatialTransformer",
    "UpBlock",
    "Upsample",
    "fold_frames",
    "unfold_frames",
]


def fold_frames(video: torch.Tensor) -> torch.Tensor:
    """(b, c, f, h, w) -> (b*f, c, h, w), frame-major within each batch item, as the audio rows are."""
    b, c, f, h, w = video.shape
    return video.transpose(1, 2).reshape(b * f, c, h, w)


def unfold_frames(images: torch.Tensor, frames: int) -> torch.Tensor:
    """Inverse of :func:`fold_frames`."""
    bf, c, h, w = images.shape
    return images.reshape(bf // frames, frames, c, h, w).transpose(1, 2)


class FrameConv2d(nn.Conv2d):
    """A 2-D convolution applied to every frame; the weight stays 4-D as in the checkpoint."""

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return unfold_frames(super().forward(fold_frames(video)), video.shape[2])


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm with statistics per frame. Only used when a config sets ``use_inflated_groupnorm``;
    LatentSync 1.5/1.6 pool over frames with a plain ``nn.GroupNorm`` on the 5-D tensor instead."""

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return unfold_frames(super().forward(fold_frames(video)), video.shape[2])


def _resnet_norm(groups: int, channels: int, eps: float, per_frame: bool) -> nn.GroupNorm:
    if per_frame:
        return FrameGroupNorm(groups, channels, eps=eps, affine=True)
    return nn.GroupNorm(groups, channels, eps=eps, affine=True)


class ResnetBlock(nn.Module):
    """Pre-activation ResNet block conditioned on the timestep embedding (added after the first conv)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        temb_channels: int,
        *,
        groups: int,
        eps: float,
        per_frame_norm: bool,
        output_scale_factor: float = 1.0,
    ) -> None:
        super().__init__()
        self.output_scale_factor = output_scale_factor
        self.norm1 = _resnet_norm(groups, in_channels, eps, per_frame_norm)
        self.conv1 = FrameConv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = _resnet_norm(groups, out_channels, eps, per_frame_norm)
        self.conv2 = FrameConv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.conv_shortcut = (
            FrameConv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None
        )

    def forward(self, video: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        hidden = self.conv1(F.silu(self.norm1(video)))
        hidden = hidden + self.time_emb_proj(F.silu(temb))[:, :, None, None, None]
        hidden = self.conv2(F.silu(self.norm2(hidden)))
        shortcut = self.conv_shortcut(video) if self.conv_shortcut is not None else video
        out = shortcut + hidden
        if self.output_scale_factor != 1.0:
            out = out / self.output_scale_factor
        return cast("torch.Tensor", out)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution per frame; the frame count is never reduced."""

    def __init__(self, channels: int, padding: int) -> None:
        super().__init__()
        self.conv = FrameConv2d(channels, channels, kernel_size=3, stride=2, padding=padding)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(video)
        return out


class Upsample(nn.Module):
    """Nearest-neighbour x2 on height and width (frames untouched), then a 3x3 convolution per frame.

    ``size`` overrides the x2 when the latent side is not a multiple of the UNet's total stride, so the
    result lines up with the skip connection it is concatenated with.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = FrameConv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, video: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        if size is None:
            video = F.interpolate(video, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        else:
            video = F.interpolate(video, size=(video.shape[2], *size), mode="nearest")
        out: torch.Tensor = self.conv(video)
        return out


class TransformerLayer(nn.Module):
    """Spatial self-attention, audio cross-attention (``attn2``), GEGLU feed-forward; pre-norm, residual.

    Without ``cross_attention_dim`` there is no ``norm2``/``attn2`` at all, as in configs that switch
    the audio layer off; with it, ``attn2`` is skipped when no audio is given.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, cross_attention_dim: int | None) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(query_dim=dim, heads=heads, dim_head=head_dim, bias=False)
        self.norm2: nn.LayerNorm | None = None
        self.attn2: Attention | None = None
        if cross_attention_dim is not None:
            self.norm2 = nn.LayerNorm(dim)
            self.attn2 = Attention(
                query_dim=dim,
                cross_attention_dim=cross_attention_dim,
                heads=heads,
                dim_head=head_dim,
                bias=False,
            )
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        tokens = self.attn1(self.norm1(tokens)) + tokens
        if self.attn2 is not None and self.norm2 is not None and audio is not None:
            tokens = self.attn2(self.norm2(tokens), encoder_hidden_states=audio) + tokens
        out: torch.Tensor = self.ff(self.norm3(tokens)) + tokens
        return out


class SpatialTransformer(nn.Module):
    """Per-frame transformer over the h*w tokens of each frame, with 1x1-conv projections in and out.

    Audio rows are matched to frames in (batch, frame) order: row ``b*F + f`` conditions frame f of
    batch item b.
    """

    def __init__(self, channels: int, heads: int, *, norm_groups: int, cross_attention_dim: int | None) -> None:
        super().__init__()
        head_dim = channels // heads
        inner = heads * head_dim
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Conv2d(channels, inner, kernel_size=1)
        self.transformer_blocks = nn.ModuleList([TransformerLayer(inner, heads, head_dim, cross_attention_dim)])
        self.proj_out = nn.Conv2d(inner, channels, kernel_size=1)

    def forward(self, video: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        frames = video.shape[2]
        images = fold_frames(video)
        bf, _, h, w = images.shape
        hidden = self.proj_in(self.norm(images))
        inner = hidden.shape[1]
        tokens = hidden.permute(0, 2, 3, 1).reshape(bf, h * w, inner)
        for layer in self.transformer_blocks:
            tokens = layer(tokens, audio)
        hidden = tokens.reshape(bf, h, w, inner).permute(0, 3, 1, 2).contiguous()
        return unfold_frames(self.proj_out(hidden) + images, frames)


@dataclass(frozen=True)
class StageSettings:
    """Settings shared by every block of the UNet, gathered once from the config."""

    temb_channels: int
    norm_groups: int
    norm_eps: float
    per_frame_resnet_norm: bool
    cross_attention_dim: int | None
    motion_kwargs: Mapping[str, Any]

    def resnet(self, in_channels: int, out_channels: int, scale: float = 1.0) -> ResnetBlock:
        return ResnetBlock(
            in_channels,
            out_channels,
            self.temb_channels,
            groups=self.norm_groups,
            eps=self.norm_eps,
            per_frame_norm=self.per_frame_resnet_norm,
            output_scale_factor=scale,
        )

    def transformer(self, channels: int, heads: int) -> SpatialTransformer:
        return SpatialTransformer(
            channels, heads, norm_groups=self.norm_groups, cross_attention_dim=self.cross_attention_dim
        )

    def motion(self, channels: int) -> MotionModule:
        return MotionModule(channels, **self.motion_kwargs)


class DownBlock(nn.Module):
    """Encoder stage: (resnet -> [spatial transformer] -> [motion module]) x n, then an optional
    stride-2 downsample. Returns every intermediate output as a skip connection for the decoder."""

    def __init__(
        self,
        settings: StageSettings,
        in_channels: int,
        out_channels: int,
        *,
        n_layers: int,
        heads: int | None,
        with_motion: bool,
        downsample_padding: int | None,
    ) -> None:
        super().__init__()
        self.attentions = (
            nn.ModuleList(settings.transformer(out_channels, heads) for _ in range(n_layers))
            if heads is not None
            else None
        )
        self.resnets = nn.ModuleList(
            settings.resnet(in_channels if i == 0 else out_channels, out_channels) for i in range(n_layers)
        )
        self.motion_modules = nn.ModuleList(
            settings.motion(out_channels) for _ in range(n_layers if with_motion else 0)
        )
        self.downsamplers = (
            nn.ModuleList([Downsample(out_channels, downsample_padding)]) if downsample_padding is not None else None
        )

    def forward(
        self, video: torch.Tensor, temb: torch.Tensor, audio: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips: list[torch.Tensor] = []
        for i, resnet in enumerate(self.resnets):
            video = resnet(video, temb)
            if self.attentions is not None:
                video = self.attentions[i](video, audio)
            if len(self.motion_modules):
                video = self.motion_modules[i](video)
            skips.append(video)
        if self.downsamplers is not None:
            video = self.downsamplers[0](video)
            skips.append(video)
        return video, skips


class MidBlock(nn.Module):
    """Bottleneck: resnet -> spatial transformer -> [motion module] -> resnet. LatentSync has no motion
    module here; ``motion_module_mid_block`` configs get one."""

    def __init__(self, settings: StageSettings, channels: int, *, heads: int, with_motion: bool, scale: float) -> None:
        super().__init__()
        self.attentions = nn.ModuleList([settings.transformer(channels, heads)])
        self.resnets = nn.ModuleList(settings.resnet(channels, channels, scale) for _ in range(2))
        self.motion_modules = nn.ModuleList(settings.motion(channels) for _ in range(1 if with_motion else 0))

    def forward(self, video: torch.Tensor, temb: torch.Tensor, audio: torch.Tensor | None) -> torch.Tensor:
        video = self.resnets[0](video, temb)
        for i, attention in enumerate(self.attentions):
            video = attention(video, audio)
            if len(self.motion_modules):
                video = self.motion_modules[i](video)
            video = self.resnets[i + 1](video, temb)
        return video


class UpBlock(nn.Module):
    """Decoder stage: (concat skip -> resnet -> [spatial transformer] -> [motion module]) x n, then an
    optional x2 upsample. Skips are consumed last-in first-out."""

    def __init__(
        self,
        settings: StageSettings,
        in_channels: int,
        prev_channels: int,
        out_channels: int,
        *,
        n_layers: int,
        heads: int | None,
        with_motion: bool,
        upsample: bool,
    ) -> None:
        super().__init__()
        self.attentions = (
            nn.ModuleList(settings.transformer(out_channels, heads) for _ in range(n_layers))
            if heads is not None
            else None
        )
        resnets = []
        for i in range(n_layers):
            skip_channels = in_channels if i == n_layers - 1 else out_channels
            resnet_in = prev_channels if i == 0 else out_channels
            resnets.append(settings.resnet(resnet_in + skip_channels, out_channels))
        self.resnets = nn.ModuleList(resnets)
        self.motion_modules = nn.ModuleList(
            settings.motion(out_channels) for _ in range(n_layers if with_motion else 0)
        )
        self.upsamplers = nn.ModuleList([Upsample(out_channels)]) if upsample else None

    def forward(
        self,
        video: torch.Tensor,
        skips: Sequence[torch.Tensor],
        temb: torch.Tensor,
        audio: torch.Tensor | None,
        upsample_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            video = resnet(torch.cat([video, skips[-1 - i]], dim=1), temb)
            if self.attentions is not None:
                video = self.attentions[i](video, audio)
            if len(self.motion_modules):
                video = self.motion_modules[i](video)
        if self.upsamplers is not None:
            video = self.upsamplers[0](video, upsample_size)
        return video
