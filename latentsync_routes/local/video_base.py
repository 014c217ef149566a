"""What the video reader (:mod:`.video`) and the video writer (:mod:`.video_writer`) share.

The frame rate both sides work at, the error both raise, and how an input file is opened with PyAV. It is
its own module so that :mod:`.video` can re-export the writer without an import cycle.
"""

from __future__ import annotations

import os
from typing import Any

import av

TARGET_FPS = 25


class VideoError(RuntimeError):
    """A media file cannot be read or written as asked (no stream, no frames, no disk space)."""


def open_input(path: str | os.PathLike[str]) -> Any:
    """``av.open(path)`` for reading, failing with :class:`VideoError`."""
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot open {path}: {exc}") from exc
