"""The local route's default against the official code: UNet forwards and whole 16-frame chunks.

Each measurement runs in a fresh process (so one configuration's memory or thread pool cannot slow the
next), configurations alternate within each pair (so a load change on a shared machine hits both), and the
figure reported is the ratio of **CPU time** (user + system of the worker process, all threads), with wall
time beside it. The chunk is what a job repeats every 16 output frames: VAE encode of the masked and full
faces, 20 DDIM steps with classifier-free guidance, VAE decode and the mouth paste, with full-size networks
(random weights: the cost does not depend on their values).

Configurations:

* ``ours-default``: what the local route now runs: the step cache at the official schedule (interval 3,
  full passes at steps 0, 3, ..., 18), the device's default dtype (``latentsync_routes.local.precision``:
  float32 on a CPU without AMX, bfloat16 with AMX) and freed memory kept in the process
  (``latentsync_routes.local.allocator.keep_freed_memory``, as the local route does on CPU runs).
* ``ours-nocache-fp32``: our code at the official CLI's defaults on a CPU: float32 (``scripts/inference.py``
  uses fp16 only on CUDA) and no DeepCache (``--enable_deepcache`` is off unless passed).
* ``ours-official``: float32 with the step cache, as the official ``inference.sh`` and Gradio app run.
* ``ours-bf16``: the step cache with a bfloat16 UNet (the VAE stays float32 on the CPU).
* ``official-default``: the official code itself at the ``inference.sh`` / Gradio defaults on a CPU:
  float32, DeepCache on (``DeepCacheSDHelper.set_params(cache_interval=3, cache_branch_id=0)``), guidance 1.5,
  20 DDIM steps, the 256 px LatentSync 1.5 network (``configs/unet/stage2.yaml``).
* ``official-nocache``: the official code with DeepCache off (guidance 1.5, float32).

    python benchmarks/bench_local_vs_official.py                       # chunks from their parts, 3 pairs
    python benchmarks/bench_local_vs_official.py --what chunk --pairs 5  # whole chunks end to end
    python benchmarks/bench_local_vs_official.py --against ours-bf16
    python benchmarks/bench_local_vs_official.py --against official-default \\
        --official .official/LatentSync --official-python .official/venv/bin/python
    python benchmarks/bench_local_vs_official.py --check              # same weights, same output?

Running the official code
-------------------------

The ``official-*`` configurations and ``--check`` import the official modules at run time from a checkout
given with ``--official`` (default ``.official/LatentSync``, an ignored folder: never commit it) and run them
in ``--official-python`` (default ``.official/venv/bin/python``), a venv of its own, in
``benchmarks/_official_worker.py``. Nothing of the official code is copied here. Set-up, on Python 3.11::

    git clone https://github.com/bytedance/LatentSync .official/LatentSync
    python -m venv .official/venv
    .official/venv/bin/pip install torch==2.13.0 torchvision==0.28.0 diffusers==0.32.2 \\
        huggingface-hub==0.30.2 numpy==1.26.4 einops==0.7.0 omegaconf==2.3.0 kornia==0.8.0 \\
        opencv-python-headless==4.9.0.80 imageio==2.31.1 matplotlib soundfile ffmpeg-python==0.2.0 tqdm
    .official/venv/bin/pip install --no-deps DeepCache==0.1.1   # its transformers dependency is unused

Use the same torch build as ours (here the torch 2.13.0 CPU wheel on both sides), so that both run the same
kernels. The official pins are kept where they matter for the computation (diffusers 0.32.2, DeepCache
0.1.1, einops, numpy 1.26, kornia 0.8.0); ``requirements.txt``'s torch 2.5.1 + CUDA 12.1 is replaced by the
CPU build, and torchvision by the release made for torch 2.13 (0.28.0).

How the official code is made to run on a CPU (line numbers at the official commit a229c39):

* ``scripts/inference.py`` is not run (it needs real checkpoints, a video and InsightFace); the worker builds
  what its ``main`` builds: the scheduler from the checkout's ``configs/scheduler_config.json``, the UNet with
  ``UNet3DConditionModel.from_config`` on the ``model:`` section of ``configs/unet/stage2.yaml`` (256 px; the
  ``stage2_512.yaml`` of 1.6 differs only in ``data.resolution``), random weights instead of
  ``latentsync_unet.pt``, the ``sd-vae-ft-mse`` architecture with random weights and the scaling and shift
  ``main`` sets, ``LipsyncPipeline`` and, for DeepCache, ``DeepCacheSDHelper`` on that pipeline. So:

  - ``scripts/inference.py:34``: fp16 only when ``torch.cuda.get_device_capability()[0] > 7``; the worker uses
    float32, which is what that line gives on a CPU.
  - ``scripts/inference.py:50-55``: ``Audio2Feature(device="cuda")`` (Whisper) is not built: the chunk takes
    the same random (16, 50, 384) audio features ours does, and the pipeline gets ``audio_encoder=None``.
  - ``scripts/inference.py:69-74``: ``LipsyncPipeline(...).to("cuda")``: the pipeline stays on the CPU.
* ``latentsync/pipelines/lipsync_pipeline.py:342``: ``LipsyncPipeline.__call__`` builds
  ``ImageProcessor(height, device="cuda", ...)`` (InsightFace on CUDA); ``__call__`` also reads and writes
  video files and detects faces, which are not part of a chunk. The worker builds
  ``ImageProcessor(resolution, device="cpu", mask_image=load_fixed_mask(...))`` itself (on the CPU it has no
  face detector: ``latentsync/utils/image_processor.py:49-52``) and drives one chunk the way ``__call__``'s
  loop (lines 389-458) does, through the pipeline's own methods: ``prepare_latents``,
  ``image_processor.prepare_masks_and_masked_images``, ``prepare_mask_latents``, ``prepare_image_latents``,
  ``scheduler.scale_model_input`` / ``unet`` / guidance / ``scheduler.step`` per step, ``decode_latents`` and
  ``paste_surrounding_pixels_back``, under ``torch.no_grad()`` as ``__call__`` is.
* ``latentsync/models/unet.py:508``: ``torch.cuda.empty_cache()`` runs only after loading a checkpoint file;
  not reached (and a no-op on a CPU build).

The official code itself needs no patch. Two things are done in the worker process only:

* Imports that the modules pull in but a chunk never uses are stubbed when they are not installed: ``decord``
  (``latentsync/utils/util.py:31``, video and audio reading), ``insightface``
  (``latentsync/utils/face_detector.py:1``) and ``transformers`` (``latentsync/whisper/whisper/tokenizer.py:8``,
  Whisper's text tokenizer). A stub raises if it is used.
* torchvision (imported by ``latentsync/utils/util.py:25``, ``lipsync_pipeline.py:12-13`` and
  ``image_processor.py:16``; a chunk uses its ``transforms.Resize`` and ``transforms.Normalize``): PyPI's
  wheels are built against torch's CUDA build, so with the CPU torch its C++ operators (``nms``,
  ``roi_align``, ...) do not load and ``import torchvision`` fails ("operator torchvision::nms does not
  exist") in ``torchvision/_meta_registrations.py``. While torchvision is imported, ``torch.library.
  register_fake`` skips operators that do not exist; the transforms a chunk uses are plain torch operations.

``--check`` builds our UNet and the official one with the same random weights (ours are saved and loaded
into the official model with ``strict=True``: the parameter names are the same) and prints the largest
difference of a full forward and of a cached (DeepCache / step cache) shallow step; ``--check full`` does it
for the full-size network (writes a 5 GB temporary file), the default is a small network of the same layout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CONFIGS: dict[str, dict[str, Any]] = {
    "ours-default": {"dtype": "auto", "deepcache": True, "keep_freed_memory": True},
    "ours-nocache-fp32": {"dtype": "float32", "deepcache": False},
    "ours-official": {"dtype": "float32", "deepcache": True},
    "ours-bf16": {"dtype": "bfloat16", "deepcache": True},
    "official-default": {"official": True, "dtype": "float32", "deepcache": True, "guidance": 1.5},
    "official-nocache": {"official": True, "dtype": "float32", "deepcache": False, "guidance": 1.5},
}
FRAMES = 16
VAE_FRAMES = 4  # frames the "parts" mode runs the VAE on (scaled to 16: the VAE works frame by frame)
GUIDANCE = 1.5  # inference.sh and the Gradio app (the CLI's own default is 1.0, no guidance)
CACHE_INTERVAL = 3  # DeepCacheSDHelper.set_params(cache_interval=3, cache_branch_id=0)
TINY_CHANNELS = (32, 64, 64, 64)  # --check's small network: the 1.5 layout with fewer channels
REPO = Path(__file__).resolve().parent.parent
OFFICIAL_WORKER = Path(__file__).resolve().parent / "_official_worker.py"


# --------------------------------------------------------------------------------------------- shared
# (used by both workers: nothing here may import our package, the official worker runs in another venv)


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


def _randomise(model: Any, seed: int = 0) -> Any:
    """Give every weight a value: a fresh model zeroes conv_in/conv_out/motion outputs (ours and the official
    one alike), which would make the output all zeros. Every >= 2-D all-zero parameter gets N(0, fan_in^-1/2)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim >= 2 and not param.any():
                param.normal_(0.0, param[0].numel() ** -0.5, generator=generator)
    return model


