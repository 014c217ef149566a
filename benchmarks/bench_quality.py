"""Scoring cost of ``latentsync-routes evaluate``: what SyncNet scoring adds beyond decoding and detection.

Run: ``python benchmarks/bench_quality.py [--seconds 10] [--device cpu|cuda] [--threads N]``. Builds a
talking-face clip (tests/quality_media.py: the astronaut photo with a mouth drawn to the audio's energy),
then prints, side by side in one run:

* decode + MediaPipe detection + crop of the clip (context: not the scorer's cost);
* our batched scoring (:func:`latentsync_routes.quality.sync_scores`: all windows at once, the lip net
  over whole clips) with its parts (MFCC, audio net, lip net, distances);
* the official evaluation's way of computing the same numbers (20 stacked 5-frame windows a batch, one
  pairwise-distance call per window), as a reference, and the ratio of the two;

against the issue's target: scoring a 10 s clip within a few seconds of CPU (:data:`TARGET_S`). Random
weights: the cost does not depend on the values.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latentsync_routes.quality import SyncNet, mfcc, sync_scores  # noqa: E402
from latentsync_routes.quality.crop import CropSettings, MediaPipeBoxes, build_tracks  # noqa: E402
from latentsync_routes.quality.evaluate import _crops, _first_pass  # noqa: E402
from latentsync_routes.quality.scores import _distances, _lip_trunks, mfcc_windows, window_count  # noqa: E402
from tests.quality_media import talking_clip  # noqa: E402

TARGET_S = 5.0  # "a few seconds of CPU" for a 10 s clip (issue 23)


def timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - started


def official_way(frames: np.ndarray, audio: np.ndarray, model: SyncNet) -> float:
    """The official loop structure: batches of 20 stacked windows, a distance call per window."""
    features = torch.from_numpy(mfcc(audio).T.astype(np.float32))[None, None].to(model.device)
    video = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float().to(model.device)
    windows = window_count(frames.shape[0], audio.shape[0])
    im, cc = [], []
    with torch.inference_mode():
        for start in range(0, windows, 20):
            batch = range(start, min(windows, start + 20))
            im.append(model.forward_lip(torch.cat([video[:, :, i : i + 5] for i in batch])))
            cc.append(model.forward_aud(torch.cat([features[:, :, :, 4 * i : 4 * i + 20] for i in batch])))
        im_feat, cc_feat = torch.cat(im), torch.cat(cc)
        padded = torch.nn.functional.pad(cc_feat, (0, 0, 15, 15))
        dists = [torch.nn.functional.pairwise_distance(im_feat[[i]].repeat(31, 1), padded[i : i + 31])
                 for i in range(windows)]  # fmt: skip
        return float(torch.stack(dists, 1).mean(1).min())


def parts(frames: np.ndarray, audio: np.ndarray, model: SyncNet) -> dict[str, float]:
    windows = window_count(frames.shape[0], audio.shape[0])
    out: dict[str, float] = {}
    features, out["mfcc"] = timed(mfcc, audio)
    with torch.inference_mode():
        aud = torch.from_numpy(mfcc_windows(features, windows)).to(model.device)
        cc, out["audio net"] = timed(model.forward_aud, aud)
        trunk, out["lip net"] = timed(_lip_trunks, model, frames, windows)
        im = model.lip_head(trunk)
        _, out["distances"] = timed(_distances, im, cc, 15)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = SyncNet().to(args.device)
    settings = CropSettings()
    with tempfile.TemporaryDirectory() as folder:
        clip, audio = talking_clip(Path(folder) / "clip.mp4", args.seconds)
        started = time.perf_counter()
        with MediaPipeBoxes() as detector:
            boxes, cuts = _first_pass(clip, detector, settings)
        tracks = build_tracks(boxes, cuts.scenes(len(boxes)), settings)
        (frames,) = _crops(clip, tracks, settings)
        prepare = time.perf_counter() - started
    sync_scores(frames[:12], audio, model)  # warm-up
    scores, ours = timed(sync_scores, frames, audio, model)
    official_d, theirs = timed(official_way, frames, audio, model)
    breakdown = parts(frames, audio, model)
    print(f"clip: {args.seconds:g} s, {frames.shape[0]} frames, {scores.windows} windows; device {args.device}, "
          f"{torch.get_num_threads()} torch threads")  # fmt: skip
    print(f"decode + MediaPipe detection + crop (not scoring): {prepare:.2f} s")
    print(f"scoring, batched (ours): {ours:.2f} s  = {ours / args.seconds:.3f} s per second of video; "
          f"target {TARGET_S:g} s for 10 s: ratio {ours * 10 / args.seconds / TARGET_S:.2f}")  # fmt: skip
    print("  parts: " + ", ".join(f"{name} {value:.3f} s" for name, value in breakdown.items()))
    print(f"scoring, the official's loop structure: {theirs:.2f} s; ours / official = {ours / theirs:.2f}")
    print(f"same LSE-D both ways: {scores.lse_d:.5f} vs {official_d:.5f}")


if __name__ == "__main__":
    main()
