"""Time one forward of the full-size LatentSync UNet (random weights) on a 16-frame chunk.

One call is one denoising step for one chunk with classifier-free guidance (batch 2: zero audio and
real audio), which is what the pipeline runs 20 times per 16 frames of output video.

    python benchmarks/bench_unet.py                # CPU, fp32, 256 px (latent 32x32)
    python benchmarks/bench_unet.py --cuda         # CUDA, fp16, 256 px and 512 px, with peak VRAM
    python benchmarks/bench_unet.py --tiny-clips   # the whole streaming pipeline with the tiny test models

Numbers are for random weights; the UNet's cost does not depend on the weight values.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import torch

from latentsync_routes.local.unet import LatentSyncUNet, UNetConfig

FRAMES = 16
CFG_BATCH = 2
AUDIO_TOKENS, AUDIO_DIM = 50, 384
TIMESTEP = 951  # first of the 20 DDIM steps
STEPS_PER_CHUNK = 20


def peak_rss_gib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**30 if platform.system() == "Darwin" else peak / 2**20  # bytes on macOS, KiB on Linux


def build_unet(device: torch.device, dtype: torch.dtype) -> LatentSyncUNet:
    """Fresh full-size model with every weight non-zero (a fresh model zeroes its in/out convs and
    motion-module output projections, which would make the output trivially zero)."""
    with torch.device(device):
        model = LatentSyncUNet(UNetConfig())
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim >= 2 and not param.any():
                fan_in = param[0].numel()
                param.normal_(0.0, fan_in**-0.5, generator=generator)
    return model.to(dtype).eval().requires_grad_(False)


def make_inputs(resolution: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, int, torch.Tensor]:
    latent = resolution // 8
    generator = torch.Generator(device=device).manual_seed(1)
    sample = torch.randn(CFG_BATCH, 13, FRAMES, latent, latent, generator=generator, device=device, dtype=dtype)
    audio = torch.randn(CFG_BATCH * FRAMES, AUDIO_TOKENS, AUDIO_DIM, generator=generator, device=device, dtype=dtype)
    audio[:FRAMES] = 0  # the unconditional half of classifier-free guidance
    return sample, TIMESTEP, audio


def bench_cpu(resolution: int, repeats: int) -> None:
    device, dtype = torch.device("cpu"), torch.float32
    print(
        f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, fp32"
    )
    start = time.perf_counter()
    model = build_unet(device, dtype)
    print(
        f"  build (random init)           {time.perf_counter() - start:7.1f} s   RSS peak so far "
        f"{peak_rss_gib():.2f} GiB"
    )
    sample, timestep, audio = make_inputs(resolution, device, dtype)
    for i in range(repeats):
        start = time.perf_counter()
        with torch.inference_mode():
            out = model(sample, timestep, audio)
        seconds = time.perf_counter() - start
        assert torch.isfinite(out).all()
        print(
            f"  forward {resolution}px run {i + 1}          {seconds:7.1f} s   "
            f"(~{seconds * STEPS_PER_CHUNK / 60:.1f} min per 16-frame chunk at {STEPS_PER_CHUNK} steps)"
        )
    print(f"  peak RSS                      {peak_rss_gib():7.2f} GiB")


def bench_cuda(resolutions: list[int], repeats: int) -> None:
    device, dtype = torch.device("cuda"), torch.float16
    print(f"CUDA: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, fp16")
    model = build_unet(device, dtype)
    torch.cuda.synchronize()
    weights = torch.cuda.memory_allocated(device)
    print(f"  weights resident              {weights / 2**30:7.2f} GiB")
    for resolution in resolutions:
        sample, timestep, audio = make_inputs(resolution, device, dtype)
        with torch.inference_mode():
            model(sample, timestep, audio)  # warm-up: kernel selection, allocator growth
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            for _ in range(repeats):
                out = model(sample, timestep, audio)
            torch.cuda.synchronize()
        seconds = (time.perf_counter() - start) / repeats
        assert torch.isfinite(out).all()
        peak = torch.cuda.max_memory_allocated(device)
        print(
            f"  forward {resolution}px (mean of {repeats})   {seconds * 1000:7.1f} ms  peak VRAM "
            f"{peak / 2**30:.2f} GiB  (~{seconds * STEPS_PER_CHUNK:.1f} s per 16-frame chunk)"
        )


def bench_tiny_clips(seconds_list: list[float], resolutions: list[int]) -> None:
    """Time ``sync_video`` (decode, align, Whisper, denoise, VAE, restore, encode) with the tiny random models
    of ``latentsync_routes.testing.tiny_local``, at the route's defaults: 20 DDIM steps, the step cache, the
    CPU's default dtype. Faces come from a fixed-anchor detector, so detection (MediaPipe) is not counted."""
    import tempfile
    from pathlib import Path

    import numpy as np

    from latentsync_routes.local.pipeline import sync_video
    from latentsync_routes.testing.media import write_test_video
    from latentsync_routes.testing.tiny_local import tiny_models, write_speechy_wav

    anchors = np.array([[22.0, 26.0], [42.0, 26.0], [32.0, 40.0]])
    print(f"tiny models, torch {torch.__version__}, {torch.get_num_threads()} threads, 20 steps, step cache on")
    with tempfile.TemporaryDirectory() as folder:
        for resolution in resolutions:
            models = tiny_models("1.5" if resolution == 256 else "1.6")
            for seconds in seconds_list:
                video = write_test_video(Path(folder) / f"v{seconds}.mp4", seconds=seconds)
                audio = write_speechy_wav(Path(folder) / f"a{seconds}.wav", seconds)
                cpu, wall = time.process_time(), time.perf_counter()
                stats = sync_video(
                    video, audio, Path(folder) / "out.mp4", unet=models.unet, vae=models.vae,
                    whisper=models.whisper, mask=models.mask, detector=lambda frame: anchors,
                    resolution=resolution, deepcache=True, generator=torch.Generator().manual_seed(0),
                )  # fmt: skip
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                print(
                    f"  {resolution} px, {seconds:g} s clip ({stats.frames_written} frames, {models.dtype}): "
                    f"{cpu:7.1f} CPU s, {wall:7.1f} s wall",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuda", action="store_true", help="benchmark on CUDA in fp16 at 256 and 512 px")
    parser.add_argument("--resolution", type=int, default=256, help="CPU face resolution in px (default 256)")
    parser.add_argument("--repeats", type=int, default=None, help="timed forwards (default: CPU 1, CUDA 5)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--tiny-clips", action="store_true", help="time 2 s and 7 s clips with the tiny models")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tiny_clips:
        bench_tiny_clips([2.0, 7.0], [256, 512])
    elif args.cuda:
        if not torch.cuda.is_available():
            parser.exit(2, "--cuda given but torch sees no CUDA device\n")
        bench_cuda([256, 512], args.repeats or 5)
    else:
        bench_cpu(args.resolution, args.repeats or 1)


if __name__ == "__main__":
    main()
