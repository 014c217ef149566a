"""Streaming video I/O: 25 fps resampling, chunking, looping, writing, audio, bounded memory.

Every test makes its own small media with PyAV. Each source frame carries its index as a row of
16x16 black/white blocks (with the complement below it as a check), so a test can tell which
source frame the reader picked even after lossy H.264.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from latentsync_routes.local.video import (
    FrameReader,
    VideoError,
    VideoWriter,
    load_audio,
)

BITS = 10
W, H = 16 * BITS, 32


def pattern(index: int, width: int = W, height: int = H) -> np.ndarray:
    img = np.zeros((height, width, 3), np.uint8)
    for b in range(BITS):
        on = (index >> b) & 1
        img[0:16, 16 * b : 16 * (b + 1)] = 255 * on
        img[16:32, 16 * b : 16 * (b + 1)] = 255 * (1 - on)
    return img


def index_of(frame: np.ndarray) -> int:
    value = 0
    for b in range(BITS):
        top = frame[2:14, 16 * b + 2 : 16 * b + 14].mean() > 128
        bottom = frame[18:30, 16 * b + 2 : 16 * b + 14].mean() > 128
        assert top != bottom, "pattern damaged"
        value |= int(top) << b
    return value


def index_of7(frame: np.ndarray) -> int:
    padded = np.zeros((H, W, 3), np.uint8)
    padded[:, : frame.shape[1]] = frame
    padded[16:32, frame.shape[1] :] = 255  # missing high bits read as 0
    return index_of(padded)


def make_video(
    path: Path,
    n: int,
    fps: int = 25,
    *,
    pts_ms: list[int] | None = None,
    rotation: int = 0,
    frame_fn: Callable[[int], np.ndarray] = pattern,
    preset: str = "ultrafast",
) -> Path:
    """n frames at a constant fps, or at explicit millisecond timestamps (VFR)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "10", "preset": preset})
        first = frame_fn(0)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        if pts_ms is not None:
            stream.time_base = Fraction(1, 1000)
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frame_fn(i), format="rgb24")
            frame.pts = pts_ms[i] if pts_ms is not None else i
            if pts_ms is not None:
                frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def make_wav(path: Path, seconds: float, rate: int = 44_100, channels: int = 2, freq: float = 440.0) -> Path:
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    tone = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    data = np.repeat(tone[None, :], channels, axis=0)
    pcm = (data.T.reshape(1, -1) * 32767).astype(np.int16)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate, layout="stereo" if channels == 2 else "mono")
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout=stream.layout.name)
        frame.sample_rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def ffmpeg_fps_indices(path: Path, fps: int = 25) -> list[int]:
    """The source indices libavfilter's own ``fps`` filter picks: the oracle for the resampler."""
    picked: list[int] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        graph = av.filter.Graph()
        src = graph.add_buffer(template=stream)
        fps_filter = graph.add("fps", str(fps))
        sink = graph.add("buffersink")
        src.link_to(fps_filter)
        fps_filter.link_to(sink)
        graph.configure()

        def drain() -> None:
            while True:
                try:
                    picked.append(index_of(graph.vpull().to_ndarray(format="rgb24")))
                except (av.BlockingIOError, av.EOFError):
                    return

        for frame in container.decode(stream):
            graph.vpush(frame)
            drain()
        graph.vpush(None)
        drain()
    return picked


def naive_pick(source_times: list[Fraction], end: Fraction, fps: int = 25) -> list[int]:
    """Output k shows the last source frame whose rounded tick is <= k (written out longhand)."""
    ticks = [math.floor((t - source_times[0]) * fps + Fraction(1, 2)) for t in source_times]
    count = math.floor((end - source_times[0]) * fps + Fraction(1, 2))
    return [max(i for i, tick in enumerate(ticks) if tick <= k) for k in range(count)]


def official_loop(indices: list[int], total: int, mode: str) -> list[int]:
    """The official loop_video, naively: forward, reversed, forward, ... then cut to ``total``."""
    if total <= len(indices):
        return indices[:total]
    out: list[int] = []
    turn = 0
    while len(out) < total:
        reverse = mode == "pingpong" and turn % 2 == 1
        out += indices[::-1] if reverse else indices
        turn += 1
    return out[:total]


