"""The sync scorer's own errors.

Why its own: ``latentsync_routes.quality`` is a model layer, usable without any route, price or job record
(like :mod:`latentsync_routes.local`). The CLI and the client translate these into the package's typed
errors and exit codes (all of them are exit 2: something about the input or the set-up, never a provider).

::

    QualityError                 base: the video cannot be scored as asked
    ├── AudioTooShort            fewer than 6 frames of overlapping audio and video (no window to score)
    ├── NoFaceTrack              no face track long enough to score
    ├── MediaUnreadable          the video or audio cannot be decoded
    └── SyncNetWeightsError      missing, unknown or mis-shaped keys, or no weights file where one was named
"""

from __future__ import annotations

__all__ = ["AudioTooShort", "MediaUnreadable", "NoFaceTrack", "QualityError", "SyncNetWeightsError"]


class QualityError(Exception):
    """Base of the scorer's errors; ``message`` is the text shown to a user."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class AudioTooShort(QualityError):
    """Too little audio (or video) for one SyncNet window; the official code crashes here, we refuse."""


class NoFaceTrack(QualityError):
    """No face was found, or no track lasted long enough to score."""


class MediaUnreadable(QualityError):
    """The file is missing, not media, or has no stream of the kind needed."""


class SyncNetWeightsError(QualityError):
    """The weights do not fit the network (the message lists the keys), or cannot be found or read."""
