"""Hostile and broken inputs: each must end in a typed error (the right exit code), never a crash or a hang.

Parameters, settings, the CLI's last line of defence, consent text, local paths that are not files,
``data:`` arguments, truncated media, and URLs served by a real loopback ``http.server`` that misbehaves
(gzip bombs, trickling bodies, redirects, odd ``Content-Range``s). Nothing here touches the internet.
"""

from __future__ import annotations

import gzip
import http.server
import json
import math
import os
import sqlite3
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import pytest
from typer.testing import CliRunner

from latentsync_routes import LipSyncClient, cli, media_url
from latentsync_routes.cli import commands as cli_commands
from latentsync_routes.config import load_settings
from latentsync_routes.errors import (
    ConfigurationError,
    DownloadError,
    InvalidParameter,
    MediaLimitExceeded,
    MediaNotFound,
    NotAMediaFile,
    UnsupportedSource,
)
from latentsync_routes.media import probe, sha256_of
from latentsync_routes.types import LipSyncRequest, MediaSource
from tests import hosted_fixtures
from tests.cli_helpers import run_cli
from tests.mediafactory import make_video, make_wav

hosted_env = hosted_fixtures.hosted_env


def faststart(src: Path, dst: Path) -> Path:
    """The same media remuxed with its index (moov) in front, as web and phone videos usually are."""
    with av.open(str(src)) as source, av.open(str(dst), "w", format="mp4", options={"movflags": "faststart"}) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
        for packet in source.demux():
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dst


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hardening")
    clip = faststart(make_video(root / "raw.mp4", 3.0, with_audio=True, noise=True), root / "clip.mp4")
    data = clip.read_bytes()
    (root / "third.mp4").write_bytes(data[: len(data) // 3])
    (root / "most.mp4").write_bytes(data[: len(data) * 9 // 10])
    return {
        "clip": clip,
        "third": root / "third.mp4",
        "most": root / "most.mp4",
        "voice": make_wav(root / "voice.wav", 1.0),
    }


# -- 1. request parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "field", "says"),
    [
        ({"guidance_scale": math.nan}, "guidance_scale", "finite"),
        ({"guidance_scale": math.inf}, "guidance_scale", "finite"),
        ({"guidance_scale": -math.inf}, "guidance_scale", "finite"),
        ({"guidance_scale": True}, "guidance_scale", "number, not bool"),
        ({"seed": True}, "seed", "integer, not bool"),
        ({"seed": -1}, "seed", "between 0 and 4294967295"),
        ({"seed": 2**32}, "seed", "between 0 and 4294967295"),
        ({"seed": 1.0}, "seed", "integer, not float"),
        ({"inference_steps": True}, "inference_steps", "integer, not bool"),
        ({"inference_steps": 0}, "inference_steps", "between 1 and 1000"),
        ({"inference_steps": 1001}, "inference_steps", "between 1 and 1000"),
        ({"extras": {"strength": math.nan}}, "extras", "extras.strength: must be finite"),
        ({"extras": {"nested": {"values": [1.0, math.inf]}}}, "extras", "extras.nested.values[1]: must be finite"),
        ({"extras": {"seed": True}}, "extras", "extras.seed: must be an integer, not bool"),
        ({"extras": {"inference_steps": False}}, "extras", "extras.inference_steps: must be an integer"),
    ],
)
def test_bad_parameters_are_refused_first_with_exit_2(
    tmp_path: Path, given: dict[str, Any], field: str, says: str
) -> None:
    client = LipSyncClient(route="fal", settings=load_settings(home=tmp_path))
    # The inputs do not exist: the parameter must be refused before anything looks at them.
    with pytest.raises(InvalidParameter) as info:
        client.estimate(tmp_path / "absent.mp4", tmp_path / "absent.wav", **given)
    assert info.value.parameter == field and info.value.exit_code == 2
    assert says in info.value.message and "Value error" not in info.value.message


def test_sane_parameters_at_the_bounds_are_kept() -> None:
    source = MediaSource.of("clip.mp4")
    request = LipSyncRequest(
        video=source,
        audio=source,
        guidance_scale=0,
        seed=2**32 - 1,
        inference_steps=1000,
        extras={"strength": 0.5, "flag": True},
    )
    assert request.given_parameters() == {
        "guidance_scale": 0.0,
        "seed": 2**32 - 1,
        "inference_steps": 1000,
        "strength": 0.5,
        "flag": True,
    }
    assert isinstance(request.given_parameters()["flag"], bool)
    assert LipSyncRequest(video=source, audio=source, seed=0, inference_steps=1).seed == 0


# -- 2. settings from the environment -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LATENTSYNC_ROUTES_MAX_ATTEMPTS", "abc"),
        ("LATENTSYNC_ROUTES_POLICY__INTENDED_USE", "evil"),
        ("LATENTSYNC_ROUTES_BUDGET_PER_CALL", "abc"),
        ("LATENTSYNC_ROUTES_BUDGET_PER_CALL", "nan"),
        ("LATENTSYNC_ROUTES_POLICY__MAX_RETENTION_DAYS", "abc"),
        ("LATENTSYNC_ROUTES_DEADLINE_SECONDS", "nan"),
        ("LATENTSYNC_ROUTES_DEADLINE_SECONDS", "-1"),
        ("LATENTSYNC_ROUTES_DEADLINE_SECONDS", "0"),
        ("LATENTSYNC_ROUTES_POLL_INTERVAL", "-1"),
        ("LATENTSYNC_ROUTES_POLL_INTERVAL", "nan"),
        ("LATENTSYNC_ROUTES_POLL_INTERVAL", "0"),
    ],
)
def test_bad_environment_values_are_configuration_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as info:
        load_settings(home=tmp_path)
    assert info.value.exit_code == 2
    assert variable in info.value.message and repr(value) in info.value.message
    assert "errors.pydantic.dev" not in info.value.message


def test_bad_environment_value_in_toml_mode_and_on_the_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    toml = tmp_path / "cfg.toml"
    toml.write_text("poll_interval = 0.5\n")
    monkeypatch.setenv("LATENTSYNC_ROUTES_MAX_ATTEMPTS", "abc")
    with pytest.raises(ConfigurationError, match="LATENTSYNC_ROUTES_MAX_ATTEMPTS"):
        load_settings(toml)
    done = run_cli("routes", "--json", home=tmp_path / "home", env={"LATENTSYNC_ROUTES_POLL_INTERVAL": "nan"})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["exit_code"] == 2 and "LATENTSYNC_ROUTES_POLL_INTERVAL" in error["message"]


# -- 3. the CLI's last line of defence ----------------------------------------------------------------


def _broken_client(exc: BaseException) -> Callable[..., Any]:
    def client(*args: Any, **kwargs: Any) -> Any:
        raise exc

    return client


@pytest.mark.parametrize(
    ("exc", "code", "kind"),
    [
        (sqlite3.DatabaseError("file is not a database"), 2, "JournalError"),  # a ConfigurationError
        (PermissionError(13, "Permission denied", "/nowhere/jobs.sqlite3"), 2, "ConfigurationError"),
        (RuntimeError("provider SDK exploded"), 4, "RouteError"),
    ],
)
def test_any_escaping_exception_is_one_typed_json_error(
    monkeypatch: pytest.MonkeyPatch, exc: BaseException, code: int, kind: str
) -> None:
    monkeypatch.setattr(cli_commands, "_client", _broken_client(exc))  # the commands' own reference
    result = CliRunner().invoke(cli.app, ["routes", "--json"])
    assert result.exit_code == code, result.output
    error = json.loads(result.stdout)["error"]  # exactly one JSON document on stdout
    assert error["type"] == kind and error["exit_code"] == code
    assert type(exc).__name__ in error["message"] or "Permission denied" in error["message"]
    human = CliRunner().invoke(cli.app, ["routes"])
    assert human.exit_code == code and "Traceback" not in human.output


def test_a_pydantic_validation_error_escaping_a_command_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import BaseModel, ValidationError

    class Strict(BaseModel):
        count: int

    try:
        Strict(count="many")  # type: ignore[arg-type]
    except ValidationError as exc:
        monkeypatch.setattr(cli_commands, "_client", _broken_client(exc))
    result = CliRunner().invoke(cli.app, ["doctor", "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"]["type"] == "ConfigurationError"


def test_usage_errors_under_json_are_one_json_document(tmp_path: Path) -> None:
    done = run_cli("estimate", "--no-such-option", "a.mp4", "b.wav", "--json", home=tmp_path)
    assert done.returncode == 2
    error = json.loads(done.stdout)["error"]
    assert error["exit_code"] == 2 and "no-such-option" in error["message"]


# -- 4. consent ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("consent", ["\x00\x01\n\t ", "\u200b\u00a0\u3000", "\x7f\x1b"])
def test_invisible_consent_is_no_consent(tmp_path: Path, consent: str) -> None:
    from latentsync_routes.policy import evaluate

    client = LipSyncClient(route="fal", settings=load_settings(home=tmp_path))
    info = client.route().info()
    outcome = {r.check: r for r in evaluate(info, client.settings.policy, consent=consent)}
    assert not outcome["consent"].passed
    given = {r.check: r for r in evaluate(info, client.settings.policy, consent=" signed\x00 release #7 ")}
    assert given["consent"].passed and "signed release #7" in given["consent"].reason


# -- 5a. local paths and data: arguments --------------------------------------------------------------


def _within(seconds: float, action: Callable[[], object], unblock: Callable[[], None]) -> BaseException | None:
    """Run ``action`` in a thread; fail (after ``unblock``) if it is still running after ``seconds``."""
    outcome: list[BaseException | None] = []

    def work() -> None:
        try:
            action()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        unblock()
        thread.join(5)
        pytest.fail(f"still running after {seconds} s")
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)

    def unblock() -> None:  # let a reader stuck in open() go
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)

    for action in (lambda: probe(MediaSource.of(fifo)), lambda: sha256_of(MediaSource.of(fifo))):
        error = _within(5.0, action, unblock)
        assert isinstance(error, UnsupportedSource) and "FIFO" in str(error)


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_a_device_is_refused() -> None:
    error = _within(5.0, lambda: probe(MediaSource.of("/dev/zero")), lambda: None)
    assert isinstance(error, UnsupportedSource) and "device" in str(error)


