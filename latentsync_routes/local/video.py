"""Streaming video/audio I/O for the local route, with PyAV only (no ffmpeg binary).

Reading (:class:`FrameReader`)
    The official pipeline re-encodes to 25 fps with ffmpeg (one lossy generation) and then holds
    every frame in RAM, so RAM grows with video length. Here frames are decoded once, resampled to
    25 fps in code and yielded as they come. The resampling follows libavfilter's ``fps`` filter
    (``round=near``). Source frame ``i`` at time ``t_i`` gets the tick
    ``round_half_up((t_i - t_0) * 25)``, and output frame ``k`` is the last source frame whose
    tick is ``<= k``. Output ends at the rounded end of the last frame (pts + duration), so a clip
    of duration ``d`` gives ``round(d * 25)`` frames. One deliberate difference from ffmpeg: the
    grid is anchored at the first decoded frame, not at timestamp 0. Output frame ``k`` then lines
    up with audio sample ``k * sr / 25`` counted from the first sample, as :func:`load_audio`
    counts. Display-matrix rotation is undone, as ffmpeg's autorotate does.

Looping (official ``loop_video``)
    When the audio needs ``n`` frames and the video has ``N < n``, the official plays the frames
    forward, reversed, forward, and so on, cut to ``n``. The turns repeat the end frames
    (``N-2, N-1, N-1, N-2 .. 0, 0, 1``). When ``N >= n`` it truncates. ``loop="pingpong"``
    reproduces this, ``"loop"`` restarts, and ``"none"`` stops at the end. RAM stays bounded:
    * A ring of the last ``tail_frames`` frames serves a short first reverse pass. This is the
      common case: with equal-length audio the output is about 2 frames longer than the video.
    * Longer reverse passes read a spill file of raw RGB frames in a private ``mkdtemp`` dir. It is
      written during the first pass when the metadata estimate says it will be needed, or by a
      second decode otherwise. It is a ring that holds only as many trailing frames as the reverse
      turn reaches back, so audio a little longer than a long video does not copy the whole video
      to disk. At most it costs ``N*H*W*3`` bytes, checked against free space. It is read one
      frame at a time with ``readinto``, not mmap, so page cache never counts as our RSS.
    * Seeking back and re-decoding in reverse was rejected: every step back decodes from the
      previous keyframe, and open-GOP or badly indexed files are not frame-exact after a seek.
    * Forward passes after the first decode again (or read the spill when there is one).

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

import io
import math
import os
import secrets
import shutil
import tempfile
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np

__all__ = ["TARGET_FPS", "FrameReader", "LoopMode", "VideoError", "VideoWriter", "load_audio"]

TARGET_FPS = 25
LoopMode = Literal["pingpong", "loop", "none"]
_LOOP_MODES = ("pingpong", "loop", "none")
_AAC_RATES = {7350, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000}
_AUDIO_CHUNK = 1024  # AAC frame size; audio reaches the encoder in chunks of this many samples
Frames = Generator[np.ndarray, None, None]


class VideoError(RuntimeError):
    """A media file cannot be read or written as asked (no stream, no frames, no disk space)."""


def _round_half_up(x: Fraction) -> int:
    """``av_rescale_q_rnd(..., AV_ROUND_NEAR_INF)`` for the non-negative times used here."""
    return math.floor(x + Fraction(1, 2))


def _open_input(path: str | os.PathLike[str]) -> Any:
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f"cannot open {path}: {exc}") from exc


def _upright(frame: av.VideoFrame, rotation: int) -> np.ndarray:
    """C-contiguous RGB uint8 (H, W, 3), converted with the frame's own colour tags, shown upright.

    ``rotation`` is the display matrix's counter-clockwise angle, which ffmpeg's autorotate undoes,
    so ``np.rot90`` (also counter-clockwise) by that angle gives the picture as players show it.
    """
    rgb: np.ndarray = frame.to_ndarray(format="rgb24")
    return np.ascontiguousarray(np.rot90(rgb, round(rotation / 90) % 4))


class _Spill:
    """Raw RGB frames in a ring file of ``capacity`` slots in a private temp dir (RAM: one frame).

    Frame ``i`` lives in slot ``i % capacity``, so only the last ``capacity`` frames are kept.
    That is all a single, partial reverse turn needs.
    """

    def __init__(self, shape: tuple[int, ...], capacity: int, parent: Path | None) -> None:
        self.shape, self.frame_bytes, self.count = shape, int(np.prod(shape)), 0
        self.capacity = max(capacity, 1)
        self._dir = Path(tempfile.mkdtemp(prefix="latentsync-frames-", dir=parent))
        need, free = self.frame_bytes * self.capacity, shutil.disk_usage(self._dir).free
        if free < need:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise VideoError(
                f"looping needs ~{need / 1e9:.1f} GB of temp space for decoded frames in "
                f"{self._dir.parent} but {free / 1e9:.1f} GB is free; pass spill_dir= elsewhere"
            )
        self._file: io.BufferedRandom = open(self._dir / "frames.rgb", "w+b")

    def append(self, frame: np.ndarray) -> None:
        self._file.seek(self.count % self.capacity * self.frame_bytes)
        self._file.write(np.ascontiguousarray(frame).data)
        self.count += 1

    def read(self, index: int) -> np.ndarray:
        assert self.count - self.capacity <= index < self.count, "frame no longer in the ring"
        out = np.empty(self.shape, dtype=np.uint8)
        self._file.seek(index % self.capacity * self.frame_bytes)
        if self._file.readinto(out.data.cast("B")) != self.frame_bytes:
            raise VideoError("spill file is shorter than expected")
        return out

    def close(self) -> None:
        self._file.close()
        shutil.rmtree(self._dir, ignore_errors=True)


class FrameReader:
    """Stream a video's frames as upright RGB uint8 arrays (H, W, 3), resampled to ``fps``.

    Nothing stays open between iterations: each :meth:`iter_frames` / :meth:`iter_chunks` call
    opens its own decoder, so iterations may overlap, and an abandoned iterator frees its decoder
    and spill when it is closed or collected. The constructor probes metadata and decodes the
    first frame, so a bad file fails here rather than mid-pipeline.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fps: int = TARGET_FPS,
        tail_frames: int = 8,
        spill_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.path, self.fps, self.tail_frames = Path(path), int(fps), max(0, int(tail_frames))
        if self.fps <= 0:
            raise ValueError("fps must be positive")
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        with _open_input(self.path) as container:
            if not container.streams.video:
                raise VideoError(f"{self.path} has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            self._source_rate = Fraction(rate) if rate else Fraction(self.fps)
            first = next(iter(container.decode(stream)), None)
            if first is None:
                raise VideoError(f"{self.path} has no decodable video frames")
            self.rotation = int(first.rotation or 0)
            swap = round(self.rotation / 90) % 2 == 1
            self.width, self.height = (first.height, first.width) if swap else (first.width, first.height)
            self.duration = self._probe_duration(container, stream, first)

    def _probe_duration(self, container: Any, stream: Any, first: av.VideoFrame) -> float:
        """Seconds from the first frame to the end of the stream, from metadata (no decode)."""
        tb = stream.time_base or Fraction(1)
        start = Fraction(first.pts) * tb if first.pts is not None else Fraction(0)
        if stream.duration is not None:
            end = Fraction((stream.start_time or 0) + stream.duration) * tb
        elif container.duration is not None:
            end = Fraction(container.duration, av.time_base)
        elif stream.frames:
            end = start + stream.frames / self._source_rate
        else:
            return 0.0
        return float(max(end - start, Fraction(0)))

    @property
    def source_fps(self) -> float:
        """The container's average frame rate (a VFR file has no single true rate)."""
        return float(self._source_rate)

    @property
    def estimated_frame_count(self) -> int:
        """Frames one plain pass yields at ``fps``, from metadata: may be off by a frame or two.

        The exact count is known only after a full decode; the looping logic uses the real one.
        """
        return _round_half_up(Fraction(self.duration) * self.fps)

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.iter_frames()

    def iter_frames(self, num_frames: int | None = None, *, loop: LoopMode = "pingpong") -> Frames:
        """Frames at ``fps``: one pass of the source, or exactly ``num_frames``.

        Shorter than the video truncates. Longer loops as ``loop`` says: ``"pingpong"`` (the
        official behaviour), ``"loop"`` (restart), or ``"none"`` (stop at the end, giving fewer
        frames). Every yielded array is a new array the caller may keep or modify.
        """
        if loop not in _LOOP_MODES:
            raise ValueError(f"loop must be one of {_LOOP_MODES}, got {loop!r}")
        if num_frames is not None and num_frames < 0:
            raise ValueError("num_frames must be >= 0")
        return self._decode() if num_frames is None else self._play(int(num_frames), loop)

    def iter_chunks(self, n: int = 16, num_frames: int | None = None, *, loop: LoopMode = "pingpong") -> Frames:
        """:meth:`iter_frames` grouped into (k, H, W, 3) arrays, ``k == n`` except for the last."""
        if n <= 0:
            raise ValueError("chunk size must be positive")
        frames = self.iter_frames(num_frames, loop=loop)
        try:
            batch: list[np.ndarray] = []
            for frame in frames:
                batch.append(frame)
                if len(batch) == n:
                    yield np.stack(batch)
                    batch = []
            if batch:
                yield np.stack(batch)
        finally:
            frames.close()

    def _decode(self) -> Frames:
        """One pass over the source, resampled by presentation time (see the module docstring)."""
        with _open_input(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            tb, period = stream.time_base or Fraction(1), 1 / self._source_rate
            start: Fraction | None = None
            held: av.VideoFrame | None = None  # latest source frame, not yet known to be dropped
            held_time, k = Fraction(0), 0  # k: index of the next output frame
            for index, frame in enumerate(container.decode(stream)):
                t = Fraction(frame.pts) * tb if frame.pts is not None else index * period
                start = t if start is None else start
                tick = _round_half_up((t - start) * self.fps)
                if held is not None and k < tick:
                    image = _upright(held, self.rotation)
                    yield image
                    for _ in range(k + 1, tick):
                        yield image.copy()
                    k = tick
                held, held_time = frame, t
            if held is None or start is None:
                return
            # As in the fps filter, the last frame runs to the rounded end time (its pts plus its
            # duration). If that time has already been reached, it is dropped. A one-frame input
            # still gives one frame.
            duration = Fraction(held.duration) * tb if held.duration else period
            end_tick = max(_round_half_up((held_time + duration - start) * self.fps), 1)
            if k < end_tick:
                image = _upright(held, self.rotation)
                yield image
                for _ in range(k + 1, end_tick):
                    yield image.copy()

    def _play(self, total: int, loop: LoopMode) -> Frames:
        """Exactly ``total`` frames (fewer only with ``loop="none"``), in bounded memory."""
        pingpong = loop == "pingpong"
        spill: _Spill | None = None
        tail: deque[np.ndarray] = deque(maxlen=self.tail_frames if pingpong else 0)
        # Spill during the first pass when the estimate says the RAM tail is too short. The ring
        # covers the first reverse turn (plus 1 s of slack for a wrong estimate), or everything
        # when a second reverse turn will come.
        estimate, ring = self.estimated_frame_count, 0
        if pingpong and total - estimate > self.tail_frames:
            ring = min(total - estimate, estimate) + self.fps + self.tail_frames
        first_pass = self._decode()
        try:
            length, shape = 0, (0, 0, 3)
            for frame in first_pass:
                if length == total:
                    return
                if ring and spill is None:
                    spill = _Spill(frame.shape, ring, self.spill_dir)
                if spill is not None:
                    spill.append(frame)
                if tail.maxlen:
                    tail.append(frame.copy())
                shape = frame.shape
                yield frame
                length += 1
            if length == 0:
                raise VideoError(f"{self.path} produced no frames")
            produced = length
            if loop == "none" or produced >= total:
                return
            if pingpong and total - produced <= len(tail):
                for _, frame in zip(range(total - produced), reversed(tail), strict=False):
                    yield frame
                return
            tail.clear()
            reach = min(total - length, length)  # how far back the reverse turns reach
            if pingpong and (spill is None or spill.capacity < reach):  # estimate was off: decode again
                if spill is not None:
                    spill.close()
                spill = _Spill(shape, length, self.spill_dir)
                for frame in self._decode():
                    spill.append(frame)
                if spill.count != length:
                    raise VideoError(f"{self.path} decoded to {length} frames, then {spill.count}")
            turn = 0
            while produced < total:
                turn, take = turn + 1, min(length, total - produced)
                if pingpong and turn % 2 == 1:
                    assert spill is not None
                    yield from (spill.read(i) for i in range(length - 1, length - 1 - take, -1))
                elif spill is not None and spill.capacity >= length:
                    yield from (spill.read(i) for i in range(take))
                else:
                    again = self._decode()
                    try:
                        yield from (frame for _, frame in zip(range(take), again, strict=False))
                    finally:
                        again.close()
                produced += take
        finally:
            first_pass.close()
            if spill is not None:
                spill.close()


def load_audio(path: str | os.PathLike[str], sample_rate: int = 16_000, *, s16: bool = False) -> np.ndarray:
    """The first audio stream of ``path`` as mono float32 at ``sample_rate``, from its first sample.

    It uses libswresample defaults, like decord's ``AudioReader`` (the official ``read_audio``).
    That includes the stereo-to-mono matrix, which for float output is ``(L+R)/sqrt(2)``.
    ``s16=True`` resamples to int16 instead and divides by 32768. That is whisper's ``load_audio``
    (``ffmpeg -f s16le -ac 1 -ar 16000``), the audio the official feature extractor sees; for
    integer output swresample normalises stereo to ``(L+R)/2``. Container start offsets are
    ignored: time 0 is the first decoded sample, the origin the video side uses too.
    """
    with _open_input(path) as container:
        if not container.streams.audio:
            raise VideoError(f"{path} has no audio stream")
        resampler = av.AudioResampler(format="s16" if s16 else "flt", layout="mono", rate=sample_rate)
        parts = [np.zeros(0, np.int16 if s16 else np.float32)]
        for frame in container.decode(container.streams.audio[0]):
            frame.pts = None  # count samples, so timestamp gaps or offsets cannot reshape the audio
            parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        parts.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
    audio = np.concatenate(parts)
    return audio.astype(np.float32) / 32768.0 if s16 else audio.astype(np.float32, copy=False)


class _AudioFeed:
    """Audio for the writer as fltp (channels, <=1024) chunks, with one chunk of look-ahead."""

    def __init__(self, source: str | os.PathLike[str] | tuple[np.ndarray, int]) -> None:
        self._container: Any = None
        if isinstance(source, tuple):
            mono = np.asarray(source[0], dtype=np.float32).reshape(-1)
            self.layout, self.rate = "mono", int(source[1])
            inputs: Iterable[av.AudioFrame] = self._from_array(mono, self.rate)
        else:
            self._container = _open_input(source)
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
