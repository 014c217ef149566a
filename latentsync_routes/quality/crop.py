"""The crop step: from a decoded video to per-track 224 x 224 face crops, as the official evaluation crops.

Outside the scorer's seam (``goldens/syncnet/README.md``, "Crop step"), so here the package's own parts
stand in for the official S3FD + PySceneDetect + ffmpeg chain. What follows the official exactly:

* tracks: a face joins the track when its box overlaps the track's last box with IoU > 0.5 and no more
  than 25 frames have passed; a track is kept with **more than** ``min_track`` (50) detections, inside
  a scene of at least ``min_track`` frames, and a mean box side over 100 px; boxes are linearly
  interpolated over the frames the detector missed;
* crop: half-size ``s = max(w, h) / 2`` and the centre, each median-filtered (kernel 13, zero-padded
  ends as ``scipy.signal.medfilt``); the frame padded with grey 110 by ``int(1.8 s)``; rows
  ``[cy - s, cy + 1.8 s)``, columns ``[cx - 1.4 s, cx + 1.4 s)``; resized to 224 x 224 bilinearly.

What differs (docs/quality.md says how much it can move a score): MediaPipe's full-range detector
instead of S3FD (different box geometry and misses), a content-change cut detector instead of
PySceneDetect, and no lossy JPEG / mp4v / AAC round trips between the steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from .errors import QualityError

__all__ = [
    "CropSettings",
    "FaceTrack",
    "MediaPipeBoxes",
    "SceneCuts",
    "build_tracks",
    "crop_frame",
    "iou",
    "smooth_track",
]

#: A detector: an RGB uint8 frame to face boxes ``[x1, y1, x2, y2]`` in pixels.
BoxDetector = Callable[[np.ndarray], Sequence[Sequence[float]]]
CROP_SIZE = 224
PAD_VALUE = 110
CROP_SCALE = 0.4  # the official crop_scale: 1 + 2 * 0.4 = 1.8 below the centre, 1 + 0.4 = 1.4 either side


@dataclass(frozen=True)
class CropSettings:
    """The official crop step's constants (``eval/syncnet_detect.py``); change them knowingly."""

    min_track: int = 50  #: a track needs more detections than this, its scene at least this many frames
    max_gap: int = 25  #: frames a track may go without a detection
    min_iou: float = 0.5  #: overlap with the track's last box to join it
    min_face_size: float = 100.0  #: mean box side (px) a track needs
    smooth_kernel: int = 13  #: median filter over size and centre
    cut_threshold: float = 27.0  #: mean HSV change (0..255) that starts a new scene
    min_scene: int = 15  #: frames a scene lasts at least before another cut is taken


