"""Synthetic media for demos and tests of your own app: no faces, no voices, no numpy.

``write_test_video`` writes a real H.264 + AAC mp4 and ``write_test_audio`` a real PCM wav, so every
probe, upload and download path runs as it would on user media.
"""

from __future__ import annotations

import math
import wave
from array import array
from pathlib import Path

from ._media import tiny_mp4


def write_test_video(path: str | Path, seconds: float = 2.0, *, width: int = 64, height: int = 64) -> Path:
    """A small mp4 (a fading colour card with a 220 Hz tone) of about ``seconds`` at 25 fps."""
    target = Path(path)
    target.write_bytes(tiny_mp4(width=width, height=height, fps=25, seconds=seconds))
    return target


def write_test_audio(path: str | Path, seconds: float = 3.0, *, rate: int = 16000, hz: float = 440.0) -> Path:
    """A mono 16-bit PCM wav holding a tone of ``seconds``."""
    target = Path(path)
    total = int(seconds * rate)
    samples = array("h", (int(9000 * math.sin(2 * math.pi * hz * n / rate)) for n in range(total)))
    with wave.open(str(target), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return target
