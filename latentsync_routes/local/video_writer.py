"""Encoding the local route's output video with PyAV only (no ffmpeg binary): :class:`VideoWriter`.

It is its own module because writing (encoding, muxing the audio, committing atomically) shares nothing
with reading but the frame rate and the error type (:mod:`.video_base`). :mod:`.video` re-exports
:class:`VideoWriter`, so ``from latentsync_routes.local.video import VideoWriter`` keeps working.

Writing (:class:`VideoWriter`)
    libx264, yuv420p, CRF 18 by default, BT.709, 25 fps, encoded once; the official encodes twice,
    which users see as whole-frame degradation. Odd sizes are padded to even by repeating the edge,
    so no pixel is lost (``odd_size="crop"`` drops the edge instead). The file is written to a
    hidden temp file beside the destination and ``os.replace``'d on success or deleted on error.
    So no truncated file ever sits under the final name, and concurrent runs never collide (the
    official uses a fixed ``temp/``).

Output audio: decision
    By default the output carries the user's original audio (``audio_path``), re-encoded to AAC at
    its own sample rate. Mono stays mono, and anything else becomes stereo. The official muxes the
    16 kHz mono copy it fed the model instead. That copy is band-limited to 8 kHz and audibly
    worse, and keeping the original changes neither the model inputs nor the picture. The track
    starts at its first sample, the origin the audio features use too, so sync is unchanged. It is
    cut to ``frames * rate // 25`` samples (the official ``int(n/25*sr)``) and not padded when
    shorter. It usually is shorter, by about 2 frames, as in the official. For parity runs,
    ``audio_samples=`` with ``audio_sample_rate=16000`` writes the official 16 kHz mono audio.
    Audio is interleaved with the video as it is written, and ``+faststart`` puts the index first,
    so the file streams.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np

from .video_base import TARGET_FPS, VideoError, open_input

__all__ = ["VideoWriter"]

_AAC_RATES = {7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000}
_AUDIO_CHUNK = 1024  # AAC frame size; audio reaches the encoder in chunks of this many samples


class _AudioFeed:
    """Audio for the writer as fltp (channels, <=1024) chunks, with one chunk of look-ahead."""

    def __init__(self, source: str | os.PathLike[str] | tuple[np.ndarray, int]) -> None:
        self._container: Any = None
        if isinstance(source, tuple):
            mono = np.asarray(source[0], dtype=np.float32).reshape(-1)
            self.layout, self.rate = "mono", int(source[1])
            inputs: Iterable[av.AudioFrame] = self._from_array(mono, self.rate)
        else:
            self._container = open_input(source)
            if not self._container.streams.audio:
                self.close()
                raise VideoError(f"{source} has no audio stream")
            stream = self._container.streams.audio[0]
            self.layout = "mono" if stream.codec_context.layout.nb_channels == 1 else "stereo"
            self.rate = int(stream.codec_context.sample_rate)
            inputs = self._container.decode(stream)
        self.rate = self.rate if self.rate in _AAC_RATES else 48_000
        self.channels = 1 if self.layout == "mono" else 2
        resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate, frame_size=_AUDIO_CHUNK)
        self._chunks = self._resampled(inputs, resampler)
        self._pending: np.ndarray | None = None

    @staticmethod
    def _from_array(samples: np.ndarray, rate: int) -> Iterator[av.AudioFrame]:
        for begin in range(0, samples.size, 4096):
            frame = av.AudioFrame.from_ndarray(samples[None, begin : begin + 4096], format="flt", layout="mono")
            frame.sample_rate = rate
            yield frame

    @staticmethod
    def _resampled(inputs: Iterable[av.AudioFrame], resampler: av.AudioResampler) -> Iterator[np.ndarray]:
        for frame in inputs:
            frame.pts = None  # a sample-count timeline, as in load_audio
            yield from (out.to_ndarray() for out in resampler.resample(frame))
        yield from (out.to_ndarray() for out in resampler.resample(None))

    def take(self, limit: int, sent: int, *, cut: bool) -> np.ndarray | None:
        """The next chunk if it keeps ``sent`` within ``limit``; with ``cut``, its fitting head."""
        if self._pending is None:
            self._pending = next(self._chunks, None)
        chunk, room = self._pending, limit - sent
        if chunk is None or room <= 0 or (chunk.shape[1] > room and not cut):
            return None
        self._pending = None
        return chunk if chunk.shape[1] <= room else np.ascontiguousarray(chunk[:, :room])

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


class VideoWriter:
    """Encode RGB uint8 frames as H.264 at ``fps``, mux audio, and commit atomically.

    Use it as a context manager: a clean exit commits (:meth:`close`), an exception aborts
    (:meth:`abort`). Frames come one at a time (:meth:`write`) or by chunk (:meth:`write_chunk`).
    The first frame fixes the size. ``audio_path`` muxes that file's first audio track (see the
    module docstring), and ``audio_samples`` muxes a mono float array at ``audio_sample_rate``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fps: int = TARGET_FPS,
        crf: int = 18,
        preset: str = "medium",
        audio_path: str | os.PathLike[str] | None = None,
        audio_samples: np.ndarray | None = None,
        audio_sample_rate: int = 16_000,
        audio_bitrate: int | None = None,
        odd_size: Literal["pad", "crop"] = "pad",
        faststart: bool = True,
    ) -> None:
        if audio_path is not None and audio_samples is not None:
            raise ValueError("give audio_path or audio_samples, not both")
        if odd_size not in ("pad", "crop"):
            raise ValueError("odd_size must be 'pad' or 'crop'")
        self.path = Path(path)
        self.fps, self.crf, self.preset, self.odd_size = int(fps), int(crf), preset, odd_size
        self.faststart, self.audio_bitrate = faststart, audio_bitrate
        self.frames_written = self.audio_samples_written = 0
        self._tmp = self.path.with_name(f".{self.path.stem}.partial-{secrets.token_hex(4)}{self.path.suffix}")
        self._container: Any = None
        self._video: Any = None
        self._audio: Any = None
        self._size: tuple[int, int] | None = None  # (height, width) of the incoming frames
        self._done = self._committed = False
        self._feed: _AudioFeed | None = None
        if audio_path is not None:
            self._feed = _AudioFeed(audio_path)
        elif audio_samples is not None:
            self._feed = _AudioFeed((audio_samples, audio_sample_rate))

    def _open(self, height: int, width: int) -> None:
        grow = 1 if self.odd_size == "pad" else -1
        out_h, out_w = height + grow * (height % 2), width + grow * (width % 2)
        if out_h <= 0 or out_w <= 0:
            raise ValueError(f"frame size {width}x{height} is too small to encode")
        options = {"movflags": "+faststart"} if self.faststart else {}
        self._container = av.open(str(self._tmp), mode="w", container_options=options)
        self._size = (height, width)
        video = self._container.add_stream(
            "libx264", rate=self.fps, options={"crf": str(self.crf), "preset": self.preset}
        )
        video.width, video.height, video.pix_fmt = out_w, out_h, "yuv420p"
        video.time_base = Fraction(1, self.fps)
        ctx = video.codec_context
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = 1  # AVCOL_*_BT709, as converted below
        ctx.color_range = 1  # AVCOL_RANGE_MPEG (limited)
        self._video = video
        if self._feed is not None:
            self._audio = self._container.add_stream("aac", rate=self._feed.rate, layout=self._feed.layout)
            self._audio.bit_rate = self.audio_bitrate or (128_000 if self._feed.channels == 1 else 192_000)

    def write(self, frame: np.ndarray) -> None:
        """Encode one (H, W, 3) uint8 RGB frame (then any audio that now fits under the video)."""
        if self._done:
            raise VideoError("writer is closed")
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got {frame.shape} {frame.dtype}")
        if self._size is None:
            self._open(frame.shape[0], frame.shape[1])
        elif frame.shape[:2] != self._size:
            raise ValueError(f"frame size {frame.shape[:2]} differs from the first frame's {self._size}")
        height, width = self._video.height, self._video.width
        if self.odd_size == "pad" and (height, width) != frame.shape[:2]:
            frame = np.pad(frame, ((0, height - frame.shape[0]), (0, width - frame.shape[1]), (0, 0)), "edge")
        rgb = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:height, :width]), format="rgb24")
        yuv = rgb.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
        yuv.pts = self.frames_written
        for packet in self._video.encode(yuv):
            self._container.mux(packet)
        self.frames_written += 1
        self._pump_audio(cut=False)

    def write_chunk(self, frames: np.ndarray | Sequence[np.ndarray]) -> None:
        """Encode a (k, H, W, 3) array or a sequence of (H, W, 3) frames."""
        for frame in frames:
            self.write(np.asarray(frame))

    def _pump_audio(self, *, cut: bool) -> None:
        """Encode audio up to the video written so far, so the muxer can interleave the two."""
        if self._feed is None or self._audio is None:
            return
        limit = self.frames_written * self._feed.rate // self.fps
        while (chunk := self._feed.take(limit, self.audio_samples_written, cut=cut)) is not None:
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self._feed.layout)
            frame.sample_rate, frame.time_base = self._feed.rate, Fraction(1, self._feed.rate)
            frame.pts = self.audio_samples_written
            for packet in self._audio.encode(frame):
                self._container.mux(packet)
            self.audio_samples_written += chunk.shape[1]

    def close(self) -> Path:
        """Flush the encoders, finish the file and rename it into place. Returns the final path."""
        if self._done:
            if not self._committed:
                raise VideoError("writer was aborted; nothing was written")
            return self.path
        if self.frames_written == 0:
            self.abort()
            raise VideoError("no frames were written")
        try:
            self._pump_audio(cut=True)
            for stream in (self._video, self._audio):
                for packet in stream.encode(None) if stream is not None else ():
                    self._container.mux(packet)
            self._container.close()
            self._container = None
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._done = self._committed = True
        if self._feed is not None:
            self._feed.close()
        return self.path

    def abort(self) -> None:
        """Drop what was written and remove the temp file. Safe to call more than once."""
        self._done = True
        if self._container is not None:
            try:
                self._container.close()
            except (av.FFmpegError, OSError, ValueError):
                pass  # the file is being thrown away; a failed trailer write does not matter
            self._container = None
        if self._feed is not None:
            self._feed.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
