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
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    MediaNotFound,
    MissingStream,
    NotAMediaFile,
    UnsupportedCodec,
    UnsupportedSource,
    ZeroDuration,
)
from .media_url import open_url
from .types import MediaInfo, MediaSource

if TYPE_CHECKING:
    pass

DEFAULT_PROBE_CAP = 32 * 1024 * 1024
_BLOCK = 64 * 1024
_HASH_CHUNK = 1024 * 1024

#: How much of the end of an indexed file is demuxed to prove its data is really there.
TAIL_SECONDS = 1.0
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
        kind = (
            "a FIFO"
            if stat.S_ISFIFO(status.st_mode)
            else "a socket"
            if stat.S_ISSOCK(status.st_mode)
            else "a device"
            if stat.S_ISCHR(status.st_mode) or stat.S_ISBLK(status.st_mode)
            else "not a file"
        )
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
        with open_url(source.url, cap) as (handle, size):
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
                duration = max(_stream_seconds(s) for s in (video, audio) if s is not None) if (video or audio) else 0.0
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


def probe_inputs(video: MediaSource, audio: MediaSource) -> tuple[MediaInfo, MediaInfo]:
    """Probe and validate a job's two inputs (the video first: a bad one is refused before the audio is read).

    Input limits are not applied here: they are the checklist's ``input_limits`` row and the estimate's
    ``refused``, read from one place (``policy.limit_problems``).
    """
    video_info = probe(video)
    validate_video(video_info, video)
    audio_info = probe(audio)
    validate_audio(audio_info, audio)
    return video_info, audio_info


def safe_name(name: str, default: str = "output.mp4") -> str:
    """A provider-supplied file name made safe: no directories, no traversal, no hidden files."""
    base = Path(name.replace("\\", "/")).name.strip().lstrip(".")
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in base)
    return cleaned[:128] or default
