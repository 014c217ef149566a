"""Probing and validating inputs with PyAV, before anything is uploaded or paid for.

A probe reads container headers only, never decodes, so a one-hour file costs milliseconds. URLs are read
through HTTP range requests, fetching only the blocks the demuxer asks for, under a byte cap: a wrong link
to a 4 GB file fails fast instead of downloading it.

The output-duration rule lives here too (not in ``local/``) because prices depend on it and pricing must
not need torch.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import (
    MediaLimitExceeded,
    MediaNotFound,
    MissingStream,
    NotAMediaFile,
    UnsupportedCodec,
    UnsupportedSource,
    ZeroDuration,
)
from .types import MediaInfo, MediaSource

if TYPE_CHECKING:
    import httpx

DEFAULT_PROBE_CAP = 32 * 1024 * 1024
_BLOCK = 64 * 1024
_HASH_CHUNK = 1024 * 1024

# LatentSync timing facts (see docs/routes.md): whisper runs at 100 mel frames per second, keeps one
# encoder position per two mel frames, in 30 s (3000 mel frame) windows; video runs at 25 fps.
SAMPLE_RATE = 16_000
HOP_LENGTH = 160
WINDOW_MEL_FRAMES = 3000
OUTPUT_FPS = 25


def whisper_positions(n_samples: int) -> int:
    """Rows of whisper features for ``n_samples`` of 16 kHz audio (``L`` in the reference)."""
    mel_frames = n_samples // HOP_LENGTH
    full, rest = divmod(mel_frames, WINDOW_MEL_FRAMES)
    return full * (WINDOW_MEL_FRAMES // 2) + rest // 2


def output_frame_count(audio_seconds: float) -> int:
    """Frames LatentSync writes for this much audio: ``floor(L/2) + 2``; the video follows the audio."""
    if audio_seconds <= 0:
        return 0
    n_samples = int(round(audio_seconds * SAMPLE_RATE))
    return whisper_positions(n_samples) // 2 + 2


def output_duration(audio_seconds: float) -> float:
    """Seconds of output video for this much audio (the video is looped or cut to follow the audio)."""
    return output_frame_count(audio_seconds) / OUTPUT_FPS


@dataclass(frozen=True)
class MediaLimits:
    """A route's input limits; ``None`` means no limit."""

    max_bytes: int | None = None
    max_video_seconds: float | None = None
    max_audio_seconds: float | None = None


class _RangeFile(io.RawIOBase):
    """A seekable read-only view of a remote file, fetched in blocks by HTTP range requests."""

    def __init__(self, client: httpx.Client, url: str, size: int, cap: int) -> None:
        self._client, self._url, self._size, self._cap = client, url, size, cap
        self._pos = 0
        self._blocks: dict[int, bytes] = {}
        self.fetched = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _block(self, index: int) -> bytes:
        if index not in self._blocks:
            start = index * _BLOCK
            end = min(start + _BLOCK, self._size) - 1
            if self.fetched + (end - start + 1) > self._cap:
                raise MediaLimitExceeded(f"probing {self._url} needs more than {self._cap} bytes")
            response = self._client.get(self._url, headers={"Range": f"bytes={start}-{end}"})
            if response.status_code != 206:
                raise UnsupportedSource(f"{self._url}: range request answered {response.status_code}")
            self._blocks[index] = response.content
            self.fetched += len(response.content)
        return self._blocks[index]

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= self._size or len(view) == 0:
            return 0
        block = self._block(self._pos // _BLOCK)
        offset = self._pos % _BLOCK
        n = min(len(view), len(block) - offset)
        view[:n] = block[offset : offset + n]
        self._pos += n
        return n


@contextmanager
def _open_url(url: str, cap: int) -> Iterator[tuple[IO[bytes], int | None]]:
    import httpx

    with httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0)) as client:
        try:
            head = client.get(url, headers={"Range": "bytes=0-0"})
        except httpx.HTTPError as exc:
            raise UnsupportedSource(f"cannot reach {url.split('?', 1)[0]}: {type(exc).__name__}") from None
        if head.status_code == 404:
            raise MediaNotFound(f"{url.split('?', 1)[0]}: 404 not found")
        if head.status_code == 206 and "/" in head.headers.get("content-range", ""):
            size = int(head.headers["content-range"].rsplit("/", 1)[1])
            yield io.BufferedReader(_RangeFile(client, url, size, cap), buffer_size=_BLOCK), size
            return
        if head.status_code != 200:
            raise UnsupportedSource(f"{url.split('?', 1)[0]}: HTTP {head.status_code}")
        # No range support: the whole body, but never more than the cap.
        size_header = head.headers.get("content-length")
        if size_header is not None and int(size_header) > cap:
            raise MediaLimitExceeded(f"{url.split('?', 1)[0]} is {size_header} bytes; probe cap is {cap}")
        yield io.BytesIO(head.content[: cap + 1]), len(head.content)


