"""Lip-sync quality: SyncNet's LSE-C and LSE-D, as the LatentSync paper and its ``eval/`` code report them.

A model layer like :mod:`latentsync_routes.local`: it knows nothing of routes, prices or job records.
Importing this package imports neither torch nor numpy; each name loads its module on first use, so
``import latentsync_routes`` stays light and ``latentsync-routes --help`` stays fast.

The parity surface (held to ``goldens/syncnet``)::

    from latentsync_routes.quality import SyncNet, sync_scores
    model = SyncNet.from_state_dict(state_dict)
    s = sync_scores(frames_bgr, audio_int16, model)
    s.av_offset, s.lse_d, s.lse_c

Whole videos (decode, face tracks, crops, per-track scores, a verdict) go through
:func:`latentsync_routes.quality.evaluate.evaluate_video`. See docs/quality.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cepstrum import mfcc
    from .errors import AudioTooShort, MediaUnreadable, NoFaceTrack, QualityError, SyncNetWeightsError
    from .scores import SyncScores, sync_scores
    from .syncnet import SyncNet

__all__ = [
    "AudioTooShort",
    "MediaUnreadable",
    "NoFaceTrack",
    "QualityError",
    "SyncNet",
    "SyncNetWeightsError",
    "SyncScores",
    "mfcc",
    "sync_scores",
]

_HOMES = {
    "AudioTooShort": "errors",
    "MediaUnreadable": "errors",
    "NoFaceTrack": "errors",
    "QualityError": "errors",
    "SyncNetWeightsError": "errors",
    "mfcc": "cepstrum",  # the module is not named mfcc: importing it would shadow the function
    "SyncScores": "scores",
    "sync_scores": "scores",
    "SyncNet": "syncnet",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
