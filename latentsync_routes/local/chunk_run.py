"""The chunk loop every driver of the pipeline shares: one job's sampler, aligner, audio and noise.

:func:`~.pipeline.sync_frames`, :func:`~.pipeline.sync_video` and a segment of a split run
(:mod:`.segments`) each walk the output in 16-frame chunks. They differ in where frames and faces come
from; what a chunk is fed from the job (its audio windows, its share of the random numbers, the shared
initial noise) must not differ, or the same inputs and seed would give different frames. So that part is
one object, :class:`ChunkRun`, used by all three.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch

from .align import FaceAligner
from .audio import FEATURE_RATE, ROWS_AFTER, ROWS_BEFORE, WhisperFeatures
from .sampler import LATENT_CHANNELS, ChunkResult, ChunkSampler, Noise, sync_chunk

__all__ = ["CHUNK_FRAMES", "FPS", "ChunkRun", "audio_windows", "whisper_features"]

CHUNK_FRAMES = 16  # frames the UNet sees at once (its motion modules and ResNet norms span them)
FPS = 25


def audio_windows(features: torch.Tensor, start: int, count: int, fps: float = FPS) -> torch.Tensor:
    """The (count, 10 * layers, D) audio tokens of output frames ``start .. start + count - 1``.

    The same rows :meth:`WhisperFeatures.chunks` gives (frame ``i`` takes rows ``2i-4 .. 2i+5``, clamped to
    the clip), computed for one chunk only so a long clip never holds every frame's tokens at once.
    """
    length, layers, width = features.shape
    centres = torch.tensor([int(i * FEATURE_RATE / fps) for i in range(start, start + count)], dtype=torch.long)
    offsets = torch.arange(-ROWS_BEFORE, ROWS_AFTER, dtype=torch.long)
    index = (centres[:, None] + offsets[None, :]).clamp_(0, length - 1).to(features.device)
    return features[index].reshape(count, offsets.numel() * layers, width)


def whisper_features(whisper: WhisperFeatures, samples: Any) -> torch.Tensor:
    """The whole clip's Whisper features (L, layers, D), float32 on the CPU.

    Computed once over the whole file (Whisper normalises its log-mel over all of it); every chunk takes its
    windows from this one tensor (:func:`audio_windows`).
    """
    with torch.inference_mode():
        feats = whisper.features(samples)
    return feats.to("cpu", torch.float32)


class ChunkRun:
    """One job's chunk loop: sampler, aligner, audio features and noise, fed to :func:`sync_chunk` one way.

    Every driver (:func:`~.pipeline.sync_frames`, :func:`~.pipeline.sync_video`, a segment of
    :mod:`.segments`) goes through it, so all take the same audio windows and draw the random numbers in the
    same order: the initial frame when the run is made, then each chunk's posterior pair in chunk order.
    :meth:`skip` draws a chunk's pair without running it, for a driver that starts past the first chunk.
    """

    def __init__(self, sampler: ChunkSampler, aligner: FaceAligner, features: torch.Tensor, noise: Noise) -> None:
        self.sampler, self.aligner, self.features, self.noise = sampler, aligner, features, noise
        lat = sampler.latent_size
        self.init = noise.initial((1, LATENT_CHANNELS, 1, lat, lat))

    def _posterior(self, chunk: int, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        lat = self.sampler.latent_size
        return self.noise.posterior(chunk, (count, LATENT_CHANNELS, lat, lat))

    def skip(self, chunk: int, count: int) -> None:
        """Draw chunk ``chunk``'s noise (``count`` frames) and drop it: the generator moves on as if it ran."""
        self._posterior(chunk, count)

    def run(
        self,
        chunk: int,
        frames: Sequence[np.ndarray],
        faces: Sequence[np.ndarray | None],
        matrices: Sequence[np.ndarray | None],
        *,
        exclusive: AbstractContextManager[Any] | None = None,
        on_step: Callable[[int, torch.Tensor], None] | None = None,
    ) -> ChunkResult:
        """Chunk ``chunk`` (output frames from ``chunk * CHUNK_FRAMES``) through :func:`sync_chunk`."""
        count = len(frames)
        noise = self._posterior(chunk, count)
        audio = audio_windows(self.features, chunk * CHUNK_FRAMES, count)
        latents = self.init.expand(-1, -1, count, -1, -1)
        return sync_chunk(
            self.sampler, self.aligner, frames, faces, matrices, audio, latents, noise,
            exclusive=exclusive, on_step=on_step,
        )  # fmt: skip
