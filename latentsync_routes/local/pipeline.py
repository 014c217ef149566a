"""The LatentSync 1.5/1.6 inference pipeline: two ways to drive the per-chunk core of :mod:`.sampler`.

* :func:`sync_frames` works on frames already decoded and anchors already found, in memory. It is the parity
  surface: the official pipeline's numbers, step for step, checked against the goldens.
* :func:`sync_video` streams a file: decode, align, denoise, restore and encode one 16-frame chunk at a
  time, so memory stays flat however long the video is.

Both call the same :func:`sync_chunk` with the same :class:`ChunkSampler`, draw their random numbers in the
same order, and so give the same frames for the same inputs and seed.

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
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .align import FaceAligner
from .audio import FEATURE_RATE, ROWS_AFTER, ROWS_BEFORE, WhisperFeatures, chunk_count
from .errors import LocalRunError, MissingFace
from .sampler import (
    DEEPCACHE_INTERVAL,
    LATENT_CHANNELS,
    ChunkResult,
    ChunkSampler,
    Noise,
    deepcache_full_steps,
    sync_chunk,
)

__all__ = [
    "CHUNK_FRAMES",
    "ChunkResult",
    "ChunkSampler",
    "StreamStats",
    "SyncResult",
    "audio_windows",
    "deepcache_full_steps",
    "loop_indices",
    "sync_chunk",
    "sync_frames",
    "sync_video",
]

log = logging.getLogger(__name__)

CHUNK_FRAMES = 16  # frames the UNet sees at once (its motion modules and ResNet norms span them)
FPS = 25
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


def audio_windows(features: torch.Tensor, start: int, count: int, fps: float = FPS) -> torch.Tensor:
    """The (count, 10 * layers, D) audio tokens of output frames ``start .. start + count - 1``.

    The same rows :meth:`WhisperFeatures.chunks` gives (frame ``i`` takes rows ``2i-4 .. 2i+5``, clamped to
    the clip), computed for one chunk only so a long clip never holds every frame's tokens at once.
    """
    length, layers, width = features.shape
    centres = torch.tensor([int(i * FEATURE_RATE / fps) for i in range(start, start + count)], dtype=torch.long)
    offsets = torch.arange(-ROWS_BEFORE, ROWS_AFTER, dtype=torch.long)
    index = (centres[:, None] + offsets[None, :]).clamp_(0, length - 1).to(features.device)
    return features[index].reshape(count, offsets.numel() * layers, width)


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


def _features(whisper: WhisperFeatures, samples: Any) -> torch.Tensor:
    with torch.inference_mode():
        feats = whisper.features(samples)
    return feats.to("cpu", torch.float32)


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
    video = np.asarray(frames.cpu() if isinstance(frames, torch.Tensor) else frames)
    anchors = np.asarray(points.cpu() if isinstance(points, torch.Tensor) else points, dtype=np.float64)
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
        raise ValueError(f"frames must be (N, H, W, 3) uint8, got {video.shape} {video.dtype}")
    if anchors.shape != (video.shape[0], 3, 2):
        raise ValueError(f"points must be ({video.shape[0]}, 3, 2), got {anchors.shape}")
    features = _features(whisper, samples)
    total = chunk_count(features.shape[0], FPS)
    index = loop_indices(video.shape[0], total, loop_mode)

    aligner = FaceAligner(resolution)
    faces: list[np.ndarray | None] = []
    matrices: list[np.ndarray | None] = []
    for i in range(min(video.shape[0], total)):
        if not np.isfinite(anchors[i]).all():
            if on_missing_face == "error":
                raise _missing_face(i, "video")
            faces.append(None)
            matrices.append(None)
            continue
        face, matrix = aligner.align(video[i], anchors[i])
        faces.append(face)
        matrices.append(matrix)

    sampler = ChunkSampler(
        unet=unet, vae=vae, mask=mask, resolution=resolution, num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale, deepcache=deepcache, deepcache_interval=deepcache_interval,
    )  # fmt: skip
    noise = Noise(init_noise, posterior_noise, generator)
    lat = sampler.latent_size
    init = noise.initial((1, LATENT_CHANNELS, 1, lat, lat))

    out_frames: list[np.ndarray] = []
    latents: list[torch.Tensor | None] = []
    synced_all = torch.full((total, 3, resolution, resolution), float("nan"))
    for chunk, start in enumerate(range(0, total, CHUNK_FRAMES)):
        src = index[start : start + CHUNK_FRAMES]
        count = len(src)
        pair = noise.posterior(chunk, (count, LATENT_CHANNELS, lat, lat))
        on_step = None if step_callback is None else functools.partial(step_callback, chunk)
        result = sync_chunk(
            sampler, aligner, [video[j] for j in src], [faces[j] for j in src], [matrices[j] for j in src],
            audio_windows(features, start, count), init.expand(-1, -1, count, -1, -1), pair, on_step=on_step,
        )  # fmt: skip
        out_frames.extend(result.frames)
        latents.append(result.latents)
        if result.synced is not None:
            for i, j in enumerate(src):
                if faces[j] is not None:
                    synced_all[start + i] = result.synced[i]
        if progress is not None:
            progress(f"chunk {chunk + 1}/{-(-total // CHUNK_FRAMES)}", (start + count) / total)
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
        features = _features(whisper, load_audio(audio_path))
        total = chunk_count(features.shape[0], FPS)
        reader = FrameReader(video_path, spill_dir=work)
        anchors = _scan_faces(reader, total, detector, on_missing_face, progress)
        num_video = anchors.shape[0]  # exact when < total; otherwise only the first ``total`` frames matter
        index = loop_indices(num_video, total, loop_mode)
        has_face = np.isfinite(anchors).all(axis=(1, 2))
        missing = np.flatnonzero(~has_face).tolist()

        sampler = ChunkSampler(
            unet=unet, vae=vae, mask=mask, resolution=resolution, num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale, deepcache=deepcache, deepcache_interval=deepcache_interval,
        )  # fmt: skip
        noise = Noise(None, None, generator)
        lat = sampler.latent_size
        init = noise.initial((1, LATENT_CHANNELS, 1, lat, lat))
        aligner = FaceAligner(resolution)
        matrices: list[np.ndarray | None] = [None] * num_video
        seen = 0  # video frames aligned so far: they arrive in order during the first forward pass
        chunks = -(-total // CHUNK_FRAMES)
        with VideoWriter(output_path, audio_path=audio_path, crf=crf) as writer:
            for chunk, frames in enumerate(reader.iter_chunks(CHUNK_FRAMES, total, loop=loop_mode)):
                if should_stop is not None:
                    should_stop()
                start = chunk * CHUNK_FRAMES
                src = index[start : start + len(frames)]
                faces: list[np.ndarray | None] = []
                for frame, j in zip(frames, src.tolist(), strict=True):
                    face = None
                    if j == seen:  # first time this video frame is seen: align (advances the smoothing)
                        seen += 1
                        if has_face[j]:
                            face, matrices[j] = aligner.align(frame, anchors[j])
                    elif has_face[j]:  # a looped frame: same matrix, so the same face, smoothing untouched
                        face = _warp_face(aligner, frame, matrices[j])
                    faces.append(face)
                pair = noise.posterior(chunk, (len(frames), LATENT_CHANNELS, lat, lat))
                result = sync_chunk(
                    sampler, aligner, list(frames), faces, [matrices[j] for j in src],
                    audio_windows(features, start, len(frames)), init.expand(-1, -1, len(frames), -1, -1), pair,
                    exclusive=exclusive,
                )  # fmt: skip
                writer.write_chunk(result.frames)
                del frames, result, faces
                if progress is not None:
                    done = min(start + CHUNK_FRAMES, total)
                    progress(f"chunk {chunk + 1}/{chunks}", SCAN_SHARE + (1 - SCAN_SHARE) * done / total)
            written = writer.frames_written
        if written != total:
            raise LocalRunError(f"wrote {written} frames but the audio needs {total}")
        return StreamStats(
            output_path=Path(output_path), frames_written=written, video_frames=num_video, chunks=chunks,
            missing_faces=missing, unet_passes=sampler.full_passes, seconds=time.monotonic() - started,
        )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _warp_face(aligner: FaceAligner, frame: np.ndarray, matrix: np.ndarray | None) -> np.ndarray | None:
    """The aligned face for a known matrix: what :meth:`FaceAligner.align` gave for this frame the first time."""
    import cv2

    if matrix is None:
        return None
    crop = aligner.warp_crop(frame, matrix)
    size = (aligner.resolution, aligner.resolution)
    return np.ascontiguousarray(cv2.resize(crop, size, interpolation=cv2.INTER_LANCZOS4).transpose(2, 0, 1))
