"""The LatentSync 1.5/1.6 inference pipeline: two ways to drive the per-chunk core of :mod:`.sampler`.

* :func:`sync_frames` works on frames already decoded and anchors already found, in memory. It is the parity
  surface: the official pipeline's numbers, step for step, checked against the goldens.
* :func:`sync_video` streams a file: decode, align, denoise, restore and encode one 16-frame chunk at a
  time, so memory stays flat however long the video is.

Both feed :func:`sync_chunk` through one :class:`~.chunk_run.ChunkRun` (the same audio windows, the random
numbers drawn in the same order), and so give the same frames for the same inputs and seed.

What the official pipeline does, and this module keeps (order of operations matters for parity):

1. The audio's Whisper features decide the output length (``floor(L/2) + 2`` frames); a shorter video is
   ping-ponged (forward, backward, ..., turning frames repeated), a longer one is cut.
2. Faces are aligned once per *video* frame, in order (the aligner smooths across frames); looped output
   frames reuse the face and matrix of their source frame.
3. One initial noise frame ``(1, 4, 1, h, w)`` is drawn and repeated over every output frame.
4. Per chunk of 16 output frames: the masked faces, then the full faces, are VAE-encoded and a posterior
   *sample* is taken (random numbers: masked first, then reference); DDIM with eta 0 runs with classifier-free
   guidance whose unconditional branch is zeroed audio; the result is decoded and only the mouth region is
   taken from it, the rest from the input face; the face is warped back into the frame.

Deliberate differences (see docs/local.md): faces without a detection can pass through unchanged instead
of failing the job; noise is drawn on the CPU from a ``torch.Generator`` so a seed reproduces across
devices; decoded faces leave the GPU right after each chunk; detection runs as a first, light pass so a
missing face fails the job before any GPU time is spent.
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import torch

from .align import FaceAligner
from .audio import WhisperFeatures, chunk_count
from .chunk_run import CHUNK_FRAMES, FPS, ChunkRun, audio_windows, whisper_features
from .errors import LocalRunError, MissingFace
from .sampler import DEEPCACHE_INTERVAL, ChunkResult, ChunkSampler, Noise, deepcache_full_steps, sync_chunk

if TYPE_CHECKING:
    from .video_writer import VideoWriter

__all__ = [
    "CHUNK_FRAMES",
    "ChunkResult",
    "ChunkRun",
    "ChunkSampler",
    "FirstPass",
    "StreamStats",
    "SyncResult",
    "audio_windows",
    "deepcache_full_steps",
    "first_pass",
    "loop_indices",
    "sync_chunk",
    "sync_frames",
    "sync_video",
    "whisper_features",
]

log = logging.getLogger(__name__)

SCAN_SHARE = 0.05  # part of the progress bar given to the face-detection pass

MissingFacePolicy = Literal["error", "passthrough"]
LoopMode = Literal["pingpong", "loop"]
Progress = Callable[[str, float | None], None]
StepCallback = Callable[[int, int, torch.Tensor], None]


# --------------------------------------------------------------------------------------------- small rules


def loop_indices(num_video: int, num_output: int, mode: LoopMode = "pingpong") -> np.ndarray:
    """Source video frame of every output frame.

    The output follows the audio. A longer video is cut. A shorter one is played forward, backward, forward...
    with the turning frames repeated (``pingpong``, the official behaviour) or restarted (``loop``).
    """
    if num_video <= 0:
        raise ValueError("the video has no frames")
    if num_output <= num_video:
        return np.arange(num_output, dtype=np.int64)
    if mode == "loop":
        return np.arange(num_output, dtype=np.int64) % num_video
    if mode != "pingpong":
        raise ValueError(f"loop mode must be 'pingpong' or 'loop', got {mode!r}")
    forward = np.arange(num_video, dtype=np.int64)
    passes = -(-num_output // num_video)
    order = np.concatenate([forward if k % 2 == 0 else forward[::-1] for k in range(passes)])
    return order[:num_output]


def _missing_face(frame_index: int, where: str) -> MissingFace:
    return MissingFace(frame_index, FPS, where)


# --------------------------------------------------------------------------------------------- in memory


@dataclass
class SyncResult:
    """What :func:`sync_frames` returns.

    ``frames`` (M, H, W, 3) uint8; ``latents`` the final latents per chunk (None for a chunk without any face);
    ``synced_faces`` (M, 3, R, R) float32, the pasted faces before restore, not clamped (NaN for face-less
    frames, which were not pasted); ``loop_index`` the source video frame of each output frame.
    """

    frames: np.ndarray
    latents: list[torch.Tensor | None]
    synced_faces: torch.Tensor
    loop_index: np.ndarray
    has_face: np.ndarray
    timesteps: list[int] = field(default_factory=list)


def _frames_and_anchors(frames: Any, points: Any) -> tuple[np.ndarray, np.ndarray]:
    """The caller's frames and anchors as numpy arrays, shapes checked before any model work."""
    video = np.asarray(frames.cpu() if isinstance(frames, torch.Tensor) else frames)
    anchors = np.asarray(points.cpu() if isinstance(points, torch.Tensor) else points, dtype=np.float64)
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
        raise ValueError(f"frames must be (N, H, W, 3) uint8, got {video.shape} {video.dtype}")
    if anchors.shape != (video.shape[0], 3, 2):
        raise ValueError(f"points must be ({video.shape[0]}, 3, 2), got {anchors.shape}")
    return video, anchors


