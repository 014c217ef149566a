"""A stand-in for LatentSync's output: the caller's video, looped or cut to the audio, carrying that audio.

Why not just ``tiny_mp4``: a hosted LatentSync returns a video as long as the *audio* (the face video is
looped ping-pong or cut), and providers bill by that length. Tests of duration accounting, output probing
and "did the right inputs reach the model" only mean something when the fake's output follows the inputs
the way the model's does. Frame count follows :func:`latentsync_routes.media.output_frame_count`, the
audio is the caller's, resampled to 16 kHz mono as the model's own output carries.

PyAV only (a core dependency), imported lazily so importing ``latentsync_routes.testing`` stays cheap.
Decoding is bounded (``MAX_SOURCE_FRAMES``, ``MAX_OUTPUT_SECONDS``): this is a test double, not a renderer.
"""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Any

from ..media import OUTPUT_FPS, SAMPLE_RATE, output_frame_count

MAX_SOURCE_FRAMES = 250
MAX_OUTPUT_SECONDS = 120.0
_AAC_FRAME = 1024


def audio_seconds(data: bytes) -> float | None:
    """Duration of the first audio stream in ``data``, or None if PyAV cannot decode it."""
    pcm = _audio_pcm(data)
    return None if pcm is None else len(pcm) / 4 / SAMPLE_RATE


def lipsync_stand_in(video: bytes, audio: bytes) -> bytes | None:
    """An H.264/AAC mp4 of ``video``'s frames ping-ponged to ``audio``'s length; None if either won't decode."""
    import av

    pcm = _audio_pcm(audio)
    frames = _video_frames(video)
    if not pcm or not frames:
        return None
    seconds = min(len(pcm) / 4 / SAMPLE_RATE, MAX_OUTPUT_SECONDS)
    total = max(1, output_frame_count(seconds))
    pcm = pcm[: 4 * (total * SAMPLE_RATE // OUTPUT_FPS)]
    cycle = frames + frames[-2:0:-1]  # ping-pong, as LatentSync loops a short face video
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        vstream: Any = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=OUTPUT_FPS)
        vstream.width, vstream.height, vstream.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        astream: Any = container.add_stream("aac", rate=SAMPLE_RATE)
        astream.layout = "mono"
        for index in range(total):
            frame = cycle[index % len(cycle)]
            frame.pts, frame.time_base = index, Fraction(1, OUTPUT_FPS)  # decoded frames keep the source's clock
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode(None))
        for start in range(0, len(pcm) // 4, _AAC_FRAME):
            chunk = pcm[4 * start : 4 * (start + _AAC_FRAME)]
            aframe = av.AudioFrame(format="flt", layout="mono", samples=len(chunk) // 4)
            aframe.planes[0].update(chunk + bytes(aframe.planes[0].buffer_size - len(chunk)))
            aframe.sample_rate, aframe.pts = SAMPLE_RATE, start
            container.mux(astream.encode(aframe))
        container.mux(astream.encode(None))
    return buf.getvalue()


def _audio_pcm(data: bytes) -> bytes | None:
    """The first audio stream as packed float32 mono 16 kHz PCM; None when absent or undecodable."""
    import av

    out = bytearray()
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                return None
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(audio=0):
                for converted in resampler.resample(frame):
                    out += bytes(converted.planes[0])[: converted.samples * 4]
                if len(out) > 4 * SAMPLE_RATE * MAX_OUTPUT_SECONDS:
                    break
            for converted in resampler.resample(None):
                out += bytes(converted.planes[0])[: converted.samples * 4]
    except (av.FFmpegError, ValueError, IndexError):
        return None
    return bytes(out) or None


def _video_frames(data: bytes) -> list[Any]:
    """Up to ``MAX_SOURCE_FRAMES`` frames of the first video stream as even-sized yuv420p; [] if undecodable."""
    import av

    frames: list[Any] = []
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                return []
            stream = container.streams.video[0]
            width, height = max(2, stream.width // 2 * 2), max(2, stream.height // 2 * 2)
            for frame in container.decode(stream):
                frames.append(frame.reformat(width=width, height=height, format="yuv420p"))
                if len(frames) >= MAX_SOURCE_FRAMES:
                    break
    except (av.FFmpegError, ValueError, IndexError):
        return []
    return frames
