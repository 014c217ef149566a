"""Probing and validating inputs with PyAV, before anything is uploaded or paid for.

A probe reads container headers only, never decodes, so a one-hour file costs milliseconds; for indexed
containers it also demuxes the last second, so a file cut short behind an intact header is refused. URLs
are read through HTTP range requests, fetching only the blocks the demuxer asks for, under a byte cap and
one total time cap: a wrong link to a 4 GB file or a server that trickles fails fast instead of hanging.
Only regular files are opened: a FIFO or a device path is refused before anything reads it.

The output-duration rule lives here too (not in ``local/``) because prices depend on it and pricing must
not need torch.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import time
import zlib
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

#: Wall-clock cap on one whole URL probe, every request and block read together: per-read timeouts alone
#: let a server that trickles a byte every few seconds hold a probe forever. Tests shrink it.
URL_PROBE_TIMEOUT_S = 60.0
#: Redirect hops followed per request; each hop is checked like the URL the user gave.
MAX_REDIRECTS = 5
#: How much of the end of an indexed file is demuxed to prove its data is really there.
TAIL_SECONDS = 1.0
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_IDENTITY = {"Accept-Encoding": "identity"}
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+)\s*$", re.IGNORECASE)
#: Containers whose header indexes every packet, so a declared duration is a promise the data must keep.
_INDEXED_FORMATS = frozenset({"mov", "mp4", "matroska", "webm"})

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


def _shown(url: str) -> str:
    """A URL without its query string: signed URLs carry credentials there."""
    return url.split("?", 1)[0]


class _Deadline:
    """One wall-clock budget for a whole URL probe."""

    def __init__(self, url: str, seconds: float) -> None:
        self.url, self.seconds = url, seconds
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        remaining = self._end - time.monotonic()
        if remaining <= 0:
            raise UnsupportedSource(
                f"{_shown(self.url)}: the server is too slow; probing gave up after {self.seconds:g} s"
            )
        return remaining

    def timeout(self) -> httpx.Timeout:
        """Per-request timeouts that never reach past the deadline."""
        import httpx

        left = self.left()
        return httpx.Timeout(min(30.0, left), connect=min(10.0, left))


def _check_hop(origin: str, target: str) -> None:
    """A redirect must obey the same rules as the URL the user gave (https, or http to loopback only)."""
    try:
        MediaSource(kind="url", url=target)
    except UnsupportedSource as exc:
        raise UnsupportedSource(f"{_shown(origin)} redirects to {_shown(target)}, refused: {exc.message}") from None
    except ValueError:
        raise UnsupportedSource(f"{_shown(origin)} redirects to an invalid URL") from None


@contextmanager
def _get(
    client: httpx.Client, url: str, headers: dict[str, str], deadline: _Deadline
) -> Iterator[tuple[httpx.Response, str]]:
    """A streamed GET that follows redirects by hand, checking each hop; yields the response and its URL.

    httpx's own redirect following would take an https link on to a plain-http host without asking; here
    every hop passes :class:`MediaSource` validation, and there are at most ``MAX_REDIRECTS`` of them.
    """
    import httpx

    current = url
    for _ in range(MAX_REDIRECTS + 1):
        try:
            request = client.build_request("GET", current, headers=headers, timeout=deadline.timeout())
            response = client.send(request, stream=True, follow_redirects=False)
        except httpx.HTTPError as exc:
            deadline.left()
            raise UnsupportedSource(f"cannot reach {_shown(current)}: {type(exc).__name__}") from None
        except httpx.InvalidURL:
            raise UnsupportedSource(f"{_shown(current)} is not a valid URL") from None
        location = response.headers.get("location")
        if response.status_code in _REDIRECT_STATUSES and location:
            response.close()
            try:
                target = str(httpx.URL(current).join(location))
            except (httpx.InvalidURL, ValueError):
                raise UnsupportedSource(f"{_shown(current)} redirects to an invalid URL") from None
            _check_hop(current, target)
            current = target
            continue
        try:
            yield response, current
        finally:
            response.close()
        return
    raise UnsupportedSource(f"{_shown(url)}: more than {MAX_REDIRECTS} redirects")


def _decoded_chunks(response: httpx.Response, url: str) -> Iterator[bytes]:
    """The body in pieces of at most ``_BLOCK`` decoded bytes, however compressed it is.

    We ask for ``identity``; a server that compresses anyway is inflated here with a bounded output per
    step, so a gzip bomb never grows by more than one block at a time (httpx inflates a whole read at once).
    """
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        yield from response.iter_raw()
        return
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise UnsupportedSource(f"{_shown(url)} answered with Content-Encoding {encoding!r}; asked for identity")
    inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)  # a gzip or a zlib header, detected
    try:
        for raw in response.iter_raw():
            data = raw
            while data:
                out = inflater.decompress(data, _BLOCK)
                data = inflater.unconsumed_tail
                if out:
                    yield out
        while not inflater.eof and (out := inflater.decompress(b"", _BLOCK)):
            yield out
    except zlib.error:
        raise UnsupportedSource(f"{_shown(url)}: the {encoding} body is corrupt") from None


def _read_at_most(response: httpx.Response, limit: int, url: str, deadline: _Deadline) -> bytes | None:
    """The decoded body, or ``None`` as soon as it passes ``limit`` bytes; stops at the deadline."""
    import httpx

    chunks: list[bytes] = []
    total = 0
    try:
        for chunk in _decoded_chunks(response, url):
            total += len(chunk)
            if total > limit:
                return None
            chunks.append(chunk)
            deadline.left()
    except httpx.HTTPError as exc:
        deadline.left()
        raise UnsupportedSource(f"{_shown(url)}: the transfer broke off ({type(exc).__name__})") from None
    return b"".join(chunks)


def _read_body(response: httpx.Response, url: str, cap: int, deadline: _Deadline) -> bytes:
    """A whole body from a server without range support, refused once it passes the probe cap."""
    declared = response.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > cap:
        raise MediaLimitExceeded(f"{_shown(url)} is {declared} bytes; probe cap is {cap}")
    body = _read_at_most(response, cap, url, deadline)
    if body is None:
        raise MediaLimitExceeded(
            f"{_shown(url)} is over the probe cap of {cap} bytes and the server does not serve byte ranges"
        )
    return body


def _content_range(response: httpx.Response) -> tuple[int, int, int] | None:
    """``(first, last, total)`` from a well-formed ``Content-Range``; ``None`` for ``bytes 0-0/*`` and junk."""
    match = _CONTENT_RANGE.match(response.headers.get("content-range", "").strip())
    if match is None:
        return None
    first, last, total = (int(group) for group in match.groups())
    return (first, last, total) if first <= last < total else None


class _RangeFile(io.RawIOBase):
    """A seekable read-only view of a remote file, fetched in blocks by HTTP range requests."""

    def __init__(self, client: httpx.Client, url: str, size: int, cap: int, deadline: _Deadline) -> None:
        self._client, self._url, self._size, self._cap = client, url, size, cap
        self._deadline = deadline
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
            want = end - start + 1
            if self.fetched + want > self._cap:
                raise MediaLimitExceeded(f"probing {_shown(self._url)} needs more than {self._cap} bytes")
            headers = {"Range": f"bytes={start}-{end}", **_IDENTITY}
            with _get(self._client, self._url, headers, self._deadline) as (response, _):
                if response.status_code != 206:
                    raise UnsupportedSource(f"{_shown(self._url)}: range request answered {response.status_code}")
                answered = _content_range(response)
                if answered is None or answered[0] != start:
                    shown = response.headers.get("content-range", "")[:80]
                    raise UnsupportedSource(f"{_shown(self._url)}: range request answered Content-Range {shown!r}")
                data = _read_at_most(response, want, self._url, self._deadline)
            if data is None or len(data) != want:
                raise UnsupportedSource(f"{_shown(self._url)}: a range request for {want} bytes got another amount")
            self._blocks[index] = data
            self.fetched += len(data)
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
    """Range reads when the server offers them, else a bounded full read; all under one deadline.

    ``Accept-Encoding: identity`` keeps byte ranges meaningful and bodies small; a ``206`` whose
    ``Content-Range`` gives no usable total (``bytes 0-0/*``) falls back to a bounded full read.
    """
    import httpx

    deadline = _Deadline(url, URL_PROBE_TIMEOUT_S)
    with httpx.Client(follow_redirects=False, timeout=deadline.timeout()) as client:
        body: bytes | None = None
        size: int | None = None
        with _get(client, url, {"Range": "bytes=0-0", **_IDENTITY}, deadline) as (head, final):
            status = head.status_code
            if status == 404:
                raise MediaNotFound(f"{_shown(url)}: 404 not found")
            if status == 206:
                answered = _content_range(head)
                size = answered[2] if answered is not None and answered[0] == 0 else None
            elif status == 200:
                body = _read_body(head, url, cap, deadline)
            else:
                raise UnsupportedSource(f"{_shown(url)}: HTTP {status}")
        if size is None and body is None:
            with _get(client, final, dict(_IDENTITY), deadline) as (full, _):
                if full.status_code != 200:
                    raise UnsupportedSource(
                        f"{_shown(url)}: no usable Content-Range, and a plain GET answered HTTP {full.status_code}"
                    )
                body = _read_body(full, url, cap, deadline)
        if size is not None:
            yield io.BufferedReader(_RangeFile(client, final, size, cap, deadline), buffer_size=_BLOCK), size
        else:
            assert body is not None
            yield io.BytesIO(body), len(body)


def _regular_file_size(path: Path) -> int:
    """The size of ``path`` if it is a regular file; a typed error for anything else.

    A FIFO would block ``open`` (and the probe) forever, a device can be endless, and a name with a newline
    or control character is almost always a pasted mistake that would also corrupt logs; an ``OSError``
    (name too long, permission denied, symlink loop) must not escape as a traceback either.
    """
    text = str(path)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise UnsupportedSource(f"the path {text!r} contains a newline or control character")
    try:
        status = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise MediaNotFound(f"no such file: {path}") from None
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise MediaNotFound(f"cannot read {text[:200]!r}: {reason}") from None
    if stat.S_ISDIR(status.st_mode):
        raise MediaNotFound(f"{path} is a directory, not a media file")
    if not stat.S_ISREG(status.st_mode):
        kind = ("a FIFO" if stat.S_ISFIFO(status.st_mode) else "a socket" if stat.S_ISSOCK(status.st_mode)
                else "a device" if stat.S_ISCHR(status.st_mode) or stat.S_ISBLK(status.st_mode) else "not a file")
        raise UnsupportedSource(f"{path} is {kind}, not a regular media file")
    return status.st_size


@contextmanager
def open_media(source: MediaSource, *, cap: int = DEFAULT_PROBE_CAP) -> Iterator[tuple[Any, int | None]]:
    """Something ``av.open`` accepts, and the input size when known."""
    if source.kind == "path":
        assert source.path is not None
        path = source.path
        yield str(path), _regular_file_size(path)
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
        _regular_file_size(source.path)  # never open a FIFO or a device, even when called on its own
        digest = hashlib.sha256()
        try:
            with source.path.open("rb") as handle:
                for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
                    digest.update(chunk)
        except OSError as exc:
            raise MediaNotFound(f"cannot read {source.path}: {exc.strerror or exc}") from None
        return digest.hexdigest()
    return None


def _stream_seconds(stream: Any) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return 0.0


def _check_complete(container: Any, streams: list[Any], duration: float, size: int | None, source: MediaSource) -> None:
    """Refuse a file whose header promises more media than its data holds (a cut-off copy or upload).

    The probe reads headers only, and an mp4 with its index up front opens fine with most of its data
    missing; a provider would then fail (and maybe bill) or lip-sync a fraction of the clip. So, for
    containers that index every packet, demux (never decode) the last ``TAIL_SECONDS`` of the probed
    streams: every packet must be whole and inside the file, and each stream must reach the end its
    header declares. One seek and about a second of packets, whatever the file's length.
    """
    import av

    if duration <= 0 or not streams or not _INDEXED_FORMATS.intersection(container.format.name.split(",")):
        return
    shown = source.describe()
    try:
        container.seek(int(max(0.0, duration - TAIL_SECONDS) * 1_000_000), backward=True, any_frame=True)
    except (av.error.FFmpegError, ValueError):
        return  # not seekable: nothing to learn cheaply, and the header alone was all we were asked for
    ends: dict[int, float] = {}
    try:
        for packet in container.demux(*streams):
            if packet.size == 0:
                continue  # the flush packet at the end of each stream
            beyond = size is not None and packet.pos is not None and packet.pos >= 0 and packet.pos + packet.size > size
            if packet.is_corrupt or beyond:
                raise NotAMediaFile(f"{shown} is truncated: its data stops before the end its header declares")
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is not None and packet.time_base is not None:
                end = float((stamp + (packet.duration or 0)) * packet.time_base)
                ends[packet.stream.index] = max(ends.get(packet.stream.index, end), end)
    except av.error.FFmpegError as exc:
        raise NotAMediaFile(f"{shown} is truncated or corrupt near its end ({type(exc).__name__})") from None
    container_end = (container.start_time or 0) / 1_000_000 + duration
    unknown: list[float] = []
    for stream in streams:
        got = ends.get(stream.index)
        if stream.duration is None or stream.time_base is None:
            unknown.append(got if got is not None else 0.0)
            continue
        expected = float(((stream.start_time or 0) + stream.duration) * stream.time_base)
        _refuse_short(shown, stream.type, got, expected)
    if unknown:  # streams without their own duration: together they must reach the container's
        _refuse_short(shown, "media", max(unknown), container_end)


def _refuse_short(shown: str, what: str, got: float | None, expected: float) -> None:
    if got is None or got < expected - max(0.25, 0.03 * expected):
        reached = 0.0 if got is None else got
        raise NotAMediaFile(
            f"{shown} is truncated: its {what} data stops at {reached:.2f} s "
            f"of the {expected:.2f} s its header declares"
        )


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
            _check_complete(container, [s for s in (video, audio) if s is not None], duration, size, source)
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