def _align_frames(
    aligner: FaceAligner, video: np.ndarray, anchors: np.ndarray, count: int, policy: MissingFacePolicy
) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
    """Faces and matrices of the first ``count`` video frames, aligned once each, in order (the aligner smooths
    across frames); None for a frame without anchors, unless ``policy`` makes that an error."""
    faces: list[np.ndarray | None] = []
    matrices: list[np.ndarray | None] = []
    for i in range(count):
        if not np.isfinite(anchors[i]).all():
            if policy == "error":
                raise _missing_face(i, "video")
            faces.append(None)
            matrices.append(None)
            continue
        face, matrix = aligner.align(video[i], anchors[i])
        faces.append(face)
        matrices.append(matrix)
    return faces, matrices


def sync_frames(
    frames: Any,
    points: Any,
    samples: Any,
    *,
    unet: torch.nn.Module,
    vae: Any,
    whisper: WhisperFeatures,
    mask: Any,
    resolution: int = 256,
    num_inference_steps: int = 20,
    guidance_scale: float = 1.5,
    init_noise: Any | None = None,
    posterior_noise: Sequence[tuple[Any, Any]] | None = None,
    generator: torch.Generator | None = None,
    loop_mode: LoopMode = "pingpong",
    on_missing_face: MissingFacePolicy = "error",
    deepcache: bool = False,
    deepcache_interval: int = DEEPCACHE_INTERVAL,
    step_callback: StepCallback | None = None,
    progress: Progress | None = None,
) -> SyncResult:
    """Lip-sync decoded frames to audio; the official pipeline's numbers (see the module docstring).

    ``frames`` (N, H, W, 3) uint8 RGB at 25 fps; ``points`` (N, 3, 2) rounded anchors (a NaN row marks a frame
    without a face); ``samples`` mono float32 16 kHz audio. ``init_noise`` (1, 4, 1, h, w) and
    ``posterior_noise`` ([(masked, ref)] per chunk, each (f, 4, h, w)) replace the random draws; otherwise
    they come from ``generator`` (CPU). ``step_callback(chunk, step, latents)`` sees every DDIM step.
    """
    video, anchors = _frames_and_anchors(frames, points)
    features = whisper_features(whisper, samples)
    total = chunk_count(features.shape[0], FPS)
    index = loop_indices(video.shape[0], total, loop_mode)
    aligner = FaceAligner(resolution)
    faces, matrices = _align_frames(aligner, video, anchors, min(video.shape[0], total), on_missing_face)
    sampler = ChunkSampler(
        unet=unet, vae=vae, mask=mask, resolution=resolution, num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale, deepcache=deepcache, deepcache_interval=deepcache_interval,
    )  # fmt: skip
    run = ChunkRun(sampler, aligner, features, Noise(init_noise, posterior_noise, generator))

    out_frames: list[np.ndarray] = []
    latents: list[torch.Tensor | None] = []
    synced_all = torch.full((total, 3, resolution, resolution), float("nan"))
    for chunk, start in enumerate(range(0, total, CHUNK_FRAMES)):
        src = index[start : start + CHUNK_FRAMES]
        on_step = None if step_callback is None else functools.partial(step_callback, chunk)
        result = run.run(
            chunk, [video[j] for j in src], [faces[j] for j in src], [matrices[j] for j in src], on_step=on_step
        )
        out_frames.extend(result.frames)
        latents.append(result.latents)
        if result.synced is not None:
            for i, j in enumerate(src):
                if faces[j] is not None:
                    synced_all[start + i] = result.synced[i]
        if progress is not None:
            progress(f"chunk {chunk + 1}/{-(-total // CHUNK_FRAMES)}", (start + len(src)) / total)
    has_face = np.array([faces[j] is not None for j in index], dtype=bool)
    return SyncResult(np.stack(out_frames), latents, synced_all, index, has_face, sampler.timesteps)


