"""Media helpers for the fakes: a real (tiny) lip-synced-looking mp4, and ``data:`` URI decoding.

The fakes return a genuine H.264 + AAC mp4 by default, not placeholder bytes,
so the download, probe and duration-accounting code paths of the SDK run for
real in offline tests. PyAV is a core dependency of the package; it is imported
lazily so importing ``latentsync_routes.testing`` stays cheap.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import threading
from array import array
from urllib.parse import unquote_to_bytes

_cache: dict[tuple[int, int, int, float], bytes] = {}
_cache_lock = threading.Lock()


def tiny_mp4(*, width: int = 64, height: int = 64, fps: int = 25, seconds: float = 0.4) -> bytes:
    """A small valid mp4 (H.264 video, AAC mono audio) of about ``seconds``; cached per shape."""
    key = (width, height, fps, seconds)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _encode(width, height, fps, seconds)
        return _cache[key]


def _encode(width: int, height: int, fps: int, seconds: float) -> bytes:
    import av

    rate = 16000
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = container.add_stream("aac", rate=rate)
        audio.layout = "mono"
        frames = max(1, round(seconds * fps))
        for i in range(frames):
            frame = av.VideoFrame(width, height, "yuv420p")
            luma = 16 + (200 * i) // max(1, frames - 1)
            for plane, value in zip(frame.planes, (luma, 90, 240 - luma // 2), strict=True):
                plane.update(bytes([value]) * plane.buffer_size)
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        total, pts = int(rate * seconds), 0
        while pts < total:
            count = min(1024, total - pts)
            tone = array("f", (0.2 * math.sin(2 * math.pi * 220 * (pts + n) / rate) for n in range(count)))
            aframe = av.AudioFrame(format="flt", layout="mono", samples=count)
            aframe.planes[0].update(tone.tobytes())
            aframe.sample_rate, aframe.pts = rate, pts
            pts += count
            for packet in audio.encode(aframe):
                container.mux(packet)
        for packet in audio.encode(None):
            container.mux(packet)
    return buf.getvalue()


def decode_data_uri(uri: str) -> bytes | None:
    """Bytes of a ``data:[<mime>][;base64],<payload>`` URI, or None if it is not one."""
    if not uri.startswith("data:") or "," not in uri:
        return None
    meta, payload = uri[5:].split(",", 1)
    if meta.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError):
            return None
    return unquote_to_bytes(payload)
