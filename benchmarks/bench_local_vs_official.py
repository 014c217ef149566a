"""The local route's default against the official defaults: UNet forwards and whole 16-frame chunks.

Each measurement runs in a fresh process (so one configuration's memory or thread pool cannot slow the
next), configurations alternate within each pair (so a load change on a shared machine hits both), and the
figure reported is the ratio of **CPU time** (user + system of the worker process, all threads), with wall
time beside it. The chunk is what a job repeats every 16 output frames: VAE encode of the masked and full
faces, 20 DDIM steps with classifier-free guidance, VAE decode and the mouth paste, with full-size networks
(random weights: the cost does not depend on their values).

Configurations:

* ``ours-default``: what the local route now runs: the step cache at the official schedule (interval 3,
  full passes at steps 0, 3, ..., 18) and the device's default dtype (``latentsync_routes.local.precision``:
  float32 on a CPU without AMX, bfloat16 with AMX).
* ``ours-nocache-fp32``: our code at the official CLI's defaults on a CPU: float32 (``scripts/inference.py``
  uses fp16 only on CUDA) and no DeepCache (``--enable_deepcache`` is off unless passed). An earlier
  side-by-side measurement matched our UNet's CPU time to the official one (ratio 1.006 over six pairs),
  so this stands for the official default chunk.
* ``ours-official``: float32 with the step cache, as the official ``inference.sh`` and Gradio app run.
* ``ours-bf16``: the step cache with a bfloat16 UNet (the VAE stays float32 on the CPU).

    python benchmarks/bench_local_vs_official.py                       # chunks from their parts, 3 pairs
    python benchmarks/bench_local_vs_official.py --what chunk --pairs 5  # whole chunks end to end
    python benchmarks/bench_local_vs_official.py --against ours-bf16

The official code itself is not driven by this script: it hard-codes CUDA in three places and needs its own
dependency set (diffusers 0.32, DeepCache); see docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

CONFIGS: dict[str, dict[str, Any]] = {
    "ours-default": {"dtype": "auto", "deepcache": True},
    "ours-nocache-fp32": {"dtype": "float32", "deepcache": False},
    "ours-official": {"dtype": "float32", "deepcache": True},
    "ours-bf16": {"dtype": "bfloat16", "deepcache": True},
}
FRAMES = 16
VAE_FRAMES = 4  # frames the "parts" mode runs the VAE on (scaled to 16: the VAE works frame by frame)


# --------------------------------------------------------------------------------------------- worker


def _sd_vae(dtype: Any) -> Any:
    """``stabilityai/sd-vae-ft-mse``'s architecture (its config.json) with seeded random weights."""
    import torch
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    torch.manual_seed(3)
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, norm_num_groups=32,
        sample_size=256,
    )  # fmt: skip
    return vae.to(dtype).eval().requires_grad_(False)


