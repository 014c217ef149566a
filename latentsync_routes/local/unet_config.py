"""Configuration of the LatentSync UNet, readable without torch.

Mirrors the ``model:`` section of the official ``configs/unet/stage2*.yaml`` (as stored in
``unet_config_v1.x.json``). Keys select code paths, so keys and values this implementation does not
build are refused instead of being ignored: a config that silently built a different network would
only fail later, as a checkpoint mismatch or as wrong output.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = [
    "CROSS_DOWN_BLOCK",
    "CROSS_UP_BLOCK",
    "MID_BLOCK",
    "PLAIN_DOWN_BLOCK",
    "PLAIN_UP_BLOCK",
    "MotionModuleConfig",
    "UNetConfig",
    "UNetConfigError",
    "as_unet_config",
]

CROSS_DOWN_BLOCK, PLAIN_DOWN_BLOCK = "CrossAttnDownBlock3D", "DownBlock3D"
CROSS_UP_BLOCK, PLAIN_UP_BLOCK = "CrossAttnUpBlock3D", "UpBlock3D"
MID_BLOCK = "UNetMidBlock3DCrossAttn"

# Keys of the official config that select code paths LatentSync never uses. They are accepted only
# with the value that 1.5/1.6 (and every released config) has, so an unusual config fails loudly here
# instead of building a different network than its checkpoint expects.
_FIXED_MODEL_KEYS: dict[str, tuple[Any, ...]] = {
    "act_fn": ("silu", "swish"),
    "resnet_time_scale_shift": ("default",),
    "use_linear_projection": (False,),
    "dual_cross_attention": (False,),
    "upcast_attention": (False,),
    "class_embed_type": (None,),
    "num_class_embeds": (None,),
}
_FIXED_MOTION_KEYS: dict[str, tuple[Any, ...]] = {"cross_frame_attention_mode": (None,)}


class UNetConfigError(ValueError):
    """The config describes a network this implementation does not build."""


@dataclass(frozen=True)
class MotionModuleConfig:
    """``motion_module_kwargs`` of the official config; defaults are the 1.5/1.6 values."""

    num_attention_heads: int = 8
    num_transformer_block: int = 1
    attention_block_types: tuple[str, ...] = ("Temporal_Self", "Temporal_Self")
    temporal_position_encoding: bool = True
    temporal_position_encoding_max_len: int = 24
    temporal_attention_dim_div: int = 1
    zero_initialize: bool = True


@dataclass(frozen=True)
class UNetConfig:
    """The ``model:`` section of LatentSync's UNet config. Defaults are the 1.5/1.6 values, so
    ``UNetConfig()`` is the released network.

    ``attention_head_dim`` keeps the official (SD-1.5) name but is the number of attention *heads* per
    level; head width is channels / heads.
    """

    in_channels: int = 13
    out_channels: int = 4
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    down_block_types: tuple[str, ...] = (CROSS_DOWN_BLOCK, CROSS_DOWN_BLOCK, CROSS_DOWN_BLOCK, PLAIN_DOWN_BLOCK)
    up_block_types: tuple[str, ...] = (PLAIN_UP_BLOCK, CROSS_UP_BLOCK, CROSS_UP_BLOCK, CROSS_UP_BLOCK)
    mid_block_type: str = MID_BLOCK
    layers_per_block: int = 2
    attention_head_dim: tuple[int, ...] = (8, 8, 8, 8)
    cross_attention_dim: int = 384
    add_audio_layer: bool = True
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    downsample_padding: int = 1
    mid_block_scale_factor: float = 1.0
    center_input_sample: bool = False
    use_inflated_groupnorm: bool = False
    use_motion_module: bool = True
    motion_module_resolutions: tuple[int, ...] = (1, 2, 4, 8)
    motion_module_mid_block: bool = False
    motion_module_decoder_only: bool = False
    motion_module: MotionModuleConfig = field(default_factory=MotionModuleConfig)
    sample_size: int | None = 64

    def __post_init__(self) -> None:
        levels = len(self.block_out_channels)
        if not (len(self.down_block_types) == len(self.up_block_types) == len(self.attention_head_dim) == levels):
            raise UNetConfigError(
                "block_out_channels, down_block_types, up_block_types and attention_head_dim "
                f"must have one entry per level ({levels})"
            )
        for kind in self.down_block_types:
            if kind not in (CROSS_DOWN_BLOCK, PLAIN_DOWN_BLOCK):
                raise UNetConfigError(f"unsupported down block type {kind!r}")
        for kind in self.up_block_types:
            if kind not in (CROSS_UP_BLOCK, PLAIN_UP_BLOCK):
                raise UNetConfigError(f"unsupported up block type {kind!r}")
        if self.mid_block_type != MID_BLOCK:
            raise UNetConfigError(f"unsupported mid block type {self.mid_block_type!r}")
        for channels in self.block_out_channels:
            if channels % self.norm_num_groups:
                raise UNetConfigError(f"{channels} channels do not split into {self.norm_num_groups} groups")
        if any(kind != "Temporal_Self" for kind in self.motion_module.attention_block_types):
            raise UNetConfigError("motion modules support only 'Temporal_Self' attention blocks")

    @classmethod
    def from_dict(cls, cfg: Mapping[str, Any]) -> UNetConfig:
        """Build from the official ``model:`` mapping, or from a whole ``unet_config_v1.x.json`` (which
        nests it under ``"model"``). Unknown keys are refused rather than ignored."""
        if "model" in cfg and isinstance(cfg["model"], Mapping):
            cfg = cfg["model"]
        own = {f.name for f in fields(cls)} - {"motion_module"}
        extra_known = set(_FIXED_MODEL_KEYS) | {"motion_module_type", "motion_module_kwargs", "only_cross_attention"}
        unknown = sorted(k for k in cfg if k not in own | extra_known and not k.startswith("_"))
        if unknown:
            raise UNetConfigError(f"unknown UNet config keys: {unknown}")
        for key, allowed in _FIXED_MODEL_KEYS.items():
            if key in cfg and cfg[key] not in allowed:
                raise UNetConfigError(f"{key}={cfg[key]!r} is not supported (LatentSync uses {allowed[0]!r})")
        only_cross = cfg.get("only_cross_attention", False)
        if any(only_cross if isinstance(only_cross, list | tuple) else [only_cross]):
            raise UNetConfigError("only_cross_attention is not supported")
        use_motion = bool(cfg.get("use_motion_module", cls.use_motion_module))
        motion_type = cfg.get("motion_module_type", "Vanilla")
        if use_motion and motion_type != "Vanilla":
            raise UNetConfigError(f"motion_module_type={motion_type!r} is not supported (only 'Vanilla')")

        values: dict[str, Any] = {}
        for key in own & set(cfg):
            value = cfg[key]
            values[key] = tuple(value) if isinstance(value, list) else value
        heads = values.get("attention_head_dim")
        if isinstance(heads, int):
            levels = len(values.get("block_out_channels", cls.block_out_channels))
            values["attention_head_dim"] = (heads,) * levels
        if "norm_eps" in values:
            values["norm_eps"] = float(values["norm_eps"])
        if "mid_block_scale_factor" in values:
            values["mid_block_scale_factor"] = float(values["mid_block_scale_factor"])
        values["motion_module"] = _motion_config(cfg.get("motion_module_kwargs") or {})
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | Path) -> UNetConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_dict(self) -> dict[str, Any]:
        """The official ``model:`` form, e.g. for run records; ``from_dict`` reads it back."""
        out = asdict(self)
        motion = out.pop("motion_module")
        motion["attention_block_types"] = list(motion["attention_block_types"])
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
        out.update(act_fn="silu", resnet_time_scale_shift="default", motion_module_type="Vanilla")
        out["motion_module_kwargs"] = motion
        return out


def _motion_config(kwargs: Mapping[str, Any]) -> MotionModuleConfig:
    own = {f.name for f in fields(MotionModuleConfig)}
    unknown = sorted(k for k in kwargs if k not in own and k not in _FIXED_MOTION_KEYS)
    if unknown:
        raise UNetConfigError(f"unknown motion_module_kwargs keys: {unknown}")
    for key, allowed in _FIXED_MOTION_KEYS.items():
        if key in kwargs and kwargs[key] not in allowed:
            raise UNetConfigError(f"motion_module_kwargs.{key}={kwargs[key]!r} is not supported")
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items() if k in own}
    return MotionModuleConfig(**values)


def as_unet_config(config: UNetConfig | Mapping[str, Any] | str | Path | None) -> UNetConfig:
    """Accept every form callers hold a config in; ``None`` means the released 1.5/1.6 network."""
    if config is None:
        return UNetConfig()
    if isinstance(config, UNetConfig):
        return config
    if isinstance(config, str | Path):
        return UNetConfig.from_json(config)
    return UNetConfig.from_dict(config)
