"""The web page under attack: its fields, its handlers, and its HTTP API called directly (no browser).

Whatever is typed or posted (a server path, ``file:`` and other schemes, traversal, control characters,
oversized values), no server file is read, staged, served or uploaded, and nothing is paid: the fakes see
no request. The page is served for real (``serve``) on the fakes and on a client with no keys, on a free
loopback port; requests go through httpx and gradio_client as any script on the network would send them.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from latentsync_routes import LipSyncClient, load_settings
from latentsync_routes.ui import state
from latentsync_routes.ui.fakes import FAKES_BLOCKED, fake_providers

pytest.importorskip("gradio")

HOSTILE_URLS = [
    "/proc/self/environ",
    "/etc/passwd",
    "~/.ssh/id_rsa",
    "../../../../../../proc/self/environ",
    "jobs.sqlite3",
    "file:///proc/self/environ",
    "FILE:///etc/passwd",
    "file://localhost/etc/passwd",
    "gopher://127.0.0.1:25/x",
    "ftp://example.com/clip.mp4",
    "data:video/mp4;base64,AAAA",
    "javascript:alert(1)",
    "http://169.254.169.254/latest/meta-data/",
    "https://exa mple.com/clip.mp4",
    "https://example.com/\x1b[2J.mp4",
    "https://example.com/" + "a" * 5000,
]


def _no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FAL_KEY", "REPLICATE_API_TOKEN", "WAVESPEED_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")


@pytest.fixture
def page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from latentsync_routes.ui.app import Page

    _no_keys(monkeypatch)
    with fake_providers(load_settings(home=tmp_path / "home"), fast=True, poll_interval=0.05) as setup:
        yield Page(setup.client, FAKES_BLOCKED), setup


def _staged(page: Any) -> list[Path]:
    root = state.uploads_root(page.home)
    return sorted(root.rglob("*")) if root.is_dir() else []


# -- the handlers --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("typed", HOSTILE_URLS, ids=[repr(u)[:30] for u in HOSTILE_URLS])
def test_a_url_box_takes_http_urls_only_and_reads_nothing(typed: str, page: Any) -> None:
    handlers, setup = page
    for boxes in ((typed, ""), ("", typed), (typed, "https://example.com/voice.wav")):
        inputs, assessment, _, _, gate, button = handlers.on_inputs(None, None, *boxes, "synthetic", "fal", None)
        assert inputs is None and assessment is None and button["interactive"] is False
        assert 'data-gate="blocked"' in gate and "UnsupportedSource" in gate
    assert _staged(handlers) == [] and list(handlers.served.rglob("*")) == []
    assert all(server.requests == [] for server in setup.servers.values())


def test_proc_self_environ_in_a_url_box_is_refused_on_the_page(page: Any) -> None:
    handlers, _ = page
    *_, gate, _ = handlers.on_inputs(None, None, "/proc/self/environ", "", "", "cheapest", None)
    assert "the video box takes an http(s):// URL only" in gate and "never reads a file on the server" in gate
    *_, gate, _ = handlers.on_inputs(None, None, "", "/proc/self/environ", "", "cheapest", None)
    assert "the audio box takes an http(s):// URL only" in gate
    assert "PATH=" not in gate and os.environ.get("HOME", "~") not in gate


def test_an_upload_value_outside_the_pages_upload_folder_is_refused(page: Any, tmp_path: Path) -> None:
    handlers, setup = page
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"private")
    link = handlers.served / "up" / "clip.mp4"
    link.parent.mkdir()
    link.symlink_to(secret)  # a link inside the folder to a file outside it
    for given in (
        "/proc/self/environ",
        str(secret),
        str(handlers.served / ".." / secret.name),
        str(link),
        str(handlers.served),
        "x" * 5000,
        "clip\x00.mp4",
    ):
        *_, gate, button = handlers.on_inputs(given, given, "", "", "synthetic", "fal", None)
        assert "not a file this page received" in gate and button["interactive"] is False
    assert _staged(handlers) == [] and secret.read_bytes() == b"private"
    assert all(server.requests == [] for server in setup.servers.values())


def test_a_control_character_consent_never_enables_the_run(page: Any) -> None:
    handlers, setup = page
    *_, inputs, assessment, _, _, gate, button = handlers.on_synthetic("\x1b[2J", "fal", None)
    assert button["interactive"] is False and "Consent:" in gate
    for consent in ("\x1b[2J", "\u200b\u200b\u200b", "\x00ok", "x" * 2000):
        assessment, *_, gate, button = handlers.on_consent(consent, "fal", inputs)
        assert button["interactive"] is False, consent
        assert state.gate(assessment, "fal", consent).enabled is False
    assert all(server.requests == [] for server in setup.servers.values())


# -- the command: who may reach the page ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "env", "said"),
    [
        (["--share"], {}, "give --auth USER:PASS"),
        (["--fakes", "--share"], {}, "give --auth USER:PASS"),
        (["--host", "0.0.0.0"], {}, "give --auth USER:PASS"),
        (["--host", "192.0.2.7", "--fakes"], {}, "give --auth USER:PASS"),
        (["--share", "--auth", "ann:pw"], {"FAL_KEY": "real-looking-key-123"}, "FAL_KEY (env)"),
        (["--host", "0.0.0.0", "--auth", "ann:pw"], {"WAVESPEED_API_KEY": "abc123"}, "WAVESPEED_API_KEY (env)"),
        (["--share", "--auth", "nopassword"], {}, "--auth takes USER:PASS"),
        (["--share", "--auth", ":pw"], {}, "--auth takes USER:PASS"),
    ],
)
def test_a_page_others_can_reach_needs_a_login_and_no_real_keys(
    args: list[str], env: dict[str, str], said: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from latentsync_routes.cli import app

    _no_keys(monkeypatch)
    started: list[Any] = []
    monkeypatch.setattr("latentsync_routes.ui.serve", lambda client, **kwargs: started.append(kwargs))
    done = CliRunner().invoke(app, ["ui", *args, "--json"], env={"LATENTSYNC_ROUTES_HOME": str(tmp_path), **env})
    assert done.exit_code == 2 and started == []
    error = json.loads(done.stdout)["error"]
    assert error["type"] == "ConfigurationError" and said in error["message"]
    for value in env.values():
        assert value not in done.output  # the variable is named, never its value


def test_the_host_check_reads_the_header_as_a_browser_sends_it() -> None:
    from latentsync_routes.ui.hosts import allowed_hosts, host_of

    assert host_of("127.0.0.1:7860") == "127.0.0.1" and host_of("[::1]:7860") == "::1"
    assert host_of("LocalHost") == "localhost" and host_of("evil.example:80") == "evil.example"
    loopback = allowed_hosts("127.0.0.1")
    assert {"127.0.0.1", "localhost", "::1"} <= loopback and "evil.example" not in loopback
    assert "192.0.2.7" in allowed_hosts("192.0.2.7") and "192.0.2.8" not in allowed_hosts("192.0.2.7")
    assert socket.gethostname().lower() in allowed_hosts("0.0.0.0")


# -- the page served, its API called directly ---------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    def __init__(self, demo: Any, client: Any, servers: dict[str, Any]) -> None:
        self.demo, self.client, self.servers = demo, client, servers
        self.url = demo.local_url.rstrip("/")
        self.served = Path(os.environ["GRADIO_TEMP_DIR"])


@pytest.fixture(scope="module", params=["fakes", "real"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from latentsync_routes.ui import serve

    saved = {
        k: os.environ.get(k)
        for k in (
            "FAL_KEY",
            "REPLICATE_API_TOKEN",
            "WAVESPEED_API_KEY",
            "GRADIO_TEMP_DIR",
            "GRADIO_EXAMPLES_CACHE",
            "PYTHON_KEYRING_BACKEND",
        )
    }
    for name in ("FAL_KEY", "REPLICATE_API_TOKEN", "WAVESPEED_API_KEY"):
        os.environ.pop(name, None)
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.null.Keyring"
    home = tmp_path_factory.mktemp("page") / "home"
    try:
        if request.param == "fakes":
            with fake_providers(load_settings(home=home), fast=True, poll_interval=0.05) as setup:
                demo = serve(setup.client, port=_free_port(), fakes=True, blocked=FAKES_BLOCKED, block=False)
                yield Served(demo, setup.client, setup.servers)
                demo.close()
        else:
            client = LipSyncClient(settings=load_settings(home=home))
            demo = serve(client, port=_free_port(), block=False)
            yield Served(demo, client, {})
            demo.close()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _call(served: Served, api: str, data: list[Any]) -> tuple[str, Any]:
    """One call of a named endpoint over raw HTTP: ``("complete", outputs)`` or ``("error", message)``."""
    posted = httpx.post(f"{served.url}/gradio_api/call/{api}", json={"data": data}, timeout=60)
    assert posted.status_code == 200, posted.text
    event_id = posted.json()["event_id"]
    answer = httpx.get(f"{served.url}/gradio_api/call/{api}/{event_id}", timeout=120).text
    kind, payload = "", None
    for line in answer.splitlines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ").strip()
        elif line.startswith("data: ") and kind in ("complete", "error"):
            payload = json.loads(line.removeprefix("data: "))
    return kind, payload


def _file(path: str) -> dict[str, Any]:
    return {"path": path, "meta": {"_type": "gradio.FileData"}}


def test_gradio_serves_only_a_folder_the_page_created(served: Served) -> None:
    folder = served.served.resolve()
    home = Path(served.client.settings.home).resolve()
    for private in (Path.cwd().resolve(), home, Path.home().resolve()):
        assert private not in folder.parents and folder != private
    assert folder.name.startswith("latentsync-ui-") and oct(folder.stat().st_mode & 0o777) == "0o700"
    assert served.demo.allowed_paths == []


def test_the_api_never_reads_a_server_path_whatever_is_posted(served: Served) -> None:
    served.client.journal.list()  # the journal exists: a file worth stealing
    for value in HOSTILE_URLS:
        kind, outputs = _call(served, "on_inputs", [None, None, value, value, "synthetic", "fal"])
        assert kind == "complete"
        gate = outputs[4]  # the two states come back as null
        assert "UnsupportedSource" in gate and "PATH=" not in json.dumps(outputs)
    for path in (
        "/proc/self/environ",
        str(Path(served.client.settings.home) / "jobs.sqlite3"),
        str(Path.cwd() / "pyproject.toml"),
        f"{served.served}/../../etc/passwd",
    ):
        kind, outputs = _call(served, "on_inputs", [_file(path), _file(path), "", "", "synthetic", "fal"])
        assert kind == "error" or "not a file this page received" in outputs[4]
        assert "PATH=" not in json.dumps(outputs)
    assert [p for p in served.served.rglob("*") if p.is_file()] == []
    staged = state.uploads_root(Path(served.client.settings.home))
    assert not staged.exists() or list(staged.iterdir()) == []
    assert all(server.requests == [] for server in served.servers.values())


def test_the_file_route_serves_no_server_file(served: Served) -> None:
    home = Path(served.client.settings.home)
    served.client.journal.list()
    fake = next(iter(served.servers.values())).url if served.servers else "http://127.0.0.1:1"
    for target in (
        "/proc/self/environ",
        "/etc/passwd",
        str(home / "jobs.sqlite3"),
        str(Path.cwd() / "pyproject.toml"),
        f"{served.served}/../../../../etc/passwd",
        "../../../../etc/passwd",
        "file:///etc/passwd",
        f"{fake}/",
        "http://169.254.169.254/latest/meta-data/",
    ):
        answer = httpx.get(f"{served.url}/gradio_api/file={target}", timeout=30)
        assert answer.status_code in (403, 404), (target, answer.status_code)
        assert "PATH=" not in answer.text and "root:" not in answer.text
    assert all(server.requests == [] for server in served.servers.values())


def test_a_request_for_another_host_is_refused(served: Served) -> None:
    for path in ("/", "/gradio_api/info", "/config"):
        assert httpx.get(f"{served.url}{path}", headers={"Host": "rebind.attacker.example"}).status_code == 421
    assert httpx.get(f"{served.url}/gradio_api/info").status_code == 200  # its own host: served
    assert httpx.get(f"{served.url}/gradio_api/info", headers={"Host": "localhost"}).status_code == 200


def test_no_trick_passes_the_consent_gate_through_the_api(served: Served) -> None:
    from gradio_client import Client

    client = Client(served.url, verbose=False, download_files=False)
    if not served.servers:  # the real page without keys: even a good consent runs nothing, and says why
        client.predict("synthetic", "fal", api_name="/on_synthetic")
        gate, *_ = client.predict("fal", "synthetic", api_name="/on_run")
        assert 'data-gate="blocked"' in gate and "FAL_KEY" in gate
        assert served.client.journal.list() == []
        return
    shown = client.predict("\x1b[2J", "fal", api_name="/on_synthetic")
    folder = str(served.served)
    assert all(str(item["path"] if isinstance(item, dict) else item).startswith(folder) for item in shown[:2])
    assert str(served.client.settings.home) not in json.dumps(shown[:2])  # served paths name no server folder
    for consent in ("\x1b[2J", "\u200b\u200b\u200b", "\x1b[31m\x1b[0m"):
        gate, *_ = client.predict("fal", consent, api_name="/on_run")
        assert 'data-gate="blocked"' in gate
    assert all(server.requests == [] for server in served.servers.values())
    client.predict("synthetic", "fal", api_name="/on_consent")
    progress, output, *_ = client.predict("fal", "synthetic", api_name="/on_run")  # the control: a real run
    assert len(served.servers["fal"].jobs) == 1 and str(output["path"]).startswith(folder)