def _inputs(res: int, dtype: Any, frames: int = FRAMES) -> tuple[Any, Any, Any]:
    """Audio features (f, 50, 384), a CFG UNet input (2, 13, f, h, w) and its audio ``[zeros, audio]``."""
    import torch

    gen = torch.Generator().manual_seed(1)
    lat = res // 8
    audio = torch.randn(frames, 50, 384, generator=gen)
    sample = torch.randn(2, 13, frames, lat, lat, generator=gen).to(dtype)
    both = torch.cat([torch.zeros_like(audio), audio]).to(dtype)
    return audio, sample, both


Figures = tuple[float, float, float]  # CPU seconds (user + system), wall seconds, system seconds


def _timed() -> Figures:
    return time.process_time(), time.perf_counter(), os.times().system


def _since(start: Figures) -> Figures:
    now = _timed()
    return now[0] - start[0], now[1] - start[1], now[2] - start[2]


def _figures(measured: Figures) -> dict[str, float]:
    return {"cpu_s": measured[0], "wall_s": measured[1], "sys_s": measured[2]}


# --------------------------------------------------------------------------------------------- our worker


def _unet(dtype: Any, channels: tuple[int, ...] | None = None) -> Any:
    import torch

    from latentsync_routes.local.unet import LatentSyncUNet, UNetConfig

    torch.manual_seed(0)  # the initial weights (the values do not change the cost; --check shares them)
    model = LatentSyncUNet(UNetConfig(block_out_channels=channels) if channels else UNetConfig())
    return _randomise(model).to(dtype).eval().requires_grad_(False)


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Build the networks for one configuration, time one forward or one chunk, return the figures."""
    import torch

    from latentsync_routes.local.precision import resolve_dtype, vae_dtype

    allocator = None
    if spec.get("keep_freed_memory"):  # before any model exists, as the local route does it
        from latentsync_routes.local.allocator import keep_freed_memory

        allocator = keep_freed_memory()
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    if spec["what"] == "check":
        return _check_ours(spec)
    dtype_name = resolve_dtype(spec["dtype"], "cpu")
    dtype = getattr(torch, dtype_name)
    res = int(spec["resolution"])
    unet = _unet(dtype)
    audio, sample, both = _inputs(res, dtype)
    extra = {"dtype": dtype_name, "allocator": allocator, "torch": torch.__version__}
    if spec["what"] == "forward":
        with torch.inference_mode():
            start = _timed()
            out = unet(sample, 951, both)
            measured = _since(start)
        assert bool(torch.isfinite(out).all())
        return {**_figures(measured), **extra}
    vae = _sd_vae(getattr(torch, vae_dtype("cpu", dtype_name)))
    if spec["what"] == "parts":
        return {**_parts(spec, unet, vae, sample, both, dtype_name), **extra}
    lat = res // 8
    gen = torch.Generator().manual_seed(2)
    sampler = _sampler(unet, vae, res, int(spec["steps"]), bool(spec["deepcache"]))
    faces = torch.randint(0, 256, (FRAMES, 3, res, res), generator=gen, dtype=torch.uint8)
    noise = (torch.randn(FRAMES, 4, lat, lat, generator=gen), torch.randn(FRAMES, 4, lat, lat, generator=gen))
    init = torch.randn(1, 4, 1, lat, lat, generator=gen).expand(-1, -1, FRAMES, -1, -1)
    start = _timed()
    pixels, masked, ref = sampler.encode(faces, *noise)
    final = sampler.denoise(init, masked, ref, audio)
    synced = sampler.decode(final, pixels)
    measured = _since(start)
    assert bool(torch.isfinite(synced).all())
    return {**_figures(measured), "full_passes": sampler.full_passes, **extra}


def _sampler(unet: Any, vae: Any, res: int, steps: int, deepcache: bool) -> Any:
    import torch

    from latentsync_routes.local.sampler import ChunkSampler

    mask = torch.full((res, res), 255, dtype=torch.uint8)
    mask[int(res * 0.6) :, int(res * 0.2) : int(res * 0.8)] = 0
    return ChunkSampler(
        unet=unet, vae=vae, mask=mask.numpy(), resolution=res, num_inference_steps=steps, guidance_scale=GUIDANCE,
        deepcache=deepcache, deepcache_interval=CACHE_INTERVAL,
    )  # fmt: skip


def _parts(spec: dict[str, Any], unet: Any, vae: Any, sample: Any, both: Any, dtype_name: str) -> dict[str, Any]:
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
    with torch.inference_mode():  # warm-up at a quarter of the pixels: library set-up is not a per-step cost
        warm = torch.zeros(1, 3, res // 2, res // 2, dtype=next(vae.parameters()).dtype)
        vae.decode(vae.encode(warm).latent_dist.mean)
        unet(sample[..., : lat // 2, : lat // 2], 951, both)
    start = _timed()
    pixels, masked, ref = sampler.encode(faces, *noise)
    sampler.decode(masked.transpose(0, 1)[None], pixels)
    vae_cpu, vae_wall, vae_sys = (x * FRAMES / n for x in _since(start))

    t0, t1 = (torch.tensor(t) for t in sampler.timesteps[:2])
    cache = _StepCache(unet, CACHE_INTERVAL)
    with torch.inference_mode():
        start = _timed()
        cache(sample, t0, both, 0)  # a full pass (it also keeps the deep features)
        full = _since(start)
        start = _timed()
        out = cache(sample, t1, both, 1)  # a shallow pass on the kept features
        shallow = _since(start)
    assert bool(torch.isfinite(out).all())
    n_full = len(deepcache_full_steps(steps, CACHE_INTERVAL)) if deepcache else steps
    return _composed(steps, n_full, (vae_cpu, vae_wall, vae_sys), full, shallow)


def _composed(steps: int, n_full: int, vae: Figures, full: Figures, shallow: Figures) -> dict[str, Any]:
    """A chunk's figures from its measured parts; shared by both workers."""
    n_shallow = steps - n_full
    chunk = tuple(vae[i] + n_full * full[i] + n_shallow * shallow[i] for i in range(3))
    return {
        **_figures(chunk), "full_passes": n_full, "vae_cpu_s": vae[0], "full_cpu_s": full[0],
        "shallow_cpu_s": shallow[0],
    }  # fmt: skip