def test_paths_with_control_characters_and_absurd_names(tmp_path: Path, clips: dict[str, Path]) -> None:
    odd = tmp_path / "clip\nname.mp4"
    odd.write_bytes(clips["clip"].read_bytes())  # it exists, and is still refused
    with pytest.raises(UnsupportedSource, match="control character"):
        probe(MediaSource.of(odd))
    with pytest.raises(MediaNotFound):
        probe(MediaSource.of(str(tmp_path / ("x" * 5000 + ".mp4"))))
    with pytest.raises(MediaNotFound):
        sha256_of(MediaSource.of(str(tmp_path / ("x" * 5000 + ".mp4"))))


def test_a_data_uri_argument_is_a_typed_error(tmp_path: Path) -> None:
    uri = "data:video/mp4;base64," + "A" * 5000
    with pytest.raises(UnsupportedSource, match="data: URIs"):
        MediaSource.of(uri)
    client = LipSyncClient(route="fal", settings=load_settings(home=tmp_path))
    with pytest.raises(UnsupportedSource):
        client.estimate(uri, tmp_path / "voice.wav")
    done = run_cli("estimate", uri, str(tmp_path / "voice.wav"), "--json", home=tmp_path / "home")
    assert done.returncode == 2 and json.loads(done.stdout)["error"]["type"] == "UnsupportedSource"