def _unet(dtype: Any) -> Any:
    import torch

    from latentsync_routes.local.unet import LatentSyncUNet, UNetConfig

    model = LatentSyncUNet(UNetConfig())
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a fresh model zeroes conv_in/conv_out/motion outputs: give every weight a value
        for param in model.parameters():
            if param.ndim >= 2 and not param.any():
                param.normal_(0.0, param[0].numel() ** -0.5, generator=generator)
    return model.to(dtype).eval().requires_grad_(False)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Build the networks for one configuration, time one forward or one chunk, return the figures."""
    import torch

    from latentsync_routes.local.precision import resolve_dtype, vae_dtype

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    dtype_name = resolve_dtype(spec["dtype"], "cpu")
    dtype = getattr(torch, dtype_name)
    res = int(spec["resolution"])
    unet = _unet(dtype)
    gen = torch.Generator().manual_seed(1)
    lat = res // 8
    audio = torch.randn(FRAMES, 50, 384, generator=gen)
    if spec["what"] == "forward":
        sample = torch.randn(2, 13, FRAMES, lat, lat, generator=gen).to(dtype)
        both = torch.cat([torch.zeros_like(audio), audio]).to(dtype)
        cpu, wall = time.process_time(), time.perf_counter()
        with torch.inference_mode():
            out = unet(sample, 951, both)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        assert bool(torch.isfinite(out).all())
        return {"cpu_s": cpu, "wall_s": wall, "dtype": dtype_name}
    vae = _sd_vae(getattr(torch, vae_dtype("cpu", dtype_name)))
    if spec["what"] == "parts":
        return _parts(spec, unet, vae, audio, dtype_name)
    sampler = _sampler(unet, vae, res, int(spec["steps"]), bool(spec["deepcache"]))
    faces = torch.randint(0, 256, (FRAMES, 3, res, res), generator=gen, dtype=torch.uint8)
    noise = (torch.randn(FRAMES, 4, lat, lat, generator=gen), torch.randn(FRAMES, 4, lat, lat, generator=gen))
    init = torch.randn(1, 4, 1, lat, lat, generator=gen).expand(-1, -1, FRAMES, -1, -1)
    cpu, wall = time.process_time(), time.perf_counter()
    pixels, masked, ref = sampler.encode(faces, *noise)
    final = sampler.denoise(init, masked, ref, audio)
    synced = sampler.decode(final, pixels)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert bool(torch.isfinite(synced).all())
    return {"cpu_s": cpu, "wall_s": wall, "dtype": dtype_name, "full_passes": sampler.full_passes}


def _sampler(unet: Any, vae: Any, res: int, steps: int, deepcache: bool) -> Any:
    import torch

    from latentsync_routes.local.sampler import ChunkSampler

    mask = torch.full((res, res), 255, dtype=torch.uint8)
    mask[int(res * 0.6) :, int(res * 0.2) : int(res * 0.8)] = 0
    return ChunkSampler(
        unet=unet, vae=vae, mask=mask.numpy(), resolution=res, num_inference_steps=steps, guidance_scale=1.5,
        deepcache=deepcache,
    )  # fmt: skip


def _parts(spec: dict[str, Any], unet: Any, vae: Any, audio: Any, dtype_name: str) -> dict[str, Any]:
    """A chunk composed from its measured parts: VAE work (encode masked + full faces, decode) of
    ``VAE_FRAMES`` frames scaled to 16 (the VAE is per frame), one full CFG UNet pass and one shallow
    (cached) pass. chunk = VAE + full x full passes + shallow x the other steps; the DDIM update is noise."""
    import torch

    from latentsync_routes.local.sampler import _StepCache, deepcache_full_steps

    res, steps, deepcache = int(spec["resolution"]), int(spec["steps"]), bool(spec["deepcache"])
    lat, n = res // 8, VAE_FRAMES
    sampler = _sampler(unet, vae, res, steps, deepcache)
    gen = torch.Generator().manual_seed(2)
    faces = torch.randint(0, 256, (n, 3, res, res), generator=gen, dtype=torch.uint8)
    noise = (torch.randn(n, 4, lat, lat, generator=gen), torch.randn(n, 4, lat, lat, generator=gen))
    dtype = getattr(torch, dtype_name)
    sample = torch.randn(2, 13, FRAMES, lat, lat, generator=gen).to(dtype)
    both = torch.cat([torch.zeros_like(audio), audio]).to(dtype)
    with torch.inference_mode():  # warm-up at a quarter of the pixels: library set-up is not a per-step cost
        warm = torch.zeros(1, 3, res // 2, res // 2, dtype=next(vae.parameters()).dtype)
        vae.decode(vae.encode(warm).latent_dist.mean)
        unet(sample[..., : lat // 2, : lat // 2], 951, both)
    cpu, wall = time.process_time(), time.perf_counter()
    pixels, masked, ref = sampler.encode(faces, *noise)
    sampler.decode(masked.transpose(0, 1)[None], pixels)
    vae_cpu, vae_wall = (time.process_time() - cpu) * FRAMES / n, (time.perf_counter() - wall) * FRAMES / n

    cache = _StepCache(unet, 3)
    with torch.inference_mode():
        cpu, wall = time.process_time(), time.perf_counter()
        cache(sample, torch.tensor(951), both, 0)  # a full pass (it also keeps the deep features)
        full_cpu, full_wall = time.process_time() - cpu, time.perf_counter() - wall
        cpu, wall = time.process_time(), time.perf_counter()
        out = cache(sample, torch.tensor(901), both, 1)  # a shallow pass on the kept features
        shallow_cpu, shallow_wall = time.process_time() - cpu, time.perf_counter() - wall
    assert bool(torch.isfinite(out).all())
    n_full = len(deepcache_full_steps(steps, 3)) if deepcache else steps
    n_shallow = steps - n_full
    return {
        "cpu_s": vae_cpu + n_full * full_cpu + n_shallow * shallow_cpu,
        "wall_s": vae_wall + n_full * full_wall + n_shallow * shallow_wall,
        "dtype": dtype_name, "full_passes": n_full, "vae_cpu_s": vae_cpu, "full_cpu_s": full_cpu,
        "shallow_cpu_s": shallow_cpu,
    }  # fmt: skip


# --------------------------------------------------------------------------------------------- driver


def run_one(name: str, what: str, args: argparse.Namespace) -> dict[str, Any]:
    spec = {**CONFIGS[name], "what": what, "resolution": args.resolution, "steps": args.steps,
            "threads": args.threads}  # fmt: skip
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    # Idle OpenMP threads sleep instead of spinning, so CPU time is work, not waiting on a busy machine.
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{name} {what} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    parts = (f"; VAE {result['vae_cpu_s']:.1f} + full {result['full_cpu_s']:.1f} + shallow "
             f"{result['shallow_cpu_s']:.2f} CPU s" if what == "parts" else "")  # fmt: skip
    passes = f", {result['full_passes']} full passes" if "full_passes" in result else ""
    print(f"  {what:7s} {name:18s} cpu {result['cpu_s']:8.1f} s  wall {result['wall_s']:8.1f} s  "
          f"({result['dtype']}{passes}{parts})", flush=True)  # fmt: skip
    return result


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f}, n={len(values)})"


def compare(what: str, against: str, args: argparse.Namespace) -> dict[str, Any]:
    """``args.pairs`` interleaved pairs of (ours-default, ``against``), alternating which one goes first."""
    cpu_ratios, wall_ratios, ours_cpu, theirs_cpu = [], [], [], []
    for i in range(args.pairs):
        order = ["ours-default", against] if i % 2 == 0 else [against, "ours-default"]
        got = {name: run_one(name, what, args) for name in order}
        ours, theirs = got["ours-default"], got[against]
        ours_cpu.append(ours["cpu_s"])
        theirs_cpu.append(theirs["cpu_s"])
        cpu_ratios.append(ours["cpu_s"] / theirs["cpu_s"])
        wall_ratios.append(ours["wall_s"] / theirs["wall_s"])
        print(f"  pair {i + 1}: cpu ratio {cpu_ratios[-1]:.3f}, wall ratio {wall_ratios[-1]:.3f}", flush=True)
    print(f"{what}: ours-default / {against}")
    print(f"  CPU-time ratio  {spread(cpu_ratios)}")
    print(f"  wall ratio      {spread(wall_ratios)}")
    print(f"  ours-default CPU s   {spread(ours_cpu)}")
    print(f"  {against} CPU s   {spread(theirs_cpu)}", flush=True)
    return {"what": what, "against": against, "cpu_ratios": cpu_ratios, "wall_ratios": wall_ratios,
            "ours_cpu_s": ours_cpu, "theirs_cpu_s": theirs_cpu}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--what", choices=["parts", "forward", "chunk", "both"], default="parts",
                        help="parts: a chunk composed from its measured parts (default, ~1/5 of the time); "
                        "chunk: whole chunks timed end to end; forward: one UNet forward; both: forward + chunk")
    parser.add_argument("--against", choices=[c for c in CONFIGS if c != "ours-default"], default="ours-nocache-fp32")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved pairs per measurement (default 3)")
    parser.add_argument("--resolution", type=int, default=256, help="face resolution in px (256 = 1.5)")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps per chunk (official default 20)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    import torch

    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{args.threads or torch.get_num_threads()} threads, {args.resolution} px, {args.steps} steps", flush=True)
    results = [compare(w, args.against, args) for w in (["forward", "chunk"] if args.what == "both" else [args.what])]
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
