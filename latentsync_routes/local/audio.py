"""Whisper-tiny audio features for LatentSync, in our own torch code.

LatentSync conditions its UNet on the hidden states of the Whisper *encoder* only: the text decoder is never
run. So rather than depend on the ``openai-whisper`` package (which drags in numba, tiktoken and an ffmpeg
binary to decode audio), this module carries a small encoder whose parameter names match the openai
checkpoint, a log-mel front end whose filterbank is computed here, and a PyAV loader.

The numerics follow what LatentSync 1.5/1.6 actually feed the UNet (pinned by the goldens in
``whisper_small_dims/``):

* log-mel: 400-point Hann STFT, hop 160, centred with reflect padding, the last frame dropped, an 80-band
  Slaney mel filterbank, ``log10(max(x, 1e-10))``, floored at (max over the *whole file*) - 8, then
  ``(x + 4) / 4``;
* the mel is cut into 30 s windows of 3000 frames, each zero-padded (in the normalised log domain) and encoded
  on its own; of the 1500 encoder positions per window, the first ``frames_in_window // 2`` are kept;
* each kept position carries 5 hidden states (the input after the positional embedding and the output of each
  of the 4 blocks, all before ``ln_post``);
* video frame ``i`` (25 fps) gets rows ``2i-4 .. 2i+5`` (clamped) x 5 layers = a (50, D) token matrix, and a
  clip has ``floor(L / 2) + 2`` frames.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SAMPLE_RATE = 16_000
N_FFT = 400
HOP_LENGTH = 160
WINDOW_FRAMES = 3000  # 30 s of mel frames per encoder pass
FEATURE_RATE = 50  # encoder positions per second (conv2 has stride 2 over 100 mel frames/s)
ROWS_BEFORE = 4  # feature rows before the centre row of a video frame (2 video frames x 2 rows)
ROWS_AFTER = 6  # exclusive upper offset: the centre row plus 5 more
LOG_FLOOR_DB = 8.0  # log10 units below the whole-file maximum that the mel is clamped to

__all__ = [
    "SAMPLE_RATE",
    "TINY_DIMS",
    "WhisperDims",
    "WhisperFeatures",
    "chunk_count",
    "feature_row_count",
    "frame_count",
    "load_audio",
    "log_mel_spectrogram",
    "mel_frame_count",
    "slaney_mel_filterbank",
]


# --------------------------------------------------------------------------------------------------------
# Dimensions
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WhisperDims:
    """The encoder half of openai-whisper's ``ModelDimensions`` (decoder sizes are irrelevant here)."""

    n_mels: int
    n_audio_ctx: int
    n_audio_state: int
    n_audio_head: int
    n_audio_layer: int

    @classmethod
    def from_mapping(cls, dims: Mapping[str, Any] | WhisperDims) -> WhisperDims:
        """Accept a checkpoint's ``dims`` dict (text-decoder keys are ignored) or an existing instance."""
        if isinstance(dims, WhisperDims):
            return dims
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in dims]
        if missing:
            raise ValueError(f"whisper dims lack {missing}; got keys {sorted(dims)}")
        return cls(**{n: int(dims[n]) for n in names})


TINY_DIMS = WhisperDims(n_mels=80, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6, n_audio_layer=4)


# --------------------------------------------------------------------------------------------------------
# Frame-count rules (pure integer arithmetic, usable before any audio is decoded)
# --------------------------------------------------------------------------------------------------------


def mel_frame_count(num_samples: int) -> int:
    """Mel frames for ``num_samples`` at 16 kHz: a centred STFT gives ``n // hop + 1``; the last is dropped."""
    return max(int(num_samples), 0) // HOP_LENGTH


