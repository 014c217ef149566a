"""A whole video to LSE-C / LSE-D per face track, a summary, and a verdict against documented thresholds.

Two passes over the decoded video (25 fps, :class:`~latentsync_routes.local.video.FrameReader`): the first
finds faces and scene cuts, frame by frame, keeping only boxes; the second crops the kept tracks. So
memory holds 224 x 224 crops, never the full-size video. Each track is scored with its own slice of the
audio (frames ``first..last`` take samples ``640 first .. 640 (last + 1)``, as the official crop step
cuts it) by :func:`~latentsync_routes.quality.scores.sync_scores`.

The summary weighs tracks by their windows (a two-second face counts less than a minute-long one); the
official's own numbers (the unweighted mean confidence over tracks and the mean offset truncated toward
zero, ``eval/eval_sync_conf.py``) are given beside it, labelled ``official_average``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .crop import (
    BoxDetector,
    CropSettings,
    FaceTrack,
    MediaPipeBoxes,
    SceneCuts,
    build_tracks,
    crop_frame,
    smooth_track,
)
from .errors import AudioTooShort, MediaUnreadable, NoFaceTrack
from .scores import SAMPLES_PER_FRAME, sync_scores, window_count

if TYPE_CHECKING:
    from .syncnet import SyncNet

__all__ = ["MIN_CONFIDENCE", "MAX_OFFSET", "Evaluation", "TrackScore", "evaluate_video", "load_audio_int16", "verdict"]

#: The official training-data filter keeps clips with LSE-C >= 3 and |offset| <= 6 frames
#: (bytedance/LatentSync a229c39, ``preprocess/sync_av.py`` and README "Data Processing Pipeline" step 6).
MIN_CONFIDENCE = 3.0
MAX_OFFSET = 6
THRESHOLD_SOURCE = "the official LatentSync data filter, bytedance/LatentSync@a229c39 preprocess/sync_av.py"


@dataclass(frozen=True)
class TrackScore:
    """One face track's scores; times are seconds from the first decoded frame."""

    track: int
    first_frame: int
    frames: int
    start_s: float
    end_s: float
    windows: int
    av_offset: int
    lse_d: float
    lse_c: float
    face_size: float  #: mean box side in pixels of the source video


@dataclass(frozen=True)
class Evaluation:
    """What ``latentsync-routes evaluate`` reports (``to_dict`` is its JSON)."""

    tracks: list[TrackScore]
    lse_c: float  #: window-weighted mean over tracks
    lse_d: float  #: window-weighted mean over tracks
    av_offset: int  #: offset of the track with the most windows
    official_lse_c: float  #: unweighted mean confidence over tracks, as the official reports
    official_av_offset: int  #: mean offset truncated toward zero, as the official reports
    verdict: str
    passed: bool
    frames: int  #: frames decoded at 25 fps
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        official = {
            "lse_c": self.official_lse_c,
            "av_offset": self.official_av_offset,
            "note": "eval/eval_sync_conf.py: unweighted mean of the tracks' LSE-C; mean offset truncated "
            "toward zero; LSE-D is not reported there",
        }
        summary = {
            "lse_c": self.lse_c,
            "lse_d": self.lse_d,
            "av_offset": self.av_offset,
            "passed": self.passed,
            "verdict": self.verdict,
            "official_average": official,
        }
        return {
            "tracks": [asdict(t) for t in self.tracks],
            "summary": summary,
            "frames": self.frames,
            "thresholds": {"min_lse_c": MIN_CONFIDENCE, "max_abs_offset": MAX_OFFSET, "source": THRESHOLD_SOURCE},
            "timings": self.timings,
        }


def verdict(lse_c: float, av_offset: int) -> tuple[bool, str]:
    """(passed, one line) against :data:`MIN_CONFIDENCE` and :data:`MAX_OFFSET`."""
    good_c, good_offset = lse_c >= MIN_CONFIDENCE, abs(av_offset) <= MAX_OFFSET
    if good_c and good_offset:
        return True, (
            f"in sync: LSE-C {lse_c:.2f} >= {MIN_CONFIDENCE:g} and offset {av_offset:+d} within "
            f"+-{MAX_OFFSET} frames (thresholds: {THRESHOLD_SOURCE})"
        )
    reasons = ([f"LSE-C {lse_c:.2f} < {MIN_CONFIDENCE:g}"] if not good_c else []) + (
        [f"offset {av_offset:+d} frames beyond +-{MAX_OFFSET}"] if not good_offset else []
    )
    return False, f"out of sync: {' and '.join(reasons)} (thresholds: {THRESHOLD_SOURCE})"


def load_audio_int16(path: str | Path) -> np.ndarray:
    """The first audio stream as int16 mono 16 kHz: what ``ffmpeg -ac 1 -ar 16000 pcm_s16le`` gives the official."""
    from ..local.video import VideoError, load_audio

    try:
        samples = load_audio(path, 16_000, s16=True)
    except (VideoError, OSError) as exc:
        hint = "; pass the audio to score against with --audio (audio=)" if "no audio stream" in str(exc) else ""
        raise MediaUnreadable(f"cannot read audio from {path}: {exc}{hint}") from exc
    return np.round(samples * 32768.0).astype(np.int16)