def _check_ours(spec: dict[str, Any]) -> dict[str, Any]:
    """--check, our side: random weights and inputs, our outputs, all saved for the official worker."""
    import torch

    from latentsync_routes.local.diffusion import build_scheduler
    from latentsync_routes.local.sampler import _StepCache

    full = spec["size"] == "full"
    unet = _unet(torch.float32, None if full else TINY_CHANNELS)
    res = 64 if full else 128  # latent 8x8 for the full network (it halves 3 times), 16x16 for the small one
    _, sample, both = _inputs(res, torch.float32)
    sample2 = torch.randn(sample.shape, generator=torch.Generator().manual_seed(4))
    t0, t1 = build_scheduler(20).timesteps[:2]
    cache = _StepCache(unet, CACHE_INTERVAL)
    with torch.inference_mode():
        plain = unet(sample, t0, both)
        cached = cache(sample, t0, both, 0)
        shallow = cache(sample2, t1, both, 1)
    torch.save(
        {"state_dict": unet.state_dict(), "sample": sample, "sample2": sample2, "audio": both, "plain": plain,
         "cached": cached, "shallow": shallow, "channels": list(unet.config.block_out_channels),
         "timesteps": [int(t0), int(t1)]},
        spec["path"],
    )  # fmt: skip
    return {"parameters": sum(p.numel() for p in unet.parameters()), "latent": res // 8, "torch": torch.__version__}


# --------------------------------------------------------------------------------------------- driver


def _spawn(cmd: list[str], cwd: str | None, env: dict[str, str], label: str) -> dict[str, Any]:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env, cwd=cwd)
    if done.returncode != 0:
        raise SystemExit(f"{label} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _worker_cmd(spec: dict[str, Any], args: argparse.Namespace) -> tuple[list[str], str | None]:
    """The command (and working directory) of one worker process: ours here, the official one in its venv."""
    if spec.get("official"):
        cmd = [args.official_python, str(OFFICIAL_WORKER), "--checkout", args.official, json.dumps(spec)]
        return cmd, args.official  # the official scripts run from the checkout's root
    return [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)], None


