"""Small real media files for tests, written with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_video(
    path: Path,
    seconds: float = 1.0,
    *,
    fps: int = 25,
    size: tuple[int, int] = (64, 48),
    with_audio: bool = False,
    codec: str = "libx264",
    noise: bool = False,
) -> Path:
    """An H.264 mp4 whose frame k is filled with grey level k (mod 256), optionally with a tone track.

    ``noise=True`` fills frames with random pixels instead, for files that are large for their duration.
    """
    rng = np.random.default_rng(0)
    width, height = size
    frames = max(1, int(round(seconds * fps)))
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        audio_stream = container.add_stream("aac", rate=16000) if with_audio else None
        for k in range(frames):
            if noise:
                image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            else:
                image = np.full((height, width, 3), (k * 7) % 256, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio_stream is not None:
            _encode_tone(container, audio_stream, seconds, 16000)
    return path


def _encode_tone(container: av.container.OutputContainer, stream: av.AudioStream, seconds: float, rate: int) -> None:
    total = int(seconds * rate)
    t = np.arange(total) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    step = 1024
    for start in range(0, total, step):
        chunk = samples[start : start + step]
        frame = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def make_wav(path: Path, seconds: float = 1.0, *, rate: int = 16000) -> Path:
    """A mono PCM wav with a 440 Hz tone."""
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=rate)
        stream.layout = "mono"
        total = int(seconds * rate)
        t = np.arange(total) / rate
        samples = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
        for start in range(0, total, 4096):
            chunk = samples[start : start + 4096]
            frame = av.AudioFrame.from_ndarray(chunk[None, :], format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