def _first_pass(path: Path, detector: BoxDetector, settings: CropSettings) -> tuple[list[list[list[float]]], SceneCuts]:
    """Per-frame face boxes and the scene cuts, from one decode."""
    from ..local.video import FrameReader, VideoError

    cuts = SceneCuts(settings)
    boxes: list[list[list[float]]] = []
    try:
        for frame in FrameReader(path).iter_frames(loop="none"):
            boxes.append([list(map(float, box)) for box in detector(frame)])
            cuts.add(frame)
    except (VideoError, OSError) as exc:
        raise MediaUnreadable(f"cannot decode video {path}: {exc}") from exc
    return boxes, cuts


def _crops(path: Path, tracks: list[FaceTrack], settings: CropSettings) -> list[np.ndarray]:
    """``[n, 224, 224, 3]`` BGR crops per track, from a second decode."""
    from ..local.video import FrameReader

    smoothed = [smooth_track(track, settings) for track in tracks]
    out: list[list[np.ndarray]] = [[] for _ in tracks]
    for index, frame in enumerate(FrameReader(path).iter_frames(loop="none")):
        bgr = None
        for k, track in enumerate(tracks):
            if track.first <= index <= track.last:
                bgr = np.ascontiguousarray(frame[..., ::-1]) if bgr is None else bgr
                size, cx, cy = smoothed[k][index - track.first]
                out[k].append(crop_frame(bgr, float(size), float(cx), float(cy)))
    return [np.stack(crops) for crops in out]


def evaluate_video(
    video: str | Path,
    model: SyncNet,
    *,
    audio: str | Path | None = None,
    detector: BoxDetector | None = None,
    settings: CropSettings | None = None,
    progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Score every face track of ``video`` against its own audio track, or against ``audio`` if given.

    Raises :class:`MediaUnreadable`, :class:`AudioTooShort` (checked before any face is looked for) or
    :class:`NoFaceTrack`. ``detector`` defaults to MediaPipe's (the ``faces`` extra).
    """
    settings = settings or CropSettings()
    path = Path(video)
    if not path.is_file():
        raise MediaUnreadable(f"no video file at {path}")
    timings: dict[str, float] = {}
    started = time.perf_counter()
    samples = load_audio_int16(audio if audio is not None else path)
    if samples.shape[0] < 6 * SAMPLES_PER_FRAME:
        raise AudioTooShort(f"{samples.shape[0] / 16000:.3f} s of audio: SyncNet needs at least 0.24 s (6 frames)")
    own = detector is None
    boxes_of = detector or MediaPipeBoxes()
    try:
        boxes, cuts = _first_pass(path, boxes_of, settings)
    finally:
        if own and isinstance(boxes_of, MediaPipeBoxes):
            boxes_of.close()
    if not boxes:
        raise MediaUnreadable(f"{path} has no decodable video frames")
    tracks = build_tracks(boxes, cuts.scenes(len(boxes)), settings)
    if not tracks:
        found = sum(1 for frame in boxes if frame)
        raise NoFaceTrack(
            f"no face track to score: a face in {found} of {len(boxes)} frames; a track needs more than "
            f"{settings.min_track} frames ({settings.min_track / 25:g} s) of one face, at least "
            f"{settings.min_face_size:g} px, within one scene"
        )
    timings["decode_detect_s"] = time.perf_counter() - started
    started = time.perf_counter()
    crops = _crops(path, tracks, settings)
    timings["crop_s"] = time.perf_counter() - started
    started = time.perf_counter()
    scored = _score_tracks(tracks, crops, samples, model, progress)
    timings["score_s"] = time.perf_counter() - started
    return _summarise(scored, len(boxes), timings)


def _score_tracks(
    tracks: list[FaceTrack],
    crops: list[np.ndarray],
    samples: np.ndarray,
    model: SyncNet,
    progress: Callable[[str], None] | None,
) -> list[TrackScore]:
    scored = []
    for number, (track, frames) in enumerate(zip(tracks, crops, strict=True)):
        piece = samples[track.first * SAMPLES_PER_FRAME : (track.last + 1) * SAMPLES_PER_FRAME]
        if window_count(frames.shape[0], piece.shape[0]) <= 0:
            continue  # the audio ends before this track has one window
        if progress:
            progress(f"scoring track {number} ({frames.shape[0]} frames)")
        s = sync_scores(frames, piece, model)
        side = float(np.mean(np.maximum(track.boxes[:, 2] - track.boxes[:, 0], track.boxes[:, 3] - track.boxes[:, 1])))
        scored.append(
            TrackScore(
                track=number,
                first_frame=track.first,
                frames=track.frames,
                start_s=track.first / 25,
                end_s=(track.last + 1) / 25,
                windows=s.windows,
                av_offset=s.av_offset,
                lse_d=s.lse_d,
                lse_c=s.lse_c,
                face_size=side,
            )
        )
    if not scored:
        raise AudioTooShort("the audio ends before any face track has 6 frames (0.24 s) of it")
    return scored


def _summarise(scored: list[TrackScore], frames: int, timings: dict[str, float]) -> Evaluation:
    weights = np.array([t.windows for t in scored], dtype=np.float64)
    lse_c = float(np.average([t.lse_c for t in scored], weights=weights))
    lse_d = float(np.average([t.lse_d for t in scored], weights=weights))
    longest = max(scored, key=lambda t: (t.windows, -t.track))
    passed, line = verdict(lse_c, longest.av_offset)
    return Evaluation(
        tracks=scored, lse_c=lse_c, lse_d=lse_d, av_offset=longest.av_offset,
        official_lse_c=statistics.fmean(t.lse_c for t in scored),
        official_av_offset=int(statistics.fmean(t.av_offset for t in scored)),
        verdict=line, passed=passed, frames=frames, timings=timings,
    )  # fmt: skip
