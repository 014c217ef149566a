"""Peak memory of the local route's streaming pipeline: a 60 s input against a 10 s one.

Run: ``python benchmarks/bench_streaming.py``. Each length runs in its own subprocess (so each peak RSS is
that run's alone) with the tiny random-weight models of ``latentsync_routes.testing.tiny_local``, a real
moving face (scikit-image's astronaut, found by MediaPipe) and a full decode -> detect -> align -> denoise ->
restore -> H.264 encode. The official pipeline holds every frame in RAM, so its memory grows with the video;
the target here is a 60 s / 10 s ratio of peak RSS <= 1.2 (the models and libraries are the same in both
runs, only the length differs).

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


def child(video: str, audio: str, output: str, resolution: int, steps: int) -> None:
    """One run in this process; prints a JSON line with the peak RSS and the timing."""
    import torch

    from latentsync_routes.local.faces import MediaPipeDetector
    from latentsync_routes.local.pipeline import sync_video
    from latentsync_routes.testing.tiny_local import tiny_mask, tiny_unet, tiny_vae, tiny_whisper

    unet, vae, whisper, mask = tiny_unet(), tiny_vae(), tiny_whisper(), tiny_mask(resolution)
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
    # Imported here, not at the top: it brings torch and diffusers, which ``--help`` does not need.
    from latentsync_routes.testing.tiny_local import write_speechy_wav

    width, height = (int(v) for v in args.size.split("x"))
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-streaming-") as tmp:
        for seconds in args.seconds:
            video = make_video(Path(tmp) / f"v{seconds:g}.mp4", seconds, (width, height))
            audio = write_speechy_wav(Path(tmp) / f"a{seconds:g}.wav", seconds)
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
