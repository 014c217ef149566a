"""MFCC features exactly as SyncNet was trained on them (``python_speech_features.mfcc(samples, 16000)``).

Why our own code rather than the package: the computation is short and fully specified (see the goldens'
README, "Audio"), the package has had no release since 2017 and pulls nothing we need, and owning it lets
the scorer say precisely what it computes. The parity tests hold it to the goldens (computed by the
package itself) and, where the package is installed, to the package on inputs the goldens never saw.

The recipe, all in float64: 25 ms frames (400 samples) every 10 ms (160), zero-padded at the end so the
last frame fits; pre-emphasis 0.97 keeping the first sample; a rectangular window (no Hamming); the power
spectrum ``|rfft(frame, 512)|^2 / 512``; 26 triangular mel filters over 0-8 kHz; the log of the filter
energies (exact zeros replaced by float eps); an orthonormal DCT-II keeping 13 coefficients; the lifter
``1 + 11 sin(pi n / 22)``; and coefficient 0 replaced by the log of the frame's total power.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

__all__ = ["FRAME_LENGTH", "FRAME_STEP", "SAMPLE_RATE", "mfcc", "mfcc_frame_count"]

SAMPLE_RATE = 16_000
FRAME_LENGTH = 400  # 25 ms
FRAME_STEP = 160  # 10 ms
NFFT = 512
N_FILTERS = 26
N_CEPSTRA = 13
CEP_LIFTER = 22
PRE_EMPHASIS = 0.97


def mfcc_frame_count(n_samples: int) -> int:
    """Frames the MFCC has for ``n_samples`` samples (one frame for anything up to 25 ms)."""
    if n_samples <= FRAME_LENGTH:
        return 1
    return 1 + math.ceil((n_samples - FRAME_LENGTH) / FRAME_STEP)


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return np.asarray(2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0))


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return np.asarray(700.0 * (10.0 ** (mel / 2595.0) - 1.0))


@lru_cache(maxsize=1)
def _filter_bank() -> np.ndarray:
    """The 26 x 257 triangular mel filters; edges are whole FFT bins, as the reference computes them."""
    mels = np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_FILTERS + 2)
    edges = np.floor((NFFT + 1) * _mel_to_hz(mels) / SAMPLE_RATE)
    bank = np.zeros((N_FILTERS, NFFT // 2 + 1))
    bins = np.arange(NFFT // 2 + 1, dtype=np.float64)
    for j in range(N_FILTERS):
        low, mid, high = edges[j], edges[j + 1], edges[j + 2]
        rising = (bins >= low) & (bins < mid)
        falling = (bins >= mid) & (bins < high)
        bank[j, rising] = (bins[rising] - low) / (mid - low)
        bank[j, falling] = (high - bins[falling]) / (high - mid)
    bank.setflags(write=False)
    return bank


@lru_cache(maxsize=1)
def _dct_matrix() -> np.ndarray:
    """Rows 0..12 of the orthonormal DCT-II on 26 points (``scipy.fftpack.dct(norm='ortho')``)."""
    n = np.arange(N_FILTERS, dtype=np.float64)
    k = np.arange(N_CEPSTRA, dtype=np.float64)[:, None]
    basis = np.cos(np.pi * k * (2.0 * n + 1.0) / (2.0 * N_FILTERS)) * math.sqrt(2.0 / N_FILTERS)
    basis[0] /= math.sqrt(2.0)
    basis.setflags(write=False)
    return basis


@lru_cache(maxsize=1)
def _lifter() -> np.ndarray:
    n = np.arange(N_CEPSTRA, dtype=np.float64)
    lift = 1.0 + (CEP_LIFTER / 2.0) * np.sin(np.pi * n / CEP_LIFTER)
    lift.setflags(write=False)
    return lift


def mfcc(samples: np.ndarray) -> np.ndarray:
    """``[M, 13]`` float64 MFCC of int16 (or any real) mono samples at 16 kHz, frames by coefficients.

    ``M`` is :func:`mfcc_frame_count` of the length. An empty signal is refused (the reference would
    return a frame of a zero-length signal's artefacts, which no caller wants).
    """
    signal = np.asarray(samples)
    if signal.ndim != 1:
        raise ValueError(f"mfcc takes mono samples [S]; got shape {signal.shape}")
    if signal.size == 0:
        raise ValueError("mfcc needs at least one sample")
    emphasised = np.empty(signal.shape[0], dtype=np.float64)
    emphasised[0] = signal[0]
    emphasised[1:] = signal[1:] - PRE_EMPHASIS * signal[:-1]
    count = mfcc_frame_count(signal.shape[0])
    padded = np.zeros((count - 1) * FRAME_STEP + FRAME_LENGTH, dtype=np.float64)
    padded[: emphasised.shape[0]] = emphasised
    starts = np.arange(count)[:, None] * FRAME_STEP
    frames = padded[starts + np.arange(FRAME_LENGTH)[None, :]]
    power = np.square(np.abs(np.fft.rfft(frames, NFFT))) / NFFT
    energy = np.sum(power, axis=1)
    energy = np.where(energy == 0, np.finfo(float).eps, energy)
    filtered = power @ _filter_bank().T
    filtered = np.where(filtered == 0, np.finfo(float).eps, filtered)
    cepstra = np.log(filtered) @ _dct_matrix().T
    cepstra = cepstra * _lifter()
    cepstra[:, 0] = np.log(energy)
    return np.asarray(cepstra)