@dataclass(frozen=True)
class FaceTrack:
    """One face followed through consecutive frames of one scene."""

    first: int  #: index of the first frame (25 fps) in the decoded video
    boxes: np.ndarray = field(repr=False)  #: ``[n, 4]`` interpolated boxes, one per frame first..first+n-1
    detections: int  #: frames where the detector itself found the face

    @property
    def frames(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def last(self) -> int:
        return self.first + self.frames - 1


def iou(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Intersection over union of two ``[x1, y1, x2, y2]`` boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class SceneCuts:
    """Finds scene cuts frame by frame: the mean absolute change of the downscaled HSV frame.

    Like PySceneDetect's content detector (which the official uses with its defaults): a cut where the
    change reaches :attr:`CropSettings.cut_threshold`, no two cuts closer than ``min_scene`` frames.
    """

    def __init__(self, settings: CropSettings) -> None:
        self.settings = settings
        self.starts = [0]
        self._previous: np.ndarray | None = None
        self._index = -1

    def add(self, frame_rgb: np.ndarray) -> None:
        self._index += 1
        step = max(1, frame_rgb.shape[1] // 200)  # work at about 200 px wide, as the official downscale does
        small = cv2.cvtColor(np.ascontiguousarray(frame_rgb[::step, ::step]), cv2.COLOR_RGB2HSV).astype(np.int16)
        if self._previous is not None and self._previous.shape == small.shape:
            change = float(np.mean(np.abs(small - self._previous)))
            if change >= self.settings.cut_threshold and self._index - self.starts[-1] >= self.settings.min_scene:
                self.starts.append(self._index)
        self._previous = small

    def scenes(self, total: int) -> list[tuple[int, int]]:
        """``[start, stop)`` frame ranges covering ``total`` frames."""
        bounds = [*self.starts, total]
        return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1) if bounds[i + 1] > bounds[i]]


def _link(faces: list[list[np.ndarray]], first: int, settings: CropSettings) -> list[tuple[int, np.ndarray]]:
    """One greedy track over a scene's detections (consumed as they join), in frame order."""
    track: list[tuple[int, np.ndarray]] = []
    for offset, frame_faces in enumerate(faces):
        index = first + offset
        if track and index - track[-1][0] > settings.max_gap:
            break
        for box in list(frame_faces):
            if not track or iou(box, track[-1][1]) > settings.min_iou:
                track.append((index, box))
                frame_faces.remove(box)
                break
    return track


def build_tracks(
    detections: Sequence[Sequence[Sequence[float]]],
    scenes: Iterable[tuple[int, int]],
    settings: CropSettings | None = None,
) -> list[FaceTrack]:
    """Face tracks from per-frame boxes, scene by scene, kept by the official length and size rules."""
    settings = settings or CropSettings()
    tracks: list[FaceTrack] = []
    for start, stop in scenes:
        if stop - start < settings.min_track:
            continue
        pool = [[np.asarray(box, dtype=np.float64) for box in frame] for frame in detections[start:stop]]
        while True:
            linked = _link(pool, start, settings)
            if not linked:
                break
            if len(linked) <= settings.min_track:
                continue
            indices = np.array([i for i, _ in linked])
            boxes = np.stack([box for _, box in linked])
            every = np.arange(indices[0], indices[-1] + 1)
            filled = np.stack([np.interp(every, indices, boxes[:, k]) for k in range(4)], axis=1)
            side = max(float(np.mean(filled[:, 2] - filled[:, 0])), float(np.mean(filled[:, 3] - filled[:, 1])))
            if side > settings.min_face_size:
                tracks.append(FaceTrack(first=int(indices[0]), boxes=filled, detections=len(linked)))
    return sorted(tracks, key=lambda t: (t.first, float(t.boxes[0, 0])))


def _medfilt(values: np.ndarray, kernel: int) -> np.ndarray:
    """``scipy.signal.medfilt``: a centred median with zeros beyond both ends."""
    half = kernel // 2
    padded = np.concatenate([np.zeros(half), values, np.zeros(half)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel)
    return np.asarray(np.median(windows, axis=1))


def smooth_track(track: FaceTrack, settings: CropSettings | None = None) -> np.ndarray:
    """``[n, 3]`` smoothed (half-size, centre x, centre y) per frame of the track."""
    kernel = (settings or CropSettings()).smooth_kernel
    boxes = track.boxes
    size = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([_medfilt(v, kernel) for v in (size, centre_x, centre_y)], axis=1)


def crop_frame(frame: np.ndarray, size: float, centre_x: float, centre_y: float) -> np.ndarray:
    """The official crop of one frame (any channel order in, the same out) resized to 224 x 224."""
    pad = int(size * (1 + 2 * CROP_SCALE))
    padded = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    my, mx = centre_y + pad, centre_x + pad
    face = padded[
        int(my - size) : int(my + size * (1 + 2 * CROP_SCALE)),
        int(mx - size * (1 + CROP_SCALE)) : int(mx + size * (1 + CROP_SCALE)),
    ]
    if face.size == 0:
        raise QualityError(f"empty face crop at centre ({centre_x:.0f}, {centre_y:.0f}), half-size {size:.1f}")
    return np.asarray(cv2.resize(face, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_LINEAR))


class MediaPipeBoxes:
    """Face boxes from MediaPipe's full-range face detector (the ``faces`` extra), in pixels.

    The package already uses this detector for its face check; it ships inside the wheel, so scoring
    downloads nothing. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, min_confidence: float = 0.5) -> None:
        from ..local.errors import ModuleMissing

        try:
            from mediapipe.python.solutions import face_detection
        except ImportError as exc:
            raise ModuleMissing(
                "face tracks need MediaPipe: pip install 'latentsync-routes[faces]'", module="mediapipe", extra="faces"
            ) from exc
        self._detector: Any = face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_confidence)

    def __call__(self, frame_rgb: np.ndarray) -> list[list[float]]:
        height, width = frame_rgb.shape[:2]
        found = getattr(self._detector.process(np.ascontiguousarray(frame_rgb)), "detections", None) or []
        boxes = []
        for detection in found:
            rel = detection.location_data.relative_bounding_box
            x1, y1 = rel.xmin * width, rel.ymin * height
            boxes.append([x1, y1, x1 + rel.width * width, y1 + rel.height * height])
        return boxes

    def close(self) -> None:
        self._detector.close()

    def __enter__(self) -> MediaPipeBoxes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
