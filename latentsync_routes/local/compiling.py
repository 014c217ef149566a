"""``torch.compile`` for the LatentSync UNet, one region at a time.

Why regions rather than the whole network: the UNet repeats a few block shapes many times, and compiling
each ResNet, attention and motion module on its own gives small graphs that equal blocks share, so the
one-time cost is a fraction of a whole-model compile. It also keeps the step cache working: the cache
catches the input of the last decoder ResNet with a forward pre-hook, and a hook added inside a compiled
graph would force a recompile on every full step; that one module is left eager.

The first chunk pays the compile time (docs/local.md gives the measured figure); a chunk with fewer frames
(the last one of a clip) compiles its shape once more.
"""

from __future__ import annotations

from typing import Any, cast

import torch

__all__ = ["compile_unet_regions", "compiled_regions"]


def _regions(unet: torch.nn.Module) -> list[torch.nn.Module]:
    model = cast(Any, unet)
    last = model.up_blocks[-1].resnets[-1]  # the step cache hooks this one: it stays eager
    found: list[torch.nn.Module] = []
    for block in [*model.down_blocks, model.mid_block, *model.up_blocks]:
        for group in ("resnets", "attentions", "motion_modules"):
            modules = getattr(block, group, None)
            if modules is None:
                continue
            found.extend(m for m in modules if m is not None and m is not last)
    return found


def compile_unet_regions(unet: torch.nn.Module, **options: Any) -> int:
    """Compile the UNet's ResNets, attentions and motion modules in place; returns how many were compiled.

    ``options`` go to :meth:`torch.nn.Module.compile` (e.g. ``mode="max-autotune"``).
    """
    regions = _regions(unet)
    for module in regions:
        module.compile(**options)
    return len(regions)


def compiled_regions(unet: torch.nn.Module) -> int:
    """How many of the UNet's regions are compiled (0 for an eager model)."""
    return sum(getattr(m, "_compiled_call_impl", None) is not None for m in _regions(unet))