@contextmanager
def open_media(source: MediaSource, *, cap: int = DEFAULT_PROBE_CAP) -> Iterator[tuple[Any, int | None]]:
    """Something ``av.open`` accepts, and the input size when known."""
    if source.kind == "path":
        assert source.path is not None
        path = source.path
        if not path.exists():
            raise MediaNotFound(f"no such file: {path}")
        if path.is_dir():
            raise MediaNotFound(f"{path} is a directory, not a media file")
        yield str(path), path.stat().st_size
    elif source.kind == "bytes":
        data = source.data or b""
        yield io.BytesIO(data), len(data)
    else:
        assert source.url is not None
        with _open_url(source.url, cap) as (handle, size):
            yield handle, size


def sha256_of(source: MediaSource) -> str | None:
    """Streaming sha256 of a path or bytes input; ``None`` for URLs (never downloaded just to hash)."""
    if source.kind == "bytes":
        return hashlib.sha256(source.data or b"").hexdigest()
    if source.kind == "path":
        assert source.path is not None
        digest = hashlib.sha256()
        with source.path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
                digest.update(chunk)
        return digest.hexdigest()
    return None


def _stream_seconds(stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return 0.0


def probe(source: MediaSource, *, cap: int = DEFAULT_PROBE_CAP, with_hash: bool = True) -> MediaInfo:
    """Read the headers of one input and describe it; raises a typed :class:`MediaError` if unusable."""
    import av  # imported here: PyAV costs ~40 ms and ``import latentsync_routes`` must stay light
    with open_media(source, cap=cap) as (target, size):
        try:
            container = av.open(target, mode="r")
        except (av.error.InvalidDataError, av.error.EOFError, ValueError) as exc:
            raise NotAMediaFile(f"{source.describe()} is not a readable media file ({type(exc).__name__})") from None
        except av.error.FFmpegError as exc:
            raise NotAMediaFile(f"{source.describe()} could not be opened: {exc.strerror or exc}") from None
        with container:
            video = container.streams.video[0] if container.streams.video else None
            audio = container.streams.audio[0] if container.streams.audio else None
            duration = float(container.duration) / 1_000_000 if container.duration else 0.0
            if not duration:
                duration = max(_stream_seconds(s) for s in (video, audio) if s is not None) if (
                    video or audio
                ) else 0.0
            info = MediaInfo(
                container=container.format.name,
                duration=duration,
                size=size,
                has_video=video is not None,
                has_audio=audio is not None,
                fps=float(video.average_rate) if video is not None and video.average_rate else None,
                width=video.codec_context.width if video is not None else None,
                height=video.codec_context.height if video is not None else None,
                video_codec=video.codec_context.name if video is not None else None,
                audio_codec=audio.codec_context.name if audio is not None else None,
                sample_rate=audio.codec_context.sample_rate if audio is not None else None,
            )
    if with_hash:
        info = info.model_copy(update={"sha256": sha256_of(source)})
    return info


def _check_codec(name: str | None, what: str, source: MediaSource) -> None:
    if not name:
        raise UnsupportedCodec(f"{source.describe()}: the {what} codec is unknown")
    import av

    try:
        av.codec.Codec(name, "r")
    except Exception:  # noqa: BLE001 - PyAV raises several types for an unknown decoder
        raise UnsupportedCodec(f"{source.describe()}: no decoder for {what} codec {name!r}") from None


def validate_video(info: MediaInfo, source: MediaSource) -> None:
    if not info.has_video:
        raise MissingStream(f"{source.describe()} has no video stream")
    _check_codec(info.video_codec, "video", source)
    if info.duration <= 0:
        raise ZeroDuration(f"{source.describe()} has zero duration")
    if not info.width or not info.height:
        raise UnsupportedCodec(f"{source.describe()}: the video has no frame size")


def validate_audio(info: MediaInfo, source: MediaSource) -> None:
    if not info.has_audio:
        raise MissingStream(f"{source.describe()} has no audio stream")
    _check_codec(info.audio_codec, "audio", source)
    if info.duration <= 0:
        raise ZeroDuration(f"{source.describe()} has zero duration")


def check_limits(info: MediaInfo, source: MediaSource, role: str, limits: MediaLimits, *, route: str) -> None:
    """Refuse inputs over a route's limits, naming the limit and the value."""
    if limits.max_bytes is not None and info.size is not None and info.size > limits.max_bytes:
        raise MediaLimitExceeded(
            f"{role} {source.describe()} is {info.size} bytes; the limit is {limits.max_bytes}", route=route
        )
    cap = limits.max_video_seconds if role == "video" else limits.max_audio_seconds
    if cap is not None and info.duration > cap:
        raise MediaLimitExceeded(
            f"{role} {source.describe()} lasts {info.duration:.2f} s; the limit is {cap:g} s", route=route
        )


def safe_name(name: str, default: str = "output.mp4") -> str:
    """A provider-supplied file name made safe: no directories, no traversal, no hidden files."""
    base = Path(name.replace("\\", "/")).name.strip().lstrip(".")
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in base)
    return cleaned[:128] or default