# -- 5b. truncated media ------------------------------------------------------------------------------


def test_truncated_media_data_is_refused_before_upload(clips: dict[str, Path]) -> None:
    assert probe(MediaSource.of(clips["clip"])).duration == pytest.approx(3.0, abs=0.1)
    for name in ("third", "most"):
        # The index is intact, so the header alone still claims 3 s: the data must be checked.
        with av.open(str(clips[name])) as container:
            assert container.duration / 1e6 == pytest.approx(3.0, abs=0.1)
        with pytest.raises(NotAMediaFile, match="truncated"):
            probe(MediaSource.of(clips[name]))
        with pytest.raises(NotAMediaFile, match="truncated"):
            probe(MediaSource.of(clips[name].read_bytes(), name="clip.mp4"))


# -- 5c. misbehaving URL servers ----------------------------------------------------------------------

Behaviour = Callable[[http.server.BaseHTTPRequestHandler], None]


class _Server:
    """A loopback server whose answer per path is a function; records the headers of every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Behaviour] = {}
        self.seen: list[dict[str, str]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                owner.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                behaviour = owner.routes.get(self.path)
                try:
                    if behaviour is None:
                        self.send_error(404)
                    else:
                        behaviour(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    running = _Server()
    yield running
    running.close()


def serve_file(data: bytes, *, ranges: bool = True, odd_range: str | None = None) -> Behaviour:
    def behaviour(h: http.server.BaseHTTPRequestHandler) -> None:
        header = h.headers.get("Range")
        if header and (ranges or odd_range):
            start_s, end_s = header.removeprefix("bytes=").split("-")
            start, end = int(start_s), min(int(end_s), len(data) - 1)
            body = data[start : end + 1]
            h.send_response(206)
            h.send_header("Content-Range", odd_range or f"bytes {start}-{end}/{len(data)}")
        else:
            body = data
            h.send_response(200)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return behaviour


def test_url_probe_asks_for_identity_and_caps_a_gzip_bomb(server: _Server) -> None:
    bomb = gzip.compress(b"\x00" * (48 * 1024 * 1024), compresslevel=9)

    def behaviour(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(200)  # no range support, and compressed whatever was asked
        h.send_header("Content-Encoding", "gzip")
        h.send_header("Content-Length", str(len(bomb)))
        h.end_headers()
        h.wfile.write(bomb)

    server.routes["/bomb.mp4"] = behaviour
    tracemalloc.start()
    try:
        with pytest.raises(MediaLimitExceeded):
            probe(MediaSource.of(f"{server.url}/bomb.mp4"), cap=1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"the bomb inflated to {peak} bytes in memory"
    assert server.seen and all(r.get("accept-encoding") == "identity" for r in server.seen)


def _trickle(head: dict[str, str], status: int = 200) -> Behaviour:
    def behaviour(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for key, value in head.items():
            h.send_header(key, value)
        h.end_headers()
        for _ in range(40):  # 20 s in all: far past the shrunk deadline, but finite
            h.wfile.write(b"\x00")
            h.wfile.flush()
            time.sleep(0.5)

    return behaviour


def test_a_trickling_server_fails_within_the_total_time_cap(server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media_url, "URL_PROBE_TIMEOUT_S", 1.5)
    server.routes["/slow.mp4"] = _trickle({"Content-Length": "1000"})
    started = time.monotonic()
    with pytest.raises(UnsupportedSource, match="too slow"):
        probe(MediaSource.of(f"{server.url}/slow.mp4"))
    assert time.monotonic() - started < 5.0


def test_range_block_reads_share_the_time_cap(server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(media_url, "URL_PROBE_TIMEOUT_S", 1.5)

    def behaviour(h: http.server.BaseHTTPRequestHandler) -> None:
        if h.headers.get("Range") == "bytes=0-0":
            serve_file(b"\x00" * 200_000)(h)
        else:  # every block read trickles
            _trickle({"Content-Range": "bytes 0-65535/200000", "Content-Length": "65536"}, status=206)(h)

    server.routes["/slow.mp4"] = behaviour
    started = time.monotonic()
    with pytest.raises(UnsupportedSource, match="too slow"):
        probe(MediaSource.of(f"{server.url}/slow.mp4"))
    assert time.monotonic() - started < 5.0


def test_redirects_are_followed_by_hand_and_checked(server: _Server, clips: dict[str, Path]) -> None:
    def redirect(to: str) -> Behaviour:
        def behaviour(h: http.server.BaseHTTPRequestHandler) -> None:
            h.send_response(302)
            h.send_header("Location", to)
            h.send_header("Content-Length", "0")
            h.end_headers()

        return behaviour

    server.routes["/clip.mp4"] = serve_file(clips["clip"].read_bytes())
    server.routes["/hop2"] = redirect("/clip.mp4")
    server.routes["/hop1"] = redirect(f"{server.url}/hop2")
    assert probe(MediaSource.of(f"{server.url}/hop1")).duration == pytest.approx(3.0, abs=0.1)

    server.routes["/away"] = redirect("http://example.com/clip.mp4")  # plain http off loopback
    with pytest.raises(UnsupportedSource, match="redirects to http://example.com/clip.mp4"):
        probe(MediaSource.of(f"{server.url}/away"))
    server.routes["/file"] = redirect("file:///etc/passwd")
    with pytest.raises(UnsupportedSource, match="scheme 'file'"):
        probe(MediaSource.of(f"{server.url}/file"))
    server.routes["/loop"] = redirect("/loop")
    server.seen.clear()
    with pytest.raises(UnsupportedSource, match="redirects"):
        probe(MediaSource.of(f"{server.url}/loop"))
    assert len(server.seen) == media_url.MAX_REDIRECTS + 1


def test_a_206_with_an_odd_content_range_falls_back_or_fails_typed(server: _Server, clips: dict[str, Path]) -> None:
    data = clips["clip"].read_bytes()
    server.routes["/star.mp4"] = serve_file(data, ranges=False, odd_range="bytes 0-0/*")
    assert probe(MediaSource.of(f"{server.url}/star.mp4")).duration == pytest.approx(3.0, abs=0.1)

    def always_odd(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(206)
        h.send_header("Content-Range", "bytes 0-0/*")
        h.send_header("Content-Length", "1")
        h.end_headers()
        h.wfile.write(b"\x00")

    server.routes["/odd.mp4"] = always_odd
    with pytest.raises(UnsupportedSource, match="Content-Range"):
        probe(MediaSource.of(f"{server.url}/odd.mp4"))
    server.routes["/junk.mp4"] = serve_file(data, ranges=False, odd_range="bytes junk")
    assert probe(MediaSource.of(f"{server.url}/junk.mp4")).has_video


# -- 6. downloads -------------------------------------------------------------------------------------


def test_stale_parts_of_a_killed_download_are_removed_but_live_ones_kept(
    hosted_env: Path, tmp_path: Path, server: _Server, clips: dict[str, Path]
) -> None:
    from latentsync_routes import download

    job = hosted_fixtures.make_job(tmp_path)
    dest = tmp_path / "out.mp4"
    killed = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from latentsync_routes.download import _temp_beside\n"
        "tmp = _temp_beside(Path(sys.argv[1]))\n"
        "tmp.write_bytes(b'half a video')\n"
        "os._exit(9)\n"  # killed mid-download: nothing cleans up
    )
    subprocess.run([sys.executable, "-c", killed, str(dest)], check=False, timeout=60)
    stale = [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")]
    assert len(stale) == 1
    other = tmp_path / "out.mp4.other.mp4"  # a different destination's temp files are not ours to remove
    subprocess.run([sys.executable, "-c", killed, str(other)], check=False, timeout=60)
    live = download._temp_beside(dest)  # a download of the same destination still running here
    try:
        server.routes["/out.mp4"] = serve_file(clips["clip"].read_bytes())
        assert download.download_output(job, f"{server.url}/out.mp4", route="test", request_id=None) == dest
        left = sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".part"))
        assert stale[0] not in left and live.name in left and len(left) == 2
    finally:
        download._discard(live)


def test_a_partial_206_download_is_never_accepted(
    hosted_env: Path, tmp_path: Path, server: _Server, clips: dict[str, Path]
) -> None:
    from latentsync_routes.download import download_output

    data = clips["clip"].read_bytes()
    half = len(data) // 2

    def partial(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(206)  # nobody asked for a range
        h.send_header("Content-Range", f"bytes 0-{half - 1}/{len(data)}")
        h.send_header("Content-Length", str(half))
        h.end_headers()
        h.wfile.write(data[:half])

    def star(h: http.server.BaseHTTPRequestHandler) -> None:
        h.send_response(206)
        h.send_header("Content-Range", "bytes 0-0/*")
        h.end_headers()
        h.wfile.write(data)

    server.routes["/partial.mp4"] = partial
    server.routes["/star.mp4"] = star
    server.routes["/whole.mp4"] = serve_file(data, odd_range=f"bytes 0-{len(data) - 1}/{len(data)}")
    for path in ("/partial.mp4", "/star.mp4"):
        job = hosted_fixtures.make_job(tmp_path, max_attempts=2)
        with pytest.raises(DownloadError, match="206"):
            download_output(job, f"{server.url}{path}", route="test", request_id=None)
        assert not (tmp_path / "out.mp4").exists()
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    job = hosted_fixtures.make_job(tmp_path)
    ranged = {"Range": f"bytes=0-{len(data) - 1}"}
    assert (
        download_output(job, f"{server.url}/whole.mp4", route="test", request_id=None, headers=ranged).read_bytes()
        == data
    )
