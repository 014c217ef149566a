"""Temporal motion modules of the LatentSync UNet (AnimateDiff "Vanilla" layout).

A motion module lets every spatial position attend over the frames of one chunk, which is what keeps
the mouth region coherent from frame to frame. The attribute names below are fixed by the published
checkpoint (``motion_modules.N.temporal_transformer.transformer_blocks.0.attention_blocks.K.*``), so
the module tree mirrors the official one even where a flatter layout would do.

Imported only through :mod:`latentsync_routes.local.unet`: this module needs torch and diffusers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn

__all__ = ["FramePositionalEncoding", "MotionModule", "TemporalSelfAttention"]


class FramePositionalEncoding(nn.Module):
    """Sinusoidal position of each frame inside its chunk, added before temporal attention.

    ``pe`` is a persistent buffer because the official checkpoint stores it (40 entries of the 1,246);
    a strict load therefore needs it, even though its value is a fixed function of the shape.
    """

    pe: torch.Tensor

    def __init__(self, dim: int, max_frames: int) -> None:
        super().__init__()
        self.register_buffer("pe", sinusoidal_frame_table(dim, max_frames), persistent=True)

    @property
    def max_frames(self) -> int:
        return int(self.pe.shape[1])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        frames = tokens.shape[1]
        if frames > self.max_frames:
            raise ValueError(
                f"chunk of {frames} frames is longer than the temporal position table "
                f"({self.max_frames}); split the video into chunks of at most {self.max_frames} frames"
            )
        return tokens + self.pe[:, :frames]


def sinusoidal_frame_table(dim: int, max_frames: int) -> torch.Tensor:
    """The (1, max_frames, dim) table: sin on even channels, cos on odd ones, base 10000.

    Computed in float32 exactly as the checkpoint's buffers were, so a rebuilt table equals a loaded one.
    """
    position = torch.arange(max_frames).unsqueeze(1)
    inv_freq = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, max_frames, dim)
    table[0, :, 0::2] = torch.sin(position * inv_freq)
    table[0, :, 1::2] = torch.cos(position * inv_freq)
    return table


class TemporalSelfAttention(Attention):
    """Multi-head self-attention across frames, on tokens laid out as (batch * pixels, frames, channels).

    The positional encoding is added to the attention input only, not to the residual stream; the
    caller adds the residual. It subclasses diffusers' ``Attention`` so the q/k/v/out projections carry
    the checkpoint's key names and the attention kernel is diffusers' SDPA processor; ``pos_encoder`` is
    registered after them to keep the official state-dict order.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, *, position_table_len: int | None) -> None:
        super().__init__(query_dim=dim, heads=heads, dim_head=head_dim, bias=False)
        self.pos_encoder: FramePositionalEncoding | None = (
            FramePositionalEncoding(dim, position_table_len) if position_table_len is not None else None
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if self.pos_encoder is not None:
            tokens = self.pos_encoder(tokens)
        out: torch.Tensor = super().forward(tokens)
        return out


class TemporalTransformerBlock(nn.Module):
    """Pre-norm temporal self-attention layers followed by a GEGLU feed-forward, all residual."""

    def __init__(self, dim: int, heads: int, head_dim: int, n_attention: int, position_table_len: int | None) -> None:
        super().__init__()
        self.attention_blocks = nn.ModuleList(
            TemporalSelfAttention(dim, heads, head_dim, position_table_len=position_table_len)
            for _ in range(n_attention)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(n_attention))
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms, strict=True):
            tokens = attention(norm(tokens)) + tokens
        out: torch.Tensor = self.ff(self.ff_norm(tokens)) + tokens
        return out


class TemporalTransformer(nn.Module):
    """Per-frame GroupNorm, then a token transformer over frames, then a residual back onto the video.

    GroupNorm statistics here are per frame (unlike the ResNet norms, which pool over the chunk).
    Everything after the norm is per token except the attention, so the tokens are put in
    (batch * pixels, frames, channels) order once, instead of reshuffling around every attention call.
    """

    def __init__(
        self,
        channels: int,
        heads: int,
        head_dim: int,
        *,
        n_layers: int,
        n_attention: int,
        position_table_len: int | None,
        norm_groups: int,
    ) -> None:
        super().__init__()
        inner = heads * head_dim
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            TemporalTransformerBlock(inner, heads, head_dim, n_attention, position_table_len) for _ in range(n_layers)
        )
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = video.shape
        per_frame = video.transpose(1, 2).reshape(b * f, c, h, w)
        normed = self.norm(per_frame)
        tokens = normed.reshape(b, f, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, f, c)
        tokens = self.proj_in(tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens)
        tokens = self.proj_out(tokens)
        # Add the residual frame-major and hand back a (b, c, f, h, w) *view* of it, the memory layout
        # the original produces. The next ResNet GroupNorm picks its CPU kernel (and so its rounding)
        # from that layout, and at 1x1 latents a near-constant 2-channel group amplifies that rounding
        # a thousandfold.
        delta = tokens.reshape(b, h, w, f, c).permute(0, 3, 4, 1, 2).reshape(b * f, c, h, w)
        return cast("torch.Tensor", (delta + per_frame).reshape(b, f, c, h, w).transpose(1, 2))


class MotionModule(nn.Module):
    """One motion module; the wrapper level exists so keys carry the ``temporal_transformer.`` prefix."""

    def __init__(
        self,
        channels: int,
        *,
        num_attention_heads: int,
        num_transformer_block: int,
        attention_block_types: Sequence[str],
        temporal_position_encoding: bool,
        temporal_position_encoding_max_len: int,
        temporal_attention_dim_div: int,
        zero_initialize: bool,
        norm_groups: int = 32,
    ) -> None:
        super().__init__()
        head_dim = channels // num_attention_heads // temporal_attention_dim_div
        self.temporal_transformer = TemporalTransformer(
            channels,
            num_attention_heads,
            head_dim,
            n_layers=num_transformer_block,
            n_attention=len(attention_block_types),
            position_table_len=temporal_position_encoding_max_len if temporal_position_encoding else None,
            norm_groups=norm_groups,
        )
        if zero_initialize:
            # A fresh module starts as the identity, so adding motion modules to a trained image
            # model does not disturb it; irrelevant once a checkpoint is loaded.
            nn.init.zeros_(self.temporal_transformer.proj_out.weight)
            nn.init.zeros_(self.temporal_transformer.proj_out.bias)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.temporal_transformer(video)
        return out