# ---------------------------------------------------------------------------------------------- reading


@pytest.mark.parametrize(
    ("fps", "preset"),
    [(24, "ultrafast"), (25, "ultrafast"), (30, "ultrafast"), (30, "medium"), (50, "fast"), (60, "ultrafast")],
)
def test_resampling_matches_ffmpeg_fps_filter_and_duration(tmp_path: Path, fps: int, preset: str) -> None:
    path = make_video(tmp_path / f"v{fps}.mp4", 2 * fps, fps, preset=preset)  # medium/fast: B-frames
    picked = [index_of(f) for f in FrameReader(path)]
    assert picked == ffmpeg_fps_indices(path)
    assert len(picked) == 50  # 2 s x 25
    expected = naive_pick([Fraction(i, fps) for i in range(2 * fps)], Fraction(2))
    assert picked == expected


def test_resampling_known_sequences(tmp_path: Path) -> None:
    at25 = [index_of(f) for f in FrameReader(make_video(tmp_path / "a.mp4", 30, 25))]
    assert at25 == list(range(30))
    at30 = [index_of(f) for f in FrameReader(make_video(tmp_path / "b.mp4", 12, 30))]
    assert at30 == [0, 1, 2, 4, 5, 6, 7, 8, 10, 11]  # one of every 6 source frames dropped
    at24 = [index_of(f) for f in FrameReader(make_video(tmp_path / "c.mp4", 24, 24))]
    assert len(at24) == 25 and sorted(set(at24)) == list(range(24))  # one frame shown twice


