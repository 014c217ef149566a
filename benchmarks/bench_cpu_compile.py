"""torch.compile (inductor, with and without freezing) and channels-last memory for the UNet and the VAE
decoder on a CPU, against today's eager float32, side by side in one process.

    python benchmarks/bench_cpu_compile.py                 # reduced sizes (minutes on 2 cores)
    python benchmarks/bench_cpu_compile.py --size full     # the real 1.5 shapes (a quiet machine; an hour)
    python benchmarks/bench_cpu_compile.py --repeats 5

Each variant is built from the same weights, warmed up (the compile happens there and is timed apart), then
timed in **CPU seconds** (user + system, all threads), the variants interleaved within each round so a
load change on a shared machine hits them all. It prints each variant's median and range against eager and
its largest output difference from eager: a variant is worth keeping only when it is faster and within
1e-4 of today's output.

Sizes. ``full``: the released UNet (1.27 B parameters) on one CFG chunk at 256 px (2 x 16 frames, latent
32x32) and the ``sd-vae-ft-mse`` decoder on one 256 px frame. ``small`` (default): the same layer layout
at a fifth of the UNet's widths (64-256 channels) on a 16x16 latent, and the same decoder on a 128 px
frame, so a loaded 2-core machine finishes in minutes; the kernels are the same kinds, the ratios not
necessarily the same.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from latentsync_routes.local.cpu_probe import cpu_model
from latentsync_routes.local.precision import bf16_flags


def _unet(size: str) -> tuple[torch.nn.Module, Callable[[torch.nn.Module], torch.Tensor]]:
    from latentsync_routes.local.unet import LatentSyncUNet, UNetConfig

    torch.manual_seed(0)
    cfg = UNetConfig() if size == "full" else UNetConfig(block_out_channels=(64, 128, 256, 256))
    model = LatentSyncUNet(cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim >= 2 and not param.any():
                param.normal_(0.0, param[0].numel() ** -0.5, generator=gen)
    lat = 32 if size == "full" else 16
    sample = torch.randn(2, 13, 16, lat, lat, generator=gen)
    audio = torch.randn(32, 50, 384, generator=gen)
    return model.eval(), lambda m: m(sample, 951, audio)


def _decoder(size: str) -> tuple[torch.nn.Module, Callable[[torch.nn.Module], torch.Tensor]]:
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    torch.manual_seed(3)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, norm_num_groups=32,
    )  # fmt: skip
    lat = 32 if size == "full" else 16
    latents = torch.randn(1, 4, lat, lat, generator=torch.Generator().manual_seed(1))

    class Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.post_quant_conv, self.decoder = vae.post_quant_conv, vae.decoder

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.decoder(self.post_quant_conv(z))  # type: ignore[no-any-return]

    return Decoder().eval(), lambda m: m(latents.to(memory_format=_format(m)))


def _format(model: torch.nn.Module) -> torch.memory_format:
    return getattr(model, "_input_format", torch.contiguous_format)


def _variants(model: torch.nn.Module, kind: str) -> dict[str, torch.nn.Module]:
    """eager (today), channels-last, inductor, inductor with freezing (weights folded as constants)."""
    out: dict[str, torch.nn.Module] = {"eager": model}
    if kind == "decoder":  # the UNet's convolutions see 4-D (frames folded) tensors inside; its input is 5-D
        last = copy.deepcopy(model).to(memory_format=torch.channels_last)
        last._input_format = torch.channels_last  # type: ignore[assignment]
        out["channels_last"] = last
    else:
        last = copy.deepcopy(model).to(memory_format=torch.channels_last)
        out["channels_last"] = last
    out["inductor"] = torch.compile(copy.deepcopy(model), backend="inductor")  # type: ignore[assignment]
    out["inductor+freezing"] = torch.compile(copy.deepcopy(model), backend="inductor")  # type: ignore[assignment]
    return out


def _cpu(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.process_time()
    with torch.inference_mode():
        value = call()
    return time.process_time() - start, value


def bench(name: str, model: torch.nn.Module, forward: Callable[..., torch.Tensor], repeats: int) -> dict[str, Any]:
    import torch._inductor.config as inductor_config

    variants = _variants(model, name)
    first: dict[str, float] = {}
    outputs: dict[str, torch.Tensor] = {}
    for label, variant in variants.items():
        inductor_config.freezing = label.endswith("freezing")
        first[label], outputs[label] = _cpu(lambda v=variant: forward(v))  # warm-up; compiles the compiled ones
    times: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(repeats):
        for label, variant in variants.items():
            inductor_config.freezing = label.endswith("freezing")
            times[label].append(_cpu(lambda v=variant: forward(v))[0])
    base = statistics.median(times["eager"])
    rows = {}
    for label, found in times.items():
        diff = float((outputs[label].float() - outputs["eager"].float()).abs().max())
        rows[label] = {
            "median_cpu_s": statistics.median(found), "min": min(found), "max": max(found),
            "ratio": statistics.median(found) / base, "first_call_cpu_s": first[label], "max_abs_diff": diff,
        }  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--size", choices=("small", "full"), default="small")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("unet", "decoder"))
    args = parser.parse_args()
    print(f"CPU {cpu_model()} (bf16 flags: {', '.join(bf16_flags()) or 'none'}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.python_version()}, size {args.size}, n={args.repeats}, "
          f"load average at start {os.getloadavg()}")  # fmt: skip
    for name, build in (("unet", _unet), ("decoder", _decoder)):
        if args.only and name != args.only:
            continue
        model, forward = build(args.size)
        rows = bench(name, model, forward, args.repeats)
        print(f"\n{name}: CPU s per forward, median (min-max), ratio to eager, first call, max |diff| vs eager")
        for label, r in rows.items():
            print(f"  {label:18s} {r['median_cpu_s']:8.2f} ({r['min']:.2f}-{r['max']:.2f})  x{r['ratio']:.3f}  "
                  f"first {r['first_call_cpu_s']:7.1f}  diff {r['max_abs_diff']:.2e}")  # fmt: skip
    print(f"\nload average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
