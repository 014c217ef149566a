"""Every GPU figure of the local route in one short run: parity, speed, memory (and the official code).

    python benchmarks/gpu_check.py                          # CUDA, full size: the real run (at most 5 min)
    python benchmarks/gpu_check.py --device cpu --tiny      # the same code at tiny sizes (the test suite runs it)
    python benchmarks/gpu_check.py --out gpu.json           # where the JSON goes (default: gpu_check.json)
    python benchmarks/render_gpu_table.py gpu.json --docs docs/performance.md   # fill the docs' GPU table

It writes one JSON with top-level ``parity``, ``speed``, ``memory`` and ``official`` objects and prints the
tables docs/performance.md shows (``render_gpu_table.py``). What each part measures:

* ``parity``: fp16 and bf16 (bf16 only on a CPU) against fp32, max/mean absolute and max relative error.
  ``golden``: the official goldens' tiny UNet (cases 1-3) and the whole ``pipeline_tiny`` run (chunk 0's
  final latents) on the device, against the official code's CPU fp32 output. ``random``: the full-size UNet
  (random weights) at 1.5 (256 px) and 1.6 (512 px) shapes, one CFG forward and one whole denoising chunk (20
  steps, guidance 1.5, step cache), against fp32 on the same device (TF32 off).
* ``speed``: wall seconds per second of output at the official defaults (20 steps, guidance 1.5, step
  cache on) in the device's default dtype (fp16 on CUDA), for 1.5 and 1.6, eager and with regional
  ``torch.compile``, split into faces (alignment), whisper, UNet, VAE (encode + decode) and restore.
* ``memory``: peak VRAM (CUDA allocator peak) streaming 5 s, 20 s and 60 s of video at 1.5 and 1.6, and the
  version ``local_version="auto"`` picks at 8, 12, 18 and 24 GB free, with whether its measured peak fits.
* ``official``: the official code side by side; see :func:`official`.

Budget on one GPU (wall seconds; each part checks its budget before each step and records what it
skipped, so the run ends in time whatever the GPU): start-up and model building 20, parity 45, speed 150
(eager chunks about 10; the first compiled chunk of each version pays the compile), memory 75; total 290 s.
The budgets are written into the JSON with the time each part took. ``--tiny`` keeps the same parts at
64 / 128 px with the tiny test models; compile there uses the ``eager`` backend (it exercises the regional
compile path without a C++ toolchain), so its timings say nothing about inductor.

Only torch and what ``pip install latentsync-routes[local]`` brings are needed; on the lent GPU machine
(no network) the missing wheels travel in an ignored ``.whl`` folder (docs/performance.md, "GPU", lists
them and gives the command).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the _gpu_check_* helpers beside this file
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the package, when run from a checkout

from _gpu_check_parts import memory, parity, speed  # noqa: E402
from _gpu_check_setup import Budget, Setup  # noqa: E402

BUDGET_S = {"setup": 20.0, "parity": 45.0, "speed": 150.0, "memory": 75.0}
LENGTHS = {"full": (5.0, 20.0, 60.0), "tiny": (0.5, 1.0, 1.5)}
GOLDEN_DIRS = ("../shared/goldens/latentsync", ".goldens/latentsync")


def find_goldens(given: str | None) -> Path | None:
    root = Path(__file__).resolve().parents[1]
    for candidate in [given] if given else GOLDEN_DIRS:
        path = (root / candidate).resolve()
        if (path / "unet_tiny" / "cases.safetensors").is_file():
            return path
    return None


def machine(setup: Setup) -> dict[str, Any]:
    from latentsync_routes.local.cpu_probe import cpu_model
    from latentsync_routes.local.precision import bf16_flags

    info: dict[str, Any] = {
        "device": str(setup.device), "torch": torch.__version__, "python": platform.python_version(),
        "cpu": cpu_model(), "cpu_bf16_flags": bf16_flags(), "threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }  # fmt: skip
    if setup.is_cuda:
        props = torch.cuda.get_device_properties(setup.device)
        info.update(gpu=props.name, vram_gb=round(props.total_memory / 1e9, 1), cuda=torch.version.cuda)
    return info


def official(args: argparse.Namespace) -> dict[str, Any]:
    """The official code on the same device, where its checkout and wheels travelled with the run.

    It needs the official checkout (``.official/LatentSync``, ignored) and its pinned packages (diffusers
    0.32.2, DeepCache 0.1.1, omegaconf, kornia) beside ours; none can be fetched on the GPU machine, so this
    reports why it did not run unless ``--official`` names a checkout that is there.
    """
    checkout = Path(args.official) if args.official else None
    if checkout is None or not (checkout / "latentsync" / "pipelines" / "lipsync_pipeline.py").is_file():
        return {
            "ran": False,
            "reason": (
                "no official checkout travelled with the run (--official DIR): the GPU machine has no network, "
                "and the official code's own pins (diffusers 0.32.2, DeepCache, omegaconf, kornia) would need "
                "a second, separate package folder; see docs/performance.md, GPU"
            ),
        }
    return {"ran": False, "reason": f"the official CUDA worker is not implemented yet (checkout {checkout} found)"}


def say(what: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu --tiny for the CPU check")
    started = time.monotonic()
    goldens = find_goldens(args.goldens)
    setup = Setup.make(args.device, args.tiny, goldens)
    torch.manual_seed(0)
    elapsed: dict[str, float] = {}
    mark = time.monotonic()
    unet, vae = setup.unet(), setup.vae()
    elapsed["setup"] = time.monotonic() - mark
    say(f"setup: {elapsed['setup']:.1f} s")
    report: dict[str, Any] = {
        "schema": 1, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": "tiny" if args.tiny else "full", "machine": machine(setup), "budget_s": BUDGET_S,
        "budgets_enforced": not args.tiny,
    }  # fmt: skip
    # The budgets hold the real run to 5 minutes; --tiny runs every step (its output must not depend on load).
    budget = {k: Budget(float("inf") if args.tiny else v) for k, v in BUDGET_S.items()}
    parts = {
        "parity": lambda: parity(setup, unet, vae, goldens, budget["parity"], args.golden_chunk),
        "memory": lambda: memory(setup, unet, vae, budget["memory"], LENGTHS[report["mode"]]),
        "speed": lambda: speed(setup, unet, vae, budget["speed"], backend),
    }
    backend = None if args.no_compile else ("eager" if args.tiny else "inductor")
    for name, part in parts.items():
        if name not in args.parts:
            report[name] = {"not_run": "not asked for (--parts)"}
            continue
        mark = time.monotonic()
        report[name] = part()
        elapsed[name] = time.monotonic() - mark
        say(f"{name}: {elapsed[name]:.1f} s")
    report["official"] = official(args)
    report["elapsed_s"] = {k: round(v, 2) for k, v in {**elapsed, "total": time.monotonic() - started}.items()}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny models and sizes (CPU-friendly; the test suite)")
    parser.add_argument("--out", default="gpu_check.json", help="where the JSON goes")
    parser.add_argument("--goldens", help=f"the goldens' latentsync folder (default: the first of {GOLDEN_DIRS})")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile runs")
    parser.add_argument("--golden-chunk", action="store_true", help="with --tiny: run the goldens' chunk too")
    parser.add_argument("--official", help="an official LatentSync checkout that travelled with the run")
    parser.add_argument(
        "--parts", nargs="+", choices=("parity", "memory", "speed"), default=("parity", "memory", "speed")
    )
    args = parser.parse_args()
    report = run(args)
    Path(args.out).write_text(json.dumps(report, indent=2))
    from render_gpu_table import render

    print(render(report))
    print(f"wrote {args.out} in {report['elapsed_s']['total']:.0f} s")


if __name__ == "__main__":
    main()