def _env() -> dict[str, str]:
    # Idle OpenMP threads sleep instead of spinning, so CPU time is work, not waiting on a busy machine.
    return {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}


def run_one(name: str, what: str, args: argparse.Namespace) -> dict[str, Any]:
    spec = {**CONFIGS[name], "what": what, "resolution": args.resolution, "steps": args.steps,
            "threads": args.threads}  # fmt: skip
    load = os.getloadavg()
    result = _spawn(*_worker_cmd(spec, args), _env(), f"{name} {what}")
    result["loadavg"] = [round(x, 2) for x in (*load, *os.getloadavg())]  # 1/5/15 min before, then after
    parts = (f"; VAE {result['vae_cpu_s']:.1f} + full {result['full_cpu_s']:.1f} + shallow "
             f"{result['shallow_cpu_s']:.2f} CPU s" if what == "parts" else "")  # fmt: skip
    passes = f", {result['full_passes']} full passes" if "full_passes" in result else ""
    print(f"  {what:7s} {name:18s} cpu {result['cpu_s']:8.1f} s  wall {result['wall_s']:8.1f} s  "
          f"({result['dtype']}{passes}{parts}; system {result['sys_s']:.1f} s of the CPU time; "
          f"load {load[0]:.2f} -> {os.getloadavg()[0]:.2f})",
          flush=True)  # fmt: skip
    return result


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} (min {min(values):.3f}, max {max(values):.3f}, n={len(values)})"


