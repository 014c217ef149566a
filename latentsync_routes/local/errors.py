"""The local model's own errors.

Why its own: ``latentsync_routes.local`` is the LatentSync model and pipeline, usable without any route,
price or job record (as diffusers' pipelines know nothing of hosting). The ``local`` route
(:mod:`latentsync_routes.routes.local`) translates these into the package's typed errors and exit codes.

::

    LocalError                   base: the local model cannot do what was asked
    ├── MissingFace              a frame without a usable face under on_missing_face="error"
    ├── LocalRunError            the pipeline itself failed (no frames, a short write, ...)
    ├── ModuleMissing            an optional package (MediaPipe, InsightFace) is not installed
    └── checkpoints.CheckpointError   CheckpointMissing / ChecksumMismatch / CheckpointDownloadFailed

Media read/write failures are :class:`~latentsync_routes.local.video_base.VideoError`; a checkpoint whose
keys or shapes do not fit the network is :class:`~latentsync_routes.local.unet.UNetCheckpointError`.
"""

from __future__ import annotations

__all__ = ["LocalError", "LocalRunError", "MissingFace", "ModuleMissing"]


class LocalError(Exception):
    """Base of the local model's errors; ``message`` is the text shown to a user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LocalRunError(LocalError):
    """The pipeline could not finish a run (an empty video, fewer frames written than the audio needs)."""


class MissingFace(LocalRunError):
    """A frame has no usable face and the run was asked to stop on such frames."""

    def __init__(self, frame_index: int, fps: float, where: str = "video") -> None:
        self.frame_index = frame_index
        self.seconds = frame_index / fps
        super().__init__(
            f"no usable face in {where} frame {frame_index} (t = {self.seconds:.2f} s at {fps:g} fps); "
            "pass on_missing_face='passthrough' to keep such frames unchanged"
        )


class ModuleMissing(LocalError):
    """An optional package is needed and not installed; ``extra`` is the package extra that brings it."""

    def __init__(self, message: str, *, module: str, extra: str) -> None:
        super().__init__(message)
        self.module = module
        self.extra = extra
