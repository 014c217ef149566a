"""LSE-D and LSE-C of one face track, at the seam the goldens define (``goldens/syncnet/README.md``).

Input: the cropped face frames, uint8 BGR ``[T, 224, 224, 3]`` at 25 fps, and the int16 mono 16 kHz
samples ``[S]``. Output: :class:`SyncScores`, with every intermediate the parity tests compare.

The computation, as the official evaluation defines it: ``min_length = min(T, S // 640)`` frames of
overlap and ``W = min_length - 5`` windows (the official count, one short of what would fit); window
``i`` pairs frames ``i..i+4`` with MFCC columns ``4i..4i+19``. For each offset ``k`` in ``-15..15`` the
distance between video window ``i`` and audio window ``i + k`` (a zero vector where that is out of range)
is averaged over the windows; LSE-D is the smallest mean, LSE-C the median of the 31 means minus LSE-D,
and the offset is ``15 - argmin`` (first index on ties).

All windows run batched: the audio windows in one pass, the video in a few clip-sized passes (see
:meth:`SyncNet.lip_trunk` for why no 5-frame windows are stacked), the 31 offsets in one broadcast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .cepstrum import mfcc as compute_mfcc
from .errors import AudioTooShort

if TYPE_CHECKING:
    import torch

    from .syncnet import SyncNet

__all__ = [
    "FACE_SIZE",
    "SAMPLES_PER_FRAME",
    "VSHIFT",
    "SyncScores",
    "lip_input",
    "mfcc_windows",
    "offset_scores",
    "sync_scores",
    "window_count",
]

FACE_SIZE = 224
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps
MFCC_PER_FRAME = 4  # 100 Hz / 25 fps
VSHIFT = 15
#: Pairwise-distance epsilon added to every difference (torch's ``pairwise_distance`` default).
DISTANCE_EPS = 1e-6
#: Windows per lip-network pass: bounds memory (the first conv's output is ~4.5 MB a window).
CLIP_WINDOWS = 48


@dataclass(frozen=True)
class SyncScores:
    """Scores and intermediates of one face track. Arrays are numpy; ``W`` windows, ``M`` MFCC frames."""

    av_offset: int  #: positive: video window ``i`` matches audio window ``i - av_offset``
    lse_d: float  #: smallest mean distance (lower is better)
    lse_c: float  #: median mean distance minus LSE-D (higher is better)
    min_index: int  #: argmin over the 31 offsets (``VSHIFT - av_offset``)
    min_length: int  #: frames of overlapping audio and video
    frames: int  #: video frames given
    mfcc: np.ndarray = field(repr=False)  #: ``[M, 13]`` float64
    aud_input: np.ndarray = field(repr=False)  #: ``[W, 1, 13, 20]`` float32
    aud_trunk: np.ndarray = field(repr=False)  #: ``[W, 512]``
    lip_trunk: np.ndarray = field(repr=False)  #: ``[W, 512]``
    im_feat: np.ndarray = field(repr=False)  #: ``[W, 1024]`` lip embeddings
    cc_feat: np.ndarray = field(repr=False)  #: ``[W, 1024]`` audio embeddings
    dists: np.ndarray = field(repr=False)  #: ``[W, 31]``
    mean_dists: np.ndarray = field(repr=False)  #: ``[31]``

    @property
    def windows(self) -> int:
        return int(self.dists.shape[0])


def window_count(frames: int, samples: int) -> int:
    """The official number of windows (may be zero or negative: nothing to score)."""
    return min(frames, samples // SAMPLES_PER_FRAME) - 5


def _check_inputs(frames_bgr: np.ndarray, audio_int16: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    frames = np.asarray(frames_bgr)
    audio = np.asarray(audio_int16)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[1:] != (FACE_SIZE, FACE_SIZE, 3):
        raise ValueError(
            f"frames_bgr must be uint8 [T, {FACE_SIZE}, {FACE_SIZE}, 3]; got {frames.dtype} {list(frames.shape)}"
        )
    if audio.dtype != np.int16 or audio.ndim != 1:
        raise ValueError(f"audio_int16 must be int16 mono [S] at 16 kHz; got {audio.dtype} {list(audio.shape)}")
    windows = window_count(frames.shape[0], audio.shape[0])
    if windows <= 0:
        raise AudioTooShort(
            f"too short to score: {frames.shape[0]} frames and {audio.shape[0] / 16000:.3f} s of audio give "
            f"{min(frames.shape[0], audio.shape[0] // SAMPLES_PER_FRAME)} frames of overlap; SyncNet needs at "
            "least 6 (0.24 s at 25 fps) for one window"
        )
    return frames, audio


def mfcc_windows(mfcc: np.ndarray, windows: int) -> np.ndarray:
    """``[W, 1, 13, 20]`` float32 audio-net inputs: window ``i`` is MFCC frames ``4i..4i+19``, transposed."""
    columns = np.ascontiguousarray(mfcc.T.astype(np.float32))  # [13, M]
    starts = np.arange(windows) * MFCC_PER_FRAME
    index = starts[:, None] + np.arange(20)[None, :]  # [W, 20]
    return np.ascontiguousarray(columns[:, index].transpose(1, 0, 2)[:, None])


def lip_input(frames_bgr: np.ndarray, window: int) -> np.ndarray:
    """``[3, 5, 224, 224]`` float32 lip-net input of one window (BGR channels, raw 0..255 values)."""
    clip = np.asarray(frames_bgr)[window : window + 5]
    return np.ascontiguousarray(clip.transpose(3, 0, 1, 2).astype(np.float32))


def _lip_trunks(model: SyncNet, frames: np.ndarray, windows: int) -> torch.Tensor:
    """``[W, 512]``: the lip trunk over overlapping clips of ``CLIP_WINDOWS + 4`` frames."""
    import torch

    parts = []
    for start in range(0, windows, CLIP_WINDOWS):
        stop = min(windows, start + CLIP_WINDOWS)
        clip = torch.from_numpy(frames[start : stop + 4]).to(model.device)  # [t, H, W, 3] uint8
        clip = clip.permute(3, 0, 1, 2).unsqueeze(0).float()  # [1, 3, t, H, W]
        parts.append(model.lip_trunk(clip))
    return torch.cat(parts)


def _distances(im_feat: torch.Tensor, cc_feat: torch.Tensor, vshift: int) -> torch.Tensor:
    """``[W, 2 vshift + 1]``: ``|im_feat[i] - cc_pad[i + j] + eps|`` with ``vshift`` zero rows padding each end."""
    import torch

    padded = torch.nn.functional.pad(cc_feat, (0, 0, vshift, vshift))
    shifted = padded.unfold(0, 2 * vshift + 1, 1).permute(0, 2, 1)  # [W, 31, 1024]
    distances: torch.Tensor = torch.linalg.vector_norm(im_feat[:, None, :] - shifted + DISTANCE_EPS, dim=-1)
    return distances


def offset_scores(mean_dists: np.ndarray) -> tuple[int, float, float]:
    """(argmin, LSE-D, LSE-C) of the per-offset mean distances, in float32 as the official computes them.

    The argmin takes the first index on ties (as ``torch.min``); the median is the lower middle value
    for an even count (as ``torch.median``; with the usual 31 offsets it is the true median).
    """
    means = np.asarray(mean_dists, dtype=np.float32)
    min_index = int(np.argmin(means))
    median = np.sort(means)[(means.shape[0] - 1) // 2]
    return min_index, float(means[min_index]), float(median - means[min_index])


def sync_scores(frames_bgr: np.ndarray, audio_int16: np.ndarray, model: SyncNet, *, vshift: int = VSHIFT) -> SyncScores:
    """Score one face track: uint8 BGR ``[T, 224, 224, 3]`` at 25 fps against int16 ``[S]`` at 16 kHz.

    Raises :class:`AudioTooShort` when there is not one window to score (fewer than 6 frames of overlap),
    and ``ValueError`` for arrays of the wrong type or shape.
    """
    import torch

    frames, audio = _check_inputs(frames_bgr, audio_int16)
    windows = window_count(frames.shape[0], audio.shape[0])
    features = compute_mfcc(audio)
    aud_input = mfcc_windows(features, windows)
    with torch.inference_mode():
        aud_trunk = model.audio_trunk(torch.from_numpy(aud_input).to(model.device))
        cc_feat = model.audio_head(aud_trunk)
        lip_trunk = _lip_trunks(model, frames, windows)
        im_feat = model.lip_head(lip_trunk)
        dists = _distances(im_feat, cc_feat, vshift)
        mean_dists = dists.mean(dim=0)
    means = mean_dists.cpu().numpy()
    min_index, lse_d, lse_c = offset_scores(means)
    return SyncScores(
        av_offset=vshift - min_index,
        lse_d=lse_d,
        lse_c=lse_c,
        min_index=min_index,
        min_length=windows + 5,
        frames=int(frames.shape[0]),
        mfcc=features,
        aud_input=aud_input,
        aud_trunk=aud_trunk.cpu().numpy(),
        lip_trunk=lip_trunk.cpu().numpy(),
        im_feat=im_feat.cpu().numpy(),
        cc_feat=cc_feat.cpu().numpy(),
        dists=dists.cpu().numpy(),
        mean_dists=means,
    )