def test_resampling_variable_frame_rate(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    steps = rng.choice([17, 20, 33, 40, 50, 67, 100], size=60)
    pts = [0, *np.cumsum(steps[:-1]).tolist()]
    path = make_video(tmp_path / "vfr.mp4", 60, 30, pts_ms=pts)
    reader = FrameReader(path)
    picked = [index_of(f) for f in reader]
    assert picked == ffmpeg_fps_indices(path)
    assert abs(len(picked) - reader.estimated_frame_count) <= 2


def test_properties(tmp_path: Path) -> None:
    reader = FrameReader(make_video(tmp_path / "v.mp4", 90, 30))
    assert reader.source_fps == pytest.approx(30)
    assert (reader.width, reader.height) == (W, H)
    assert reader.duration == pytest.approx(3.0, abs=0.05)
    assert reader.estimated_frame_count == 75
    assert reader.rotation == 0


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_is_applied(tmp_path: Path, rotation: int) -> None:
    """Display-matrix angles are counter-clockwise; ffmpeg's autorotate turns the picture upright."""
    plain = FrameReader(make_video(tmp_path / "p.mp4", 5, 25))
    turned = FrameReader(make_video(tmp_path / "r.mp4", 5, 25, rotation=rotation))
    assert turned.rotation % 360 == rotation % 360
    size = (W, H) if rotation == 180 else (H, W)
    assert (turned.width, turned.height) == size
    for a, b in zip(plain, turned, strict=True):
        assert b.shape == (size[1], size[0], 3)
        np.testing.assert_array_equal(b, np.rot90(a, rotation // 90))


def test_chunks_sizes_and_types(tmp_path: Path) -> None:
    reader = FrameReader(make_video(tmp_path / "v.mp4", 60, 30))  # 50 frames at 25 fps
    chunks = list(reader.iter_chunks(16))
    assert [len(c) for c in chunks] == [16, 16, 16, 2]
    assert all(c.dtype == np.uint8 and c.shape[1:] == (H, W, 3) for c in chunks)
    flat = [index_of(f) for c in chunks for f in c]
    assert flat == [index_of(f) for f in reader]
    assert [len(c) for c in reader.iter_chunks(16, num_frames=40)] == [16, 16, 8]


@pytest.mark.parametrize("mode", ["pingpong", "loop"])
@pytest.mark.parametrize("total", [0, 7, 10, 11, 13, 19, 20, 21, 37, 64])
def test_looping_matches_official_sequence(tmp_path: Path, mode: str, total: int) -> None:
    path = make_video(tmp_path / "v.mp4", 10, 25)
    spill = tmp_path / "spill"
    spill.mkdir()
    reader = FrameReader(path, tail_frames=4, spill_dir=spill)
    forward = list(reader)
    frames = list(reader.iter_frames(total, loop=mode))  # type: ignore[arg-type]
    expected = official_loop(list(range(10)), total, mode)
    assert [index_of(f) for f in frames] == expected
    for frame, i in zip(frames, expected, strict=True):
        np.testing.assert_array_equal(frame, forward[i])  # bit-identical, not just the same index
    assert list(spill.iterdir()) == []  # the spill directory is gone


class _OverEstimating(FrameReader):
    """Metadata that promises more frames than there are, forcing the second-decode spill."""

    @property
    def estimated_frame_count(self) -> int:
        return 1000


def test_pingpong_ring_spill_keeps_only_the_reverse_reach(tmp_path: Path) -> None:
    """100 frames, 130 wanted: the spill holds 30 + 1 s (+ tail) frames, not the whole video."""

    def small(i: int) -> np.ndarray:
        return pattern(i)[:, :128]  # 7 bits are enough for 100 frames

    spill = tmp_path / "spill"
    spill.mkdir()
    reader = FrameReader(make_video(tmp_path / "v.mp4", 100, 25, frame_fn=small), tail_frames=4, spill_dir=spill)
    frames = reader.iter_frames(130)
    picked = [index_of7(next(frames)) for _ in range(100)]
    (ring_file,) = [p for d in spill.iterdir() for p in d.iterdir()]
    assert ring_file.stat().st_size == (30 + 25 + 4) * 32 * 128 * 3
    picked += [index_of7(f) for f in frames]
    assert picked == official_loop(list(range(100)), 130, "pingpong")
    assert list(spill.iterdir()) == []


class _OverEstimatingABit(FrameReader):
    @property
    def estimated_frame_count(self) -> int:
        return 160  # 100 real: the ring planned for 35 frames back is too short for the 95 needed


def test_pingpong_ring_too_short_falls_back_to_full_spill(tmp_path: Path) -> None:
    def small(i: int) -> np.ndarray:
        return pattern(i)[:, :128]

    reader = _OverEstimatingABit(make_video(tmp_path / "v.mp4", 100, 25, frame_fn=small), tail_frames=4)
    picked = [index_of7(f) for f in reader.iter_frames(195)]
    assert picked == official_loop(list(range(100)), 195, "pingpong")


def test_pingpong_spill_fallback_when_estimate_is_wrong(tmp_path: Path) -> None:
    reader = _OverEstimating(make_video(tmp_path / "v.mp4", 10, 25), tail_frames=2)
    picked = [index_of(f) for f in reader.iter_frames(33)]
    assert picked == official_loop(list(range(10)), 33, "pingpong")


def test_loop_none_stops_and_truncation(tmp_path: Path) -> None:
    reader = FrameReader(make_video(tmp_path / "v.mp4", 10, 25))
    assert [index_of(f) for f in reader.iter_frames(25, loop="none")] == list(range(10))
    assert [index_of(f) for f in reader.iter_frames(4, loop="pingpong")] == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        reader.iter_frames(5, loop="bounce")  # type: ignore[arg-type]


def test_abandoned_iteration_removes_spill(tmp_path: Path) -> None:
    spill = tmp_path / "spill"
    spill.mkdir()
    reader = FrameReader(make_video(tmp_path / "v.mp4", 10, 25), tail_frames=0, spill_dir=spill)
    frames = reader.iter_frames(100)
    for _ in range(12):
        next(frames)
    assert len(list(spill.iterdir())) == 1
    frames.close()
    assert list(spill.iterdir()) == []


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(VideoError):
        FrameReader(tmp_path / "missing.mp4")
    with pytest.raises(VideoError, match="no video"):
        FrameReader(make_wav(tmp_path / "a.wav", 0.2))
    with pytest.raises(VideoError, match="no audio"):
        load_audio(make_video(tmp_path / "v.mp4", 3, 25))


_MEMORY_PROBE = """
import gc, json, os, sys
import numpy as np
from latentsync_routes.local.video import FrameReader

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

def growth(items):
    gc.collect()
    base = peak = rss()
    for _ in items:
        peak = max(peak, rss())
    return peak - base

short, long = FrameReader(sys.argv[1]), FrameReader(sys.argv[2])
out = {
    "short": growth(short.iter_chunks(16)),
    "long": growth(long.iter_chunks(16)),
    "pingpong": growth(long.iter_chunks(16, num_frames=1500)),
    "loop": growth(long.iter_chunks(16, num_frames=1500, loop="loop")),
}
kept = []
out["keep_all"] = growth(kept.append(f) for f in long)  # last: it leaves memory with the allocator
print(json.dumps(out))
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc to read RSS")
def test_memory_does_not_grow_with_length(tmp_path: Path) -> None:
    """RSS, in a fresh interpreter: decoded frames live in FFmpeg buffers tracemalloc cannot see,
    and memory freed by earlier tests in this process would hide growth."""

    def frame(i: int) -> np.ndarray:
        img = np.zeros((128, 256, 3), np.uint8)
        img[:H, :W] = pattern(i)
        return img

    short = make_video(tmp_path / "short.mp4", 50, 25, frame_fn=frame)  # 2 s
    long = make_video(tmp_path / "long.mp4", 500, 25, frame_fn=frame)  # 20 s
    whole_long = 500 * 128 * 256 * 3  # 49 MB if the whole video were held
    run = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, str(short), str(long)], capture_output=True, text=True, check=True
    )
    grown = json.loads(run.stdout)
    assert grown["keep_all"] > whole_long / 2  # calibration: the probe does see frame memory
    for mode in ("long", "pingpong", "loop"):  # measured: 2-7 MB on CPython 3.11, 2 cores
        assert grown[mode] < grown["short"] + whole_long / 4, grown
        assert grown[mode] < whole_long / 3, grown


# ---------------------------------------------------------------------------------------------- writing


def _probe(path: Path) -> dict[str, object]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info: dict[str, object] = {
            "streams": len(c.streams),
            "vcodec": v.codec_context.name,
            "pix_fmt": v.codec_context.pix_fmt,
            "rate": v.average_rate,
            "size": (v.codec_context.width, v.codec_context.height),
        }
        if c.streams.audio:
            a = c.streams.audio[0]
            info.update(
                acodec=a.codec_context.name,
                arate=a.codec_context.sample_rate,
                channels=a.codec_context.layout.nb_channels,
                aduration=float(a.duration * a.time_base),
            )
    with av.open(str(path)) as c:
        info["frames"] = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return info


def test_writer_output_is_playable_with_original_audio(tmp_path: Path) -> None:
    wav = make_wav(tmp_path / "a.wav", 1.5, rate=44_100, channels=2)
    dest = tmp_path / "out.mp4"
    with VideoWriter(dest, audio_path=wav) as writer:
        writer.write_chunk(np.stack([pattern(i) for i in range(16)]))
        for i in range(16, 30):
            writer.write(pattern(i))
    info = _probe(dest)
    assert info["streams"] == 2
    assert (info["vcodec"], info["pix_fmt"], info["rate"]) == ("h264", "yuv420p", 25)
    assert (info["acodec"], info["arate"], info["channels"]) == ("aac", 44_100, 2)
    assert info["aduration"] == pytest.approx(30 / 25, abs=0.03)  # trimmed to the video
    frames = info["frames"]
    assert isinstance(frames, list) and [index_of(f) for f in frames] == list(range(30))
    assert np.abs(frames[3].astype(int) - pattern(3)).mean() < 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "out.mp4"]


def test_muxed_audio_keeps_sync_with_the_source(tmp_path: Path) -> None:
    """The output track starts where the source audio starts (AAC priming is compensated)."""
    rate = 48_000
    noise = np.random.default_rng(3).uniform(-0.5, 0.5, rate).astype(np.float32)
    src = tmp_path / "noise.wav"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("pcm_f32le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(noise[None, :], format="flt", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    dest = tmp_path / "out.mp4"
    with VideoWriter(dest, audio_path=src) as writer:
        writer.write_chunk([pattern(i) for i in range(25)])
    a, b = load_audio(src), load_audio(dest)
    n = 12_000
    lags = range(-200, 201)
    scores = [float(np.dot(a[1000 : 1000 + n], b[1000 + lag : 1000 + lag + n])) for lag in lags]
    assert lags[int(np.argmax(scores))] == 0


def test_writer_short_audio_and_official_16k_mode(tmp_path: Path) -> None:
    short = tmp_path / "short.mp4"
    with VideoWriter(short, audio_path=make_wav(tmp_path / "a.wav", 0.5)) as writer:
        writer.write_chunk([pattern(i) for i in range(30)])
    assert _probe(short)["aduration"] == pytest.approx(0.5, abs=0.03)  # not padded

    official = tmp_path / "official.mp4"
    samples = load_audio(make_wav(tmp_path / "b.wav", 2.0))
    with VideoWriter(official, audio_samples=samples, audio_sample_rate=16_000) as writer:
        writer.write_chunk([pattern(i) for i in range(20)])
    info = _probe(official)
    assert (info["arate"], info["channels"]) == (16_000, 1)
    assert info["aduration"] == pytest.approx(20 / 25, abs=0.07)


def test_writer_without_audio_and_odd_sizes(tmp_path: Path) -> None:
    odd = np.full((47, 63, 3), 90, np.uint8)
    with VideoWriter(tmp_path / "pad.mp4") as writer:
        writer.write(odd)
    info = _probe(tmp_path / "pad.mp4")
    assert info["streams"] == 1 and info["size"] == (64, 48)
    with VideoWriter(tmp_path / "crop.mp4", odd_size="crop", crf=30) as writer:
        writer.write_chunk([odd, odd])
    assert _probe(tmp_path / "crop.mp4")["size"] == (62, 46)


def test_writer_is_atomic(tmp_path: Path) -> None:
    dest = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"), VideoWriter(dest) as writer:
        writer.write_chunk([pattern(i) for i in range(60)])  # past x264's look-ahead, so bytes are on disk
        assert not dest.exists()
        assert [p.name.startswith(".out.partial-") for p in tmp_path.iterdir()] == [True]
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []

    writer = VideoWriter(dest)
    with pytest.raises(ValueError):
        writer.write(np.zeros((8, 8), np.uint8))
    with pytest.raises(VideoError, match="no frames"):
        writer.close()
    with pytest.raises(VideoError, match="aborted"):
        writer.close()
    with pytest.raises(ValueError, match="differs"), VideoWriter(dest) as writer:
        writer.write(pattern(0))
        writer.write(pattern(0, width=64))
    assert list(tmp_path.iterdir()) == []


def test_roundtrip_reader_writer(tmp_path: Path) -> None:
    src = make_video(tmp_path / "src.mp4", 36, 30)
    dest = tmp_path / "dest.mp4"
    reader = FrameReader(src)
    with VideoWriter(dest) as writer:
        for chunk in reader.iter_chunks(16, num_frames=40):
            writer.write_chunk(chunk)
    again = [index_of(f) for f in FrameReader(dest)]
    expected_single = [index_of(f) for f in reader]
    assert again == official_loop(expected_single, 40, "pingpong")


# ---------------------------------------------------------------------------------------------- audio


def test_load_audio_16k_mono(tmp_path: Path) -> None:
    wav = make_wav(tmp_path / "a.wav", 1.0, rate=44_100, channels=2, freq=440)
    audio = load_audio(wav)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(audio.size - 16_000) <= 32
    spectrum = np.abs(np.fft.rfft(audio[:16_000]))
    assert np.argmax(spectrum) == pytest.approx(440, abs=1)  # 1 Hz bins
    # libswresample's default stereo->mono matrix: 1/sqrt(2) per channel for float output (decord,
    # the official read_audio), normalised to 1/2 per channel for int16 output (whisper's ffmpeg).
    assert np.abs(audio[1000:-1000]).max() == pytest.approx(0.5 * math.sqrt(2), abs=0.02)
    quantised = load_audio(wav, s16=True)
    assert quantised.dtype == np.float32 and quantised.size == audio.size
    assert np.abs(quantised[1000:-1000]).max() == pytest.approx(0.5, abs=0.02)
    assert np.abs(quantised - audio / math.sqrt(2)).max() < 2e-3
    assert np.all(np.round(quantised * 32768) == quantised * 32768)


def test_import_does_not_pull_torch() -> None:
    code = "import sys, latentsync_routes.local.video; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
