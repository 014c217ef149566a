"""A real moving face, and writers of frames to video files, for the local-route tests.

``test_pipeline`` and ``test_local_route`` both use these. They are test-only, unlike
:mod:`latentsync_routes.testing.tiny_local`: the face needs scikit-image (a dev dependency) for the astronaut,
and its anchors are hand-measured for this exact clip.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def astronaut_frames(count: int, size: tuple[int, int] = (160, 192), scale: float = 0.8) -> np.ndarray:
    """The astronaut's face, rotated and shifted a little per frame: (count, H, W, 3) uint8 RGB."""
    import cv2
    from skimage import data

    image = data.astronaut()
    width, height = size
    frames = []
    for k in range(count):
        matrix = cv2.getRotationMatrix2D((235, 140), 3 * np.sin(k / 3), scale)
        matrix[0, 2] += width / 2 - 235 + 5 * np.sin(k / 4)
        matrix[1, 2] += height / 2 - 140 + 4 * np.cos(k / 5)
        frames.append(cv2.warpAffine(image, matrix, (width, height), borderValue=(110, 110, 110)))
    return np.stack(frames)


def anchors_for(count: int) -> np.ndarray:
    """Plausible rounded anchors (image-left brow, image-right brow, nose) for ``astronaut_frames``.

    Kept beside ``astronaut_frames`` because they follow its motion: change one and the other must follow.
    """
    base = np.array([[48.0, 56.0], [89.0, 57.0], [69.0, 85.0]])
    return np.stack([np.round(base + [np.sin(k / 4) * 4, np.cos(k / 5) * 3]) for k in range(count)])


def write_frames(
    path: Path, frames: np.ndarray, *, codec: str, pix_fmt: str, fps: int = 25, options: dict[str, str] | None = None
) -> Path:
    """Encode (N, H, W, 3) uint8 RGB ``frames`` with ``codec``; the container follows ``path``'s suffix."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_lossless(path: Path, frames: np.ndarray) -> Path:
    """FFV1 in Matroska: decodes to exactly these RGB frames, so both paths see the same pixels."""
    return write_frames(path, frames, codec="ffv1", pix_fmt="bgr0")


def write_h264(path: Path, frames: np.ndarray, fps: int = 25) -> Path:
    """H.264 (crf 12, yuv420p): the kind of lossy file users hand the local route."""
    return write_frames(path, frames, codec="libx264", pix_fmt="yuv420p", fps=fps, options={"crf": "12"})
