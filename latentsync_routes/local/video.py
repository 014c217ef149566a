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

Writing (:class:`VideoWriter`, re-exported here)
    Lives in :mod:`latentsync_routes.local.video_writer`, whose docstring gives the encoding and
    output-audio decisions.
"""

from __future__ import annotations

import io
import math
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Generator, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np

from .video_base import TARGET_FPS, VideoError, open_input
from .video_writer import VideoWriter

__all__ = ["TARGET_FPS", "FrameReader", "LoopMode", "VideoError", "VideoWriter", "load_audio"]

LoopMode = Literal["pingpong", "loop", "none"]
_LOOP_MODES = ("pingpong", "loop", "none")
Frames = Generator[np.ndarray, None, None]


def _round_half_up(x: Fraction) -> int:
    """``av_rescale_q_rnd(..., AV_ROUND_NEAR_INF)`` for the non-negative times used here."""
    return math.floor(x + Fraction(1, 2))


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
        with open_input(self.path) as container:
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
        with open_input(self.path) as container:
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
        ring = self._first_pass_ring(total) if pingpong else 0
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
            if loop == "none" or length >= total:
                return
            if pingpong and total - length <= len(tail):
                for _, frame in zip(range(total - length), reversed(tail), strict=False):
                    yield frame
                return
            tail.clear()
            reach = min(total - length, length)  # how far back the reverse turns reach
            if pingpong and (spill is None or spill.capacity < reach):  # estimate was off: decode again
                if spill is not None:
                    spill.close()
                    spill = None  # closed: the finally below must not close it again
                spill = self._spill_all(shape, length)
            yield from self._later_passes(spill, length, total - length, pingpong)
        finally:
            first_pass.close()
            if spill is not None:
                spill.close()

    def _first_pass_ring(self, total: int) -> int:
        """Frames to spill during the first pass of a ping-pong (0: the RAM tail will do), from the estimate.

        The ring covers the first reverse turn (plus 1 s of slack for a wrong estimate), or everything when a
        second reverse turn will come.
        """
        estimate = self.estimated_frame_count
        if total - estimate > self.tail_frames:
            return min(total - estimate, estimate) + self.fps + self.tail_frames
        return 0

    def _spill_all(self, shape: tuple[int, ...], length: int) -> _Spill:
        """A spill of every frame, by a second decode: the first pass's ring fell short of the reverse turn."""
        spill = _Spill(shape, length, self.spill_dir)
        try:
            for frame in self._decode():
                spill.append(frame)
            if spill.count != length:
                raise VideoError(f"{self.path} decoded to {length} frames, then {spill.count}")
        except BaseException:
            spill.close()
            raise
        return spill

    def _later_passes(self, spill: _Spill | None, length: int, remaining: int, pingpong: bool) -> Frames:
        """The ``remaining`` frames after the first pass: reverse turns from the spill, forward ones from the
        spill when it holds every frame, else from a fresh decode."""
        turn = 0
        while remaining > 0:
            turn, take = turn + 1, min(length, remaining)
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
            remaining -= take


def load_audio(path: str | os.PathLike[str], sample_rate: int = 16_000, *, s16: bool = False) -> np.ndarray:
    """The first audio stream of ``path`` as mono float32 at ``sample_rate``, from its first sample.

    It uses libswresample defaults, like decord's ``AudioReader`` (the official ``read_audio``).
    That includes the stereo-to-mono matrix, which for float output is ``(L+R)/sqrt(2)``.
    ``s16=True`` resamples to int16 instead and divides by 32768. That is whisper's ``load_audio``
    (``ffmpeg -f s16le -ac 1 -ar 16000``), the audio the official feature extractor sees; for
    integer output swresample normalises stereo to ``(L+R)/2``. Container start offsets are
    ignored: time 0 is the first decoded sample, the origin the video side uses too.
    """
    with open_input(path) as container:
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
