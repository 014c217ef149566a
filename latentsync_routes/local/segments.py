"""One long video over several workers: split at chunk boundaries, run the segments anywhere, join them.

The pipeline's unit of model work is one 16-frame chunk (:func:`~.pipeline.sync_chunk`), and given its
inputs a chunk does not depend on any other chunk. What *does* span the whole video is gathered once, in a
light first pass (:func:`plan_segments`), and handed to every segment, so a segment's frames are the frames
:func:`~.pipeline.sync_video` makes for the same chunks:

* **audio features** — Whisper's log-mel is normalised over the whole file, so features of a cut file would
  differ; the plan carries the whole file's features, and a segment takes its chunks' windows from them.
* **face alignment** — the aligner smooths the crop across frames (a moving average of the anchor bias), in
  video order. The plan runs that smoothing over every frame's anchors once and keeps each frame's 2x3
  matrix; a segment warps its frames with those matrices (the face :meth:`FaceAligner.align` gave, exactly).
* **looping** — the output follows the audio; a shorter video is ping-ponged (or looped). The plan keeps the
  global order; a segment plays the video the same way and takes the chunks in its range.
* **noise** — one initial noise frame is shared by every chunk, and each chunk's posterior noise is drawn in
  chunk order from the one seeded generator. A segment replays the draws of the chunks before it (cheap CPU
  ``randn``) so its chunks get the numbers they get in a one-worker run.

The segments' raw frames are encoded once by :func:`join_segments`, with the one-worker writer and in the
same 16-frame steps, so the joined file decodes to the one-worker file's frames (encoding segments apart
and concatenating them would not: each H.264 segment would start its own group of pictures).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Generator, Iterable
from contextlib import AbstractContextManager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .align import FaceAligner
from .chunk_run import CHUNK_FRAMES, ChunkRun
from .errors import LocalRunError
from .pipeline import LoopMode, MissingFacePolicy, Progress, first_pass
from .sampler import DEEPCACHE_INTERVAL, ChunkSampler, Noise

__all__ = ["SegmentPlan", "join_segments", "plan_segments", "run_segment", "split_chunks", "sync_video_segmented"]


@dataclass(frozen=True)
class SegmentPlan:
    """Everything a segment needs from the whole video; small enough to ship to every worker.

    ``features`` (L, layers, D) float32 CPU: the whole audio's Whisper features. ``matrices``: the smoothed
    crop matrix of each video frame (None without a face). ``index``: the source video frame of each output
    frame. ``bounds``: the chunk range ``[first, end)`` of each segment.
    """

    features: torch.Tensor
    total: int
    num_video: int
    index: np.ndarray
    has_face: np.ndarray
    matrices: tuple[np.ndarray | None, ...]
    missing_faces: tuple[int, ...]
    loop_mode: LoopMode
    resolution: int
    bounds: tuple[tuple[int, int], ...]

    @property
    def chunks(self) -> int:
        return -(-self.total // CHUNK_FRAMES)

    def frames_of(self, number: int) -> tuple[int, int]:
        """The output frames ``[start, end)`` of segment ``number``."""
        first, end = self.bounds[number]
        return first * CHUNK_FRAMES, min(end * CHUNK_FRAMES, self.total)

    def faces_of(
        self, aligner: FaceAligner, start: int, frames: np.ndarray
    ) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
        """Faces and matrices of the output frames ``start ..`` (None without a face).

        Each frame is warped with its video frame's planned matrix: the face :meth:`FaceAligner.align` gave
        it in a one-worker run, whichever segment it falls in.
        """
        src = self.index[start : start + len(frames)].tolist()
        matrices = [self.matrices[j] for j in src]
        faces = [
            aligner.warp_face(frame, matrix) if self.has_face[j] and matrix is not None else None
            for frame, j, matrix in zip(frames, src, matrices, strict=True)
        ]
        return faces, matrices


def split_chunks(chunks: int, segments: int) -> tuple[tuple[int, int], ...]:
    """``chunks`` chunks in at most ``segments`` contiguous, near-equal ranges (none empty)."""
    if chunks <= 0:
        raise ValueError("there are no chunks to split")
    if segments <= 0:
        raise ValueError(f"segments must be at least 1, got {segments}")
    count = min(segments, chunks)
    edges = [round(k * chunks / count) for k in range(count + 1)]
    return tuple((edges[k], edges[k + 1]) for k in range(count))


def plan_segments(
    video_path: str | Path,
    audio_path: str | Path,
    *,
    whisper: Any,
    detector: Callable[[np.ndarray], np.ndarray | None],
    resolution: int,
    segments: int,
    loop_mode: LoopMode = "pingpong",
    on_missing_face: MissingFacePolicy = "error",
    progress: Progress | None = None,
) -> SegmentPlan:
    """The whole-video pass: audio features, face anchors, smoothed matrices, looping order, the split.

    The same steps, in the same order, as the start of :func:`~.pipeline.sync_video`; a missing face under
    ``on_missing_face="error"`` fails here, before any segment spends model time.
    """
    from .audio import load_audio
    from .video import FrameReader

    samples = load_audio(audio_path)
    work = Path(tempfile.mkdtemp(prefix="latentsync-plan-"))
    try:
        reader = FrameReader(video_path, spill_dir=work)
        job = first_pass(reader, samples, whisper=whisper, detector=detector, loop_mode=loop_mode,
                         on_missing_face=on_missing_face, progress=progress)  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    has_face = job.has_face
    aligner = FaceAligner(resolution)
    # sync_video aligns each video frame once, in order, the first time the output reaches it; the
    # smoothing state advances only on frames with a face. Same order here, matrices only.
    matrices = tuple(aligner.transform(job.anchors[j], smooth=True) if has_face[j] else None
                     for j in range(job.num_video))  # fmt: skip
    return SegmentPlan(
        features=job.features, total=job.total, num_video=job.num_video, index=job.index, has_face=has_face,
        matrices=matrices, missing_faces=tuple(job.missing_faces), loop_mode=loop_mode, resolution=resolution,
        bounds=split_chunks(-(-job.total // CHUNK_FRAMES), segments),
    )  # fmt: skip


def run_segment(
    plan: SegmentPlan,
    number: int,
    video_path: str | Path,
    *,
    unet: torch.nn.Module,
    vae: Any,
    mask: Any,
    resolution: int,
    seed: int,
    num_inference_steps: int = 20,
    guidance_scale: float = 1.5,
    deepcache: bool = False,
    deepcache_interval: int = DEEPCACHE_INTERVAL,
    exclusive: AbstractContextManager[Any] | None = None,
    should_stop: Callable[[], None] | None = None,
) -> np.ndarray:
    """The restored output frames (n, H, W, 3) uint8 of segment ``number``, not yet encoded.

    ``seed`` seeds a CPU generator exactly as the local route does for a one-worker run.
    """
    if resolution != plan.resolution:
        raise ValueError(f"the plan was made for {plan.resolution} px faces, the models work at {resolution} px")
    first, end = plan.bounds[number]
    sampler = ChunkSampler(
        unet=unet, vae=vae, mask=mask, resolution=resolution, num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale, deepcache=deepcache, deepcache_interval=deepcache_interval,
    )  # fmt: skip
    run = ChunkRun(
        sampler, FaceAligner(resolution), plan.features, Noise(None, None, torch.Generator().manual_seed(int(seed)))
    )
    for chunk in range(first):  # replay the earlier chunks' draws: the generator is then where it is there
        run.skip(chunk, min(CHUNK_FRAMES, plan.total - chunk * CHUNK_FRAMES))
    out: list[np.ndarray] = []
    with closing(_frames_of_chunks(plan, video_path, first, end)) as chunks:
        for chunk, frames in chunks:
            if should_stop is not None:
                should_stop()
            faces, matrices = plan.faces_of(run.aligner, chunk * CHUNK_FRAMES, frames)
            result = run.run(chunk, list(frames), faces, matrices, exclusive=exclusive)
            out.extend(np.asarray(frame, dtype=np.uint8) for frame in result.frames)
    expected = plan.frames_of(number)
    if len(out) != expected[1] - expected[0]:
        raise LocalRunError(f"segment {number} made {len(out)} frames, expected {expected[1] - expected[0]}")
    return np.stack(out)


def _frames_of_chunks(
    plan: SegmentPlan, video_path: str | Path, first: int, end: int
) -> Generator[tuple[int, np.ndarray], None, None]:
    """Chunks ``first .. end - 1`` of the output as (chunk number, frames), decoded as the one-worker run does.

    The chunks before ``first`` are decoded too and dropped: that keeps the reader's looping (and its spill
    file) where :func:`~.pipeline.sync_video` has it, so the frames are the same.
    """
    from .video import FrameReader

    work = Path(tempfile.mkdtemp(prefix="latentsync-segment-"))
    chunks = FrameReader(video_path, spill_dir=work).iter_chunks(CHUNK_FRAMES, plan.total, loop=plan.loop_mode)
    try:
        for chunk, frames in enumerate(chunks):
            if chunk >= end:
                break
            if chunk >= first:
                yield chunk, frames
    finally:
        chunks.close()
        shutil.rmtree(work, ignore_errors=True)


def join_segments(
    plan: SegmentPlan, parts: Iterable[np.ndarray], output_path: str | Path, audio_path: str | Path, *, crf: int = 18
) -> Path:
    """Encode the segments' frames, in order, with the audio: the file a one-worker run writes.

    ``parts`` may be a generator that waits for each segment in turn, so only the segments that finished
    early are held in memory. Frames go to the writer in the pipeline's 16-frame steps.
    """
    from .video import VideoWriter

    with VideoWriter(output_path, audio_path=audio_path, crf=crf) as writer:
        for part in parts:
            for start in range(0, len(part), CHUNK_FRAMES):
                writer.write_chunk(part[start : start + CHUNK_FRAMES])
        written = writer.frames_written
        if written != plan.total:  # leaving the block with an error aborts the file: nothing appears
            raise LocalRunError(f"joined {written} frames but the audio needs {plan.total}")
    return Path(output_path)


def sync_video_segmented(
    video_path: str | Path,
    audio_path: str | Path,
    output_path: str | Path,
    *,
    unet: torch.nn.Module,
    vae: Any,
    whisper: Any,
    mask: Any,
    detector: Callable[[np.ndarray], np.ndarray | None],
    segments: int,
    seed: int,
    resolution: int = 256,
    num_inference_steps: int = 20,
    guidance_scale: float = 1.5,
    loop_mode: LoopMode = "pingpong",
    on_missing_face: MissingFacePolicy = "error",
    deepcache: bool = False,
) -> Path:
    """Plan, run every segment here in turn, join: the split path in one process (the reference for tests,
    and what a worker pool does with the segments spread out)."""
    plan = plan_segments(video_path, audio_path, whisper=whisper, detector=detector, resolution=resolution,
                         segments=segments, loop_mode=loop_mode, on_missing_face=on_missing_face)  # fmt: skip
    parts = (
        run_segment(plan, k, video_path, unet=unet, vae=vae, mask=mask, resolution=resolution, seed=seed,
                    num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, deepcache=deepcache)
        for k in range(len(plan.bounds))
    )  # fmt: skip
    return join_segments(plan, parts, output_path, audio_path)