def compare(what: str, against: str, args: argparse.Namespace) -> dict[str, Any]:
    """``args.pairs`` interleaved pairs of (ours-default, ``against``), alternating which one goes first."""
    cpu_ratios, wall_ratios, ours_cpu, theirs_cpu, runs = [], [], [], [], []
    for i in range(args.pairs):
        order = ["ours-default", against] if i % 2 == 0 else [against, "ours-default"]
        got = {name: run_one(name, what, args) for name in order}
        runs.append({name: got[name] for name in order})
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
            "ours_cpu_s": ours_cpu, "theirs_cpu_s": theirs_cpu, "runs": runs}  # fmt: skip


def check(args: argparse.Namespace) -> dict[str, Any]:
    """Our UNet and the official one with the same weights on the same inputs: the largest differences."""
    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        spec = {"what": "check", "size": args.check, "path": os.path.join(tmp, "ours.pt"), "threads": args.threads}
        ours = _spawn(*_worker_cmd(spec, args), _env(), "check (ours)")
        theirs = _spawn(*_worker_cmd({**spec, "official": True}, args), _env(), "check (official)")
    result = {"size": args.check, **ours, **theirs}
    print(f"check, {args.check} network ({ours['parameters']:,} parameters, latent {ours['latent']}x{ours['latent']}, "
          f"16 frames, CFG batch 2, fp32; same weights loaded strictly into the official model):")  # fmt: skip
    for key, what in (("plain", "full forward, t=951"), ("cached", "full pass of the cache, t=951"),
                      ("shallow", "cached shallow step, t=901 (DeepCache vs our step cache)")):  # fmt: skip
        print(f"  {what:58s} max |ours - official| {result[key]['max_abs_diff']:.3g}"
              f"  (max |official| {result[key]['max_abs']:.3g})")  # fmt: skip
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--what",
        choices=["parts", "forward", "chunk", "both"],
        default="parts",
        help="parts: a chunk composed from its measured parts (default, ~1/5 of the time); "
        "chunk: whole chunks timed end to end; forward: one UNet forward; both: forward + chunk",
    )
    parser.add_argument("--against", choices=[c for c in CONFIGS if c != "ours-default"], default="ours-nocache-fp32")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved pairs per measurement (default 3)")
    parser.add_argument("--resolution", type=int, default=256, help="face resolution in px (256 = 1.5)")
    parser.add_argument("--steps", type=int, default=20, help="DDIM steps per chunk (official default 20)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--official",
        default=str(REPO / ".official" / "LatentSync"),
        help="an official LatentSync checkout (default .official/LatentSync)",
    )
    parser.add_argument(
        "--official-python",
        default=str(REPO / ".official" / "venv" / "bin" / "python"),
        help="the Python of the official code's venv (default .official/venv/bin/python)",
    )
    parser.add_argument(
        "--check",
        nargs="?",
        const="tiny",
        choices=["tiny", "full"],
        help="compare our UNet's output with the official one's on the same weights, then exit",
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()  # fmt: skip
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.check or CONFIGS[args.against].get("official"):
        for path, what in ((args.official, "--official checkout"), (args.official_python, "--official-python")):
            if not os.path.exists(path):
                parser.error(f"{what} {path} does not exist (see 'Running the official code' in --help)")
        args.official = os.path.abspath(args.official)
    import torch

    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{args.threads or torch.get_num_threads()} threads, {args.resolution} px, {args.steps} steps, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)  # fmt: skip
    if args.check:
        results: Any = check(args)
    else:
        results = [
            compare(w, args.against, args) for w in (["forward", "chunk"] if args.what == "both" else [args.what])
        ]
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)


if __name__ == "__main__":
    main()
