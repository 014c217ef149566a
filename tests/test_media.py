from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from latentsync_routes.errors import (
    MediaLimitExceeded,
    MediaNotFound,
    MissingStream,
    NotAMediaFile,
    UnsupportedSource,
    ZeroDuration,
)
from latentsync_routes.media import (
    output_duration,
    output_frame_count,
    probe,
    safe_name,
    sha256_of,
    validate_audio,
    validate_video,
    whisper_positions,
)
from latentsync_routes.types import MediaInfo, MediaSource
from tests.mediafactory import make_video, make_wav


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    return {
        "clip": make_video(root / "clip.mp4", 2.0, fps=30, size=(64, 48), with_audio=True),
        "silent_clip": make_video(root / "silent.mp4", 1.0),
        "voice": make_wav(root / "voice.wav", 3.0),
    }


def test_probe_video_reads_headers(media: dict[str, Path]) -> None:
    info = probe(MediaSource.of(media["clip"]))
    assert info.has_video and info.has_audio
    assert (info.width, info.height) == (64, 48)
    assert info.fps == pytest.approx(30.0)
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert info.video_codec == "h264"
    assert info.size == media["clip"].stat().st_size
    assert info.sha256 == sha256_of(MediaSource.of(media["clip"]))


def test_probe_bytes_equals_probe_path(media: dict[str, Path]) -> None:
    data = media["voice"].read_bytes()
    from_bytes = probe(MediaSource.of(data, name="voice.wav"))
    from_path = probe(MediaSource.of(media["voice"]))
    assert from_bytes.duration == pytest.approx(from_path.duration)
    assert from_bytes.sha256 == from_path.sha256
    assert from_bytes.has_audio and not from_bytes.has_video


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(MediaNotFound, match="no such file"):
        probe(MediaSource.of(tmp_path / "absent.mp4"))
    with pytest.raises(MediaNotFound, match="directory"):
        probe(MediaSource.of(tmp_path))


def test_not_a_media_file(tmp_path: Path) -> None:
    junk = tmp_path / "notes.mp4"
    junk.write_bytes(b"this is not a video at all" * 100)
    with pytest.raises(NotAMediaFile):
        probe(MediaSource.of(junk))
    with pytest.raises(NotAMediaFile):
        probe(MediaSource.of(b"\x00" * 10, name="x.wav"))


def test_missing_streams(media: dict[str, Path]) -> None:
    voice = MediaSource.of(media["voice"])
    with pytest.raises(MissingStream, match="no video stream"):
        validate_video(probe(voice), voice)
    silent = MediaSource.of(media["silent_clip"])
    with pytest.raises(MissingStream, match="no audio stream"):
        validate_audio(probe(silent), silent)


def test_zero_duration_and_unknown_codec() -> None:
    source = MediaSource.of(b"x", name="x.mp4")
    info = MediaInfo(container="mp4", duration=0.0, has_video=True, video_codec="h264", width=8, height=8)
    with pytest.raises(ZeroDuration):
        validate_video(info, source)
    from latentsync_routes.errors import UnsupportedCodec

    bad = info.model_copy(update={"duration": 1.0, "video_codec": "no-such-codec"})
    with pytest.raises(UnsupportedCodec, match="no-such-codec"):
        validate_video(bad, source)


def test_url_schemes_refused() -> None:
    with pytest.raises(UnsupportedSource, match="scheme 'ftp'"):
        MediaSource.of("ftp://example.com/a.mp4")
    with pytest.raises(UnsupportedSource, match="loopback"):
        MediaSource.of("http://example.com/a.mp4")
    assert MediaSource.of("http://127.0.0.1:9/a.mp4").kind == "url"
    assert MediaSource.of("https://example.com/a.mp4?sig=secret").describe() == "https://example.com/a.mp4"


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with byte ranges and counts the bytes it sent."""

    sent = 0

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        header = self.headers.get("Range")
        if header:
            start_s, end_s = header.removeprefix("bytes=").split("-")
            start, end = int(start_s), min(int(end_s), len(data) - 1)
            body = data[start : end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        type(self).sent += len(body)


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path, type[_RangeHandler]]]:
    handler = type("H", (_RangeHandler,), {"sent": 0})

    def factory(*args: object, **kwargs: object) -> http.server.BaseHTTPRequestHandler:
        return handler(*args, directory=str(tmp_path), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), factory)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path, handler
    server.shutdown()
    server.server_close()


def test_probe_url_reads_only_what_it_needs(file_server: tuple[str, Path, type[_RangeHandler]]) -> None:
    base, root, handler = file_server
    # A 20 s video with a large payload: the probe must not download it whole.
    make_video(root / "big.mp4", 8.0, fps=25, size=(160, 120), with_audio=True, noise=True)
    size = (root / "big.mp4").stat().st_size
    info = probe(MediaSource.of(f"{base}/big.mp4"))
    assert info.has_video and info.duration == pytest.approx(8.0, abs=0.1)
    assert info.size == size
    assert info.sha256 is None  # never downloaded just to hash
    assert handler.sent < size / 2, f"probe fetched {handler.sent} of {size} bytes"


def test_probe_url_cap_and_404(file_server: tuple[str, Path, type[_RangeHandler]]) -> None:
    base, root, _ = file_server
    make_wav(root / "voice.wav", 10.0)
    with pytest.raises(MediaLimitExceeded, match="probing"):
        probe(MediaSource.of(f"{base}/voice.wav"), cap=1024)
    with pytest.raises(MediaNotFound, match="404"):
        probe(MediaSource.of(f"{base}/absent.wav"))


@pytest.mark.parametrize(
    ("seconds", "frames"),
    [(0.0, 0), (1.0, 27), (10.0, 252), (30.0, 752), (31.0, 777), (100.0, 2502)],
)
def test_output_frame_count_rule(seconds: float, frames: int) -> None:
    assert output_frame_count(seconds) == frames
    assert output_duration(seconds) == pytest.approx(frames / 25)


def test_whisper_positions_windows() -> None:
    # 30 s gives 3000 mel frames -> 1500 positions; the next window keeps half of its own frames.
    assert whisper_positions(30 * 16000) == 1500
    assert whisper_positions(31 * 16000) == 1500 + 50
    assert whisper_positions(160 * 3) == 1


def test_safe_name() -> None:
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("..\\..\\evil.mp4") == "evil.mp4"
    assert safe_name(".hidden") == "hidden"
    assert safe_name("") == "output.mp4"
    assert safe_name("out put;rm.mp4") == "out_put_rm.mp4"