def feature_row_count(num_samples: int) -> int:
    """Rows ``L`` of the feature stack: each 3000-frame window keeps ``floor(frames / 2)`` positions.

    Because 3000 is even this equals ``mel_frames // 2``, but it is written per window to mirror the rule.
    """
    frames = mel_frame_count(num_samples)
    full, rest = divmod(frames, WINDOW_FRAMES)
    return full * (WINDOW_FRAMES // 2) + rest // 2


def _centre_row(index: int, fps: float) -> int:
    return int(index * FEATURE_RATE / fps)


def chunk_count(num_rows: int, fps: float = 25) -> int:
    """Video frames produced from ``num_rows`` feature rows.

    The reference loop appends frame ``i`` and stops after the first ``i`` whose start row exceeds ``L``,
    so at 25 fps the count is ``floor(L / 2) + 2``: two frames more than the audio strictly covers.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    step = FEATURE_RATE / float(fps)
    i = 0
    while True:
        start = int(i * step)
        i += 1
        if start > num_rows:
            return i


def frame_count(num_samples: int, fps: float = 25) -> int:
    """Output video frames for an audio clip of ``num_samples`` samples at 16 kHz (``floor(L/2)+2`` at 25 fps)."""
    return chunk_count(feature_row_count(num_samples), fps)


# --------------------------------------------------------------------------------------------------------
# Log-mel front end
# --------------------------------------------------------------------------------------------------------


def _hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    # Slaney's Auditory Toolbox scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above.
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    mel = hz / f_sp
    high = hz >= min_log_hz
    mel[high] = min_log_mel + np.log(hz[high] / min_log_hz) / logstep
    return mel


def _mel_to_hz_slaney(mel: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    hz = mel * f_sp
    high = mel >= min_log_mel
    hz[high] = min_log_hz * np.exp(logstep * (mel[high] - min_log_mel))
    return hz


def slaney_mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = 80) -> np.ndarray:
    """Triangular mel filters on the Slaney scale, area-normalised; shape ``(n_mels, n_fft // 2 + 1)``.

    Whisper ships this matrix as a binary asset made with librosa's defaults (``htk=False``,
    ``norm="slaney"``, fmin 0, fmax sr/2). Computing it keeps that asset and librosa out of the package; the
    arithmetic is done in float64 and the weights are stored as float32 at the same points the asset's
    generator did, so the result agrees with it to float32 rounding.
    """
    n_bins = n_fft // 2 + 1
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_bins)
    mel_edges = np.linspace(
        _hz_to_mel_slaney(np.array([0.0]))[0], _hz_to_mel_slaney(np.array([sample_rate / 2.0]))[0], n_mels + 2
    )
    hz_edges = _mel_to_hz_slaney(mel_edges)
    widths = np.diff(hz_edges)
    offsets = hz_edges[:, None] - fft_freqs[None, :]
    weights = np.zeros((n_mels, n_bins), dtype=np.float32)
    for m in range(n_mels):
        rising = -offsets[m] / widths[m]
        falling = offsets[m + 2] / widths[m + 1]
        weights[m] = np.maximum(0.0, np.minimum(rising, falling))
    area = 2.0 / (hz_edges[2 : n_mels + 2] - hz_edges[:n_mels])
    weights *= area[:, None]
    return weights


@lru_cache(maxsize=4)
def _filterbank_tensor(n_mels: int) -> torch.Tensor:
    return torch.from_numpy(slaney_mel_filterbank(n_mels=n_mels))


def _as_waveform(samples: np.ndarray | torch.Tensor) -> torch.Tensor:
    wave = samples if isinstance(samples, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(samples))
    if wave.ndim != 1:
        raise ValueError(f"expected mono samples of shape (n,), got {tuple(wave.shape)}")
    if wave.shape[0] <= N_FFT // 2:
        # Reflect padding needs more samples than the pad width; this is ~12 ms at 16 kHz.
        raise ValueError(f"audio too short for a log-mel spectrogram: {wave.shape[0]} samples")
    return wave.to(torch.float32)


def log_mel_spectrogram(
    samples: np.ndarray | torch.Tensor, n_mels: int = 80, device: torch.device | str | None = None
) -> torch.Tensor:
    """Whisper's normalised log-mel of a whole clip, ``(n_mels, n // 160)`` float32.

    The floor is taken against the maximum of the *whole file*, not of each 30 s window: that is what
    LatentSync does, and it makes features depend on loud passages anywhere in the clip.
    """
    wave = _as_waveform(samples)
    if device is not None:
        wave = wave.to(device)
    window = torch.hann_window(N_FFT, device=wave.device)
    spec = torch.stft(wave, N_FFT, HOP_LENGTH, window=window, center=True, return_complex=True)
    power = spec[:, :-1].abs() ** 2
    mel = _filterbank_tensor(n_mels).to(wave.device) @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - LOG_FLOOR_DB)
    return (log_spec + 4.0) / 4.0


# --------------------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------------------


def sinusoids(length: int, channels: int, max_timescale: float = 10_000.0) -> torch.Tensor:
    """Whisper's fixed positional table: ``[sin(t * w_k), cos(t * w_k)]`` with geometric ``w_k``."""
    if channels % 2:
        raise ValueError("positional embedding needs an even channel count")
    half = channels // 2
    step = math.log(max_timescale) / (half - 1)
    rates = torch.exp(-step * torch.arange(half, dtype=torch.float32))
    angles = torch.arange(length, dtype=torch.float32)[:, None] * rates[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class _LayerNorm(nn.LayerNorm):
    """LayerNorm evaluated in float32 even when the module runs in half precision, as Whisper does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class _SelfAttention(nn.Module):
    """Multi-head self-attention with Whisper's parameter names (``key`` has no bias)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key = nn.Linear(width, width, bias=False)
        self.value = nn.Linear(width, width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

        # Whisper scales q and k by d^-1/4 each; SDPA's default 1/sqrt(d) on q.k is the same product.
        mixed = F.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)), split(self.value(x)))
        return cast("torch.Tensor", self.out(mixed.transpose(1, 2).reshape(batch, length, width)))