# --------------------------------------------------------------------------------------------- streaming


@dataclass
class StreamStats:
    """What :func:`sync_video` did: frames written, chunks, frames without a face (video frame numbers)."""

    output_path: Path
    frames_written: int
    video_frames: int
    chunks: int
    missing_faces: list[int]
    unet_passes: int
    seconds: float


@dataclass(frozen=True)
class FirstPass:
    """What the light first pass learns before any model work: what spans the whole job.

    ``features``: the whole audio's Whisper features; ``anchors`` (n, 3, 2): the face anchors of the video
    frames the output uses (NaN without a face); ``index``: the source video frame of each output frame.
    """

    features: torch.Tensor
    anchors: np.ndarray
    index: np.ndarray

    @property
    def total(self) -> int:
        """Output frames: the audio decides."""
        return len(self.index)

    @property
    def num_video(self) -> int:
        """Video frames read: exact when fewer than :attr:`total`, else only the first ``total`` matter."""
        return int(self.anchors.shape[0])

    @property
    def has_face(self) -> np.ndarray:
        return cast("np.ndarray", np.isfinite(self.anchors).all(axis=(1, 2)))

    @property
    def missing_faces(self) -> list[int]:
        """Video frame numbers without a face."""
        return cast("list[int]", np.flatnonzero(~self.has_face).tolist())


def first_pass(
    reader: Any,
    samples: Any,
    *,
    whisper: WhisperFeatures,
    detector: Callable[[np.ndarray], np.ndarray | None],
    loop_mode: LoopMode,
    on_missing_face: MissingFacePolicy,
    progress: Progress | None,
) -> FirstPass:
    """The audio's features, then every used video frame's anchors, then the looping order: the start of both
    :func:`sync_video` and a split run's plan (:func:`.segments.plan_segments`), so both see the same job."""
    features = whisper_features(whisper, samples)
    total = chunk_count(features.shape[0], FPS)
    anchors = _scan_faces(reader, total, detector, on_missing_face, progress)
    return FirstPass(features, anchors, loop_indices(anchors.shape[0], total, loop_mode))


def _scan_faces(
    reader: Any,
    total: int,
    detector: Callable[[np.ndarray], np.ndarray | None],
    policy: MissingFacePolicy,
    progress: Progress | None,
) -> np.ndarray:
    """Anchors (n, 3, 2) of the first ``min(N, total)`` video frames, NaN where no face was found.

    This pass holds one frame at a time and keeps only the anchors (48 bytes a frame), so a missing face
    under the "error" policy stops the job before any GPU time is spent, and the exact frame count is known
    before the looping order is fixed.
    """
    anchors: list[np.ndarray] = []
    nan = np.full((3, 2), np.nan)
    estimate = max(min(reader.estimated_frame_count, total), 1)
    frames = reader.iter_frames()
    try:
        for i, frame in enumerate(frames):
            if i == total:
                break
            found = detector(frame)
            if found is None:
                if policy == "error":
                    raise _missing_face(i, "video")
                anchors.append(nan)
            else:
                anchors.append(np.asarray(found, dtype=np.float64).reshape(3, 2))
            if progress is not None and i % FPS == 0:
                progress(f"finding faces: frame {i + 1}", SCAN_SHARE * min(i / estimate, 1.0))
    finally:
        frames.close()  # release the decoder now, not when the generator is collected
    if not anchors:
        raise LocalRunError("the video has no frames")
    return np.stack(anchors)


class _StreamedFaces:
    """The faces of frames as the streaming reader yields them, each video frame aligned once.

    The first time the output reaches a video frame (in order, during the first forward pass) it is aligned,
    which advances the aligner's smoothing; a looped repeat is warped with the matrix kept then, so it gets
    the same face and the smoothing is untouched. Only the 2x3 matrices are kept per video frame.
    """

    def __init__(self, aligner: FaceAligner, job: FirstPass) -> None:
        self.aligner, self.anchors, self.index = aligner, job.anchors, job.index
        self.has_face = job.has_face
        self.matrices: list[np.ndarray | None] = [None] * job.num_video
        self.seen = 0  # video frames aligned so far

    def of_chunk(self, start: int, frames: np.ndarray) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
        """Faces and matrices of the output frames ``start ..`` (None where a frame has no face)."""
        src = self.index[start : start + len(frames)]
        faces: list[np.ndarray | None] = []
        for frame, j in zip(frames, src.tolist(), strict=True):
            face = None
            if j == self.seen:
                self.seen += 1
                if self.has_face[j]:
                    face, self.matrices[j] = self.aligner.align(frame, self.anchors[j])
            elif self.has_face[j]:
                matrix = self.matrices[j]
                face = None if matrix is None else self.aligner.warp_face(frame, matrix)
            faces.append(face)
        return faces, [self.matrices[j] for j in src]


