"""Peak memory of the local route's streaming pipeline: a 60 s input against a 10 s one.

Run: ``python benchmarks/bench_streaming.py``. Each length runs in its own subprocess (so each peak RSS is
that run's alone) with tiny random-weight models, a real moving face (scikit-image's astronaut, found by
MediaPipe) and a full decode -> detect -> align -> denoise -> restore -> H.264 encode. The official pipeline
holds every frame in RAM, so its memory grows with the video; the target here is a 60 s / 10 s ratio of
peak RSS <= 1.2 (the models and libraries are the same in both runs, only the length differs).

Options: ``--seconds 10 60`` (the lengths), ``--size 320x240`` (frame size), ``--resolution 128`` (face crop;
1.5 uses 256, smaller keeps the run short on a laptop CPU), ``--steps 1``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

RATIO_TARGET = 1.2


def make_video(path: Path, seconds: float, size: tuple[int, int]) -> Path:
    """The astronaut's face moving about (rotation and shift per frame), H.264 at 25 fps."""
    import cv2
    from skimage import data

    image = data.astronaut()
    width, height = size
    scale = 0.8 * height / 192
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "20", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for k in range(int(seconds * 25)):
            matrix = cv2.getRotationMatrix2D((235, 140), 3 * np.sin(k / 3), scale)
            matrix[0, 2] += width / 2 - 235 + 6 * np.sin(k / 4)
            matrix[1, 2] += height / 2 - 140 + 4 * np.cos(k / 5)
            frame = cv2.warpAffine(image, matrix, (width, height), borderValue=(110, 110, 110))
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_wav(path: Path, seconds: float) -> Path:
    rate = 16000
    t = np.arange(int(seconds * rate)) / rate
    f0 = 110 + 40 * np.sin(2 * np.pi * 0.7 * t)
    voice = sum(np.sin(2 * np.pi * np.cumsum(f0 * h) / rate) / h for h in range(1, 6))
    samples = (0.2 * voice * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * 32767 * 0.5).astype(np.int16)
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        stream.layout = "mono"
        for start in range(0, samples.size, 4096):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + 4096], format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def child(video: str, audio: str, output: str, resolution: int, steps: int) -> None:
    """One run in this process; prints a JSON line with the peak RSS and the timing."""
    import torch
    from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

    from latentsync_routes.local.audio import WhisperDims, WhisperFeatures
    from latentsync_routes.local.faces import MediaPipeDetector
    from latentsync_routes.local.pipeline import sync_video
    from latentsync_routes.local.unet import LatentSyncUNet

    torch.manual_seed(0)
    unet = LatentSyncUNet.from_config({"block_out_channels": [32, 64, 64, 64], "cross_attention_dim": 64}).eval()
    with torch.no_grad():  # non-zero everywhere (a fresh model zeroes some layers), so the model does real work
        for module in unet.modules():
            for name, param in module.named_parameters(recurse=False):
                is_norm = isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)) and name == "weight"
                scale = 0.05 if param.ndim >= 2 or is_norm else 0.02
                param.copy_(float(is_norm) + scale * torch.randn_like(param))
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16), layers_per_block=1, latent_channels=4, norm_num_groups=8,
    ).eval()  # fmt: skip
    whisper = WhisperFeatures(WhisperDims(80, 1500, 64, 2, 4)).eval()
    mask = np.full((resolution, resolution), 255, np.uint8)
    mask[int(resolution * 0.58) : int(resolution * 0.94), int(resolution * 0.16) : int(resolution * 0.84)] = 0
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with MediaPipeDetector() as detector:
        stats = sync_video(
            video, audio, output, unet=unet, vae=vae, whisper=whisper, mask=mask, detector=detector,
            resolution=resolution, num_inference_steps=steps, generator=torch.Generator().manual_seed(0),
            on_missing_face="passthrough",
        )  # fmt: skip
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "peak_rss_mb": peak_kb / 1024, "models_loaded_rss_mb": baseline_kb / 1024,
        "seconds": time.perf_counter() - started, "frames": stats.frames_written, "chunks": stats.chunks,
        "missing_faces": len(stats.missing_faces),
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--child", nargs=3, metavar=("VIDEO", "AUDIO", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, resolution=args.resolution, steps=args.steps)
        return
    width, height = (int(v) for v in args.size.split("x"))
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as tmp:
        for seconds in args.seconds:
            video = make_video(Path(tmp) / f"v{seconds:g}.mp4", seconds, (width, height))
            audio = make_wav(Path(tmp) / f"a{seconds:g}.wav", seconds)
            output = Path(tmp) / f"o{seconds:g}.mp4"
            command = [sys.executable, __file__, "--child", str(video), str(audio), str(output),
                       "--resolution", str(args.resolution), "--steps", str(args.steps)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.exit(f"run of {seconds:g} s failed:\n{done.stderr[-3000:]}")
            results[seconds] = json.loads(done.stdout.strip().splitlines()[-1])
            r = results[seconds]
            print(f"{seconds:>5g} s input: peak RSS {r['peak_rss_mb']:7.1f} MB (models loaded: "
                  f"{r['models_loaded_rss_mb']:.1f} MB), {r['frames']} frames in {r['chunks']} chunks, "
                  f"{r['seconds']:.1f} s wall, {r['missing_faces']} frames without a face")  # fmt: skip
    short, long = min(results), max(results)
    if short != long:
        ratio = results[long]["peak_rss_mb"] / results[short]["peak_rss_mb"]
        verdict = "OK" if ratio <= RATIO_TARGET else "ABOVE TARGET"
        print(f"peak RSS ratio {long:g} s / {short:g} s = {ratio:.3f} (target <= {RATIO_TARGET}) {verdict}")


if __name__ == "__main__":
    main()