class _Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = _SelfAttention(width, heads)
        self.attn_ln = _LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.mlp_ln = _LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_ln(x))
        return cast("torch.Tensor", x + self.mlp(self.mlp_ln(x)))


class WhisperFeatures(nn.Module):
    """Whisper audio encoder returning LatentSync's stacked hidden states.

    ``forward`` maps ``(B, n_mels, 3000)`` log-mel windows to ``(B, 1500, n_layer + 1, D)``. ``ln_post`` is
    kept so openai checkpoints load strictly, but LatentSync uses the pre-``ln_post`` states, so it is never
    applied.
    """

    positional_embedding: torch.Tensor

    def __init__(self, dims: WhisperDims | Mapping[str, Any] = TINY_DIMS) -> None:
        super().__init__()
        self.dims = WhisperDims.from_mapping(dims)
        d = self.dims
        if d.n_audio_ctx != WINDOW_FRAMES // 2:
            raise ValueError(f"n_audio_ctx must be {WINDOW_FRAMES // 2} for 30 s windows, got {d.n_audio_ctx}")
        self.conv1 = nn.Conv1d(d.n_mels, d.n_audio_state, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(d.n_audio_state, d.n_audio_state, kernel_size=3, stride=2, padding=1)
        self.register_buffer("positional_embedding", sinusoids(d.n_audio_ctx, d.n_audio_state))
        self.blocks = nn.ModuleList([_Block(d.n_audio_state, d.n_audio_head) for _ in range(d.n_audio_layer)])
        self.ln_post = _LayerNorm(d.n_audio_state)

    # ---- construction ------------------------------------------------------------------------------

    @classmethod
    def from_state_dict(
        cls, state_dict: Mapping[str, torch.Tensor], dims: WhisperDims | Mapping[str, Any]
    ) -> WhisperFeatures:
        """Build from openai-whisper encoder weights, with or without the ``encoder.`` prefix.

        Decoder keys are dropped; every encoder key must match (strict), because a silently partial load
        would still produce plausible-looking but wrong features. Weights are upcast to float32.
        """
        prefixed = any(k.startswith("encoder.") for k in state_dict)
        own: dict[str, torch.Tensor] = {}
        for key, value in state_dict.items():
            if prefixed:
                if key.startswith("encoder."):
                    own[key[len("encoder.") :]] = value
            elif not key.startswith("decoder."):
                own[key] = value
        model = cls(dims)
        expected = set(model.state_dict())
        missing = sorted(expected - own.keys())
        unexpected = sorted(own.keys() - expected)
        if missing or unexpected:
            raise ValueError(
                f"whisper encoder weights do not match dims {model.dims}: "
                f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
                f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}"
            )
        model.load_state_dict({k: v.to(torch.float32) for k, v in own.items()}, strict=True)
        return model.eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> WhisperFeatures:
        """Load an openai-format ``tiny.pt`` (``{"dims", "model_state_dict"}``) without unpickling code.

        ``weights_only`` keeps arbitrary pickled objects out; ``mmap`` avoids reading the unused decoder
        weights into memory (it needs the zip format, so legacy files fall back to a plain read).
        """
        try:
            ckpt = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            ckpt = torch.load(str(path), map_location="cpu", weights_only=True)
        if not isinstance(ckpt, Mapping) or "dims" not in ckpt or "model_state_dict" not in ckpt:
            raise ValueError(f"{path} is not an openai-whisper checkpoint (needs 'dims' and 'model_state_dict')")
        return cls.from_state_dict(ckpt["model_state_dict"], ckpt["dims"])

    # ---- computation -------------------------------------------------------------------------------

    def forward(self, mel_windows: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv1(mel_windows))
        x = F.gelu(self.conv2(x))
        x = x.permute(0, 2, 1) + self.positional_embedding.to(x.dtype)
        states = [x]
        for block in self.blocks:
            x = block(x)
            states.append(x)
        return torch.stack(states, dim=2)

    def _param(self) -> torch.Tensor:
        return self.conv1.weight

    def log_mel(self, samples: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Whole-clip normalised log-mel ``(n_mels, T)`` float32, on this module's device."""
        return log_mel_spectrogram(samples, self.dims.n_mels, device=self._param().device)

    @torch.no_grad()
    def features(self, samples: np.ndarray | torch.Tensor, windows_per_batch: int = 4) -> torch.Tensor:
        """The ``(L, n_layer + 1, D)`` feature stack of a mono 16 kHz clip, in this module's dtype.

        Windows are encoded ``windows_per_batch`` at a time: batching is exact (windows never see each other)
        and only bounds memory, since each 30 s window's attention maps are 1500 x 1500 per head.
        """
        mel = self.log_mel(samples)
        total = mel.shape[1]
        windows: list[torch.Tensor] = []
        keeps: list[int] = []
        for start in range(0, total, WINDOW_FRAMES):
            window = mel[:, start : start + WINDOW_FRAMES]
            keeps.append(window.shape[1] // 2)
            windows.append(F.pad(window, (0, WINDOW_FRAMES - window.shape[1])))
        dtype = self._param().dtype
        rows: list[torch.Tensor] = []
        for first in range(0, len(windows), max(1, windows_per_batch)):
            batch = torch.stack(windows[first : first + max(1, windows_per_batch)]).to(dtype)
            states = self(batch)
            for offset, hidden in enumerate(states):
                rows.append(hidden[: keeps[first + offset]])
        return torch.cat(rows, dim=0)

    @staticmethod
    def chunks(features: torch.Tensor, fps: float = 25) -> torch.Tensor:
        """Per-video-frame token matrices ``(N, 10 * layers, D)`` from a ``(L, layers, D)`` stack.

        Frame ``i`` takes rows ``c-4 .. c+5`` around ``c = int(i * 50 / fps)``, clamped to the clip, and
        flattens them row-major (row, then layer), which is the token order the UNet was trained on.
        """
        if features.ndim != 3 or features.shape[0] == 0:
            raise ValueError(f"expected a non-empty (L, layers, D) feature stack, got {tuple(features.shape)}")
        length, layers, width = features.shape
        count = chunk_count(length, fps)
        centres = torch.tensor([_centre_row(i, fps) for i in range(count)], dtype=torch.long)
        offsets = torch.arange(-ROWS_BEFORE, ROWS_AFTER, dtype=torch.long)
        index = (centres[:, None] + offsets[None, :]).clamp_(0, length - 1).to(features.device)
        return features[index].reshape(count, offsets.numel() * layers, width)

    @staticmethod
    def frame_count(num_samples: int, fps: float = 25) -> int:
        """Output frames for a clip of ``num_samples`` samples; see :func:`frame_count`."""
        return frame_count(num_samples, fps)


# --------------------------------------------------------------------------------------------------------
# Audio decoding
# --------------------------------------------------------------------------------------------------------


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream of any container PyAV reads into mono float32 at ``sample_rate``.

    The reference pipeline pipes ``ffmpeg -ac 1 -ar 16000 -f s16le`` and divides by 32768, so this is the
    16-bit path of :func:`latentsync_routes.local.video.load_audio` (same libswresample machinery through
    PyAV, no ffmpeg binary): a 16 kHz mono 16-bit WAV comes back exactly as ``int16 / 32768``.
    """
    from .video import load_audio as decode

    return decode(path, sample_rate, s16=True)