def _write_chunks(
    run: ChunkRun,
    faces: _StreamedFaces,
    chunks: Iterable[np.ndarray],
    writer: VideoWriter,
    *,
    exclusive: AbstractContextManager[Any] | None,
    should_stop: Callable[[], None] | None,
    progress: Progress | None,
) -> None:
    """Align, denoise, restore and encode chunk by chunk, so one chunk's frames are all that is ever held."""
    total = len(faces.index)
    count = -(-total // CHUNK_FRAMES)
    for chunk, frames in enumerate(chunks):
        if should_stop is not None:
            should_stop()
        start = chunk * CHUNK_FRAMES
        chunk_faces, matrices = faces.of_chunk(start, frames)
        result = run.run(chunk, list(frames), chunk_faces, matrices, exclusive=exclusive)
        writer.write_chunk(result.frames)
        del frames, result, chunk_faces
        if progress is not None:
            done = min(start + CHUNK_FRAMES, total)
            progress(f"chunk {chunk + 1}/{count}", SCAN_SHARE + (1 - SCAN_SHARE) * done / total)


def sync_video(
    video_path: str | Path,
    audio_path: str | Path,
    output_path: str | Path,
    *,
    unet: torch.nn.Module,
    vae: Any,
    whisper: WhisperFeatures,
    mask: Any,
    detector: Callable[[np.ndarray], np.ndarray | None],
    resolution: int = 256,
    num_inference_steps: int = 20,
    guidance_scale: float = 1.5,
    generator: torch.Generator | None = None,
    loop_mode: LoopMode = "pingpong",
    on_missing_face: MissingFacePolicy = "error",
    deepcache: bool = False,
    deepcache_interval: int = DEEPCACHE_INTERVAL,
    progress: Progress | None = None,
    exclusive: AbstractContextManager[Any] | None = None,
    should_stop: Callable[[], None] | None = None,
    crf: int = 18,
) -> StreamStats:
    """Lip-sync a video file to an audio file and write an H.264 mp4, one 16-frame chunk at a time.

    Memory stays flat in the video length: frames are decoded as needed (a long ping-pong replays them from a
    spill file in a private temp folder), only anchors and 2x3 matrices are kept per video frame, and each
    chunk is encoded as soon as it is restored. The output carries the original audio track (the writer's
    documented choice). The file appears at ``output_path`` only when complete. ``should_stop`` is called
    between chunks and may raise (a deadline, a cancel).
    """
    from .audio import load_audio
    from .video import FrameReader, VideoWriter

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="latentsync-job-"))
    try:
        samples = load_audio(audio_path)
        reader = FrameReader(video_path, spill_dir=work)
        job = first_pass(reader, samples, whisper=whisper, detector=detector, loop_mode=loop_mode,
                         on_missing_face=on_missing_face, progress=progress)  # fmt: skip
        sampler = ChunkSampler(
            unet=unet, vae=vae, mask=mask, resolution=resolution, num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale, deepcache=deepcache, deepcache_interval=deepcache_interval,
        )  # fmt: skip
        faces = _StreamedFaces(FaceAligner(resolution), job)
        run = ChunkRun(sampler, faces.aligner, job.features, Noise(None, None, generator))
        with VideoWriter(output_path, audio_path=audio_path, crf=crf) as writer:
            chunks = reader.iter_chunks(CHUNK_FRAMES, job.total, loop=loop_mode)
            _write_chunks(run, faces, chunks, writer, exclusive=exclusive, should_stop=should_stop, progress=progress)
            written = writer.frames_written
        if written != job.total:
            raise LocalRunError(f"wrote {written} frames but the audio needs {job.total}")
        return StreamStats(
            output_path=Path(output_path), frames_written=written, video_frames=job.num_video,
            chunks=-(-job.total // CHUNK_FRAMES), missing_faces=job.missing_faces, unet_passes=sampler.full_passes,
            seconds=time.monotonic() - started,
        )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
