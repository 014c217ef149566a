"""Checkpoint pins, the local cache, offline mode and verification.

Downloads run through the real ``hf_hub_download`` and ``httpx`` code against a loopback HTTP server that
speaks the small part of the Hub protocol a pinned-revision download uses. The manifest is swapped for one
with the same repos, revisions and file names but small contents, so nothing large is ever built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from huggingface_hub import constants as hf_constants

from latentsync_routes.local import checkpoints
from latentsync_routes.local.checkpoints import (
    CheckpointFile,
    CheckpointMissing,
    ChecksumMismatch,
    DownloadProgress,
    download,
    manifest,
    resolve,
)
from tests.conftest import goldens_path

REAL_MANIFEST = checkpoints.manifest
HEX40 = re.compile(r"^[0-9a-f]{40}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


# ---- the pins themselves ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.5", "1.6"])
def test_manifest_pins_everything(version: str) -> None:
    files = manifest(version)
    assert {f.role for f in files} == {"unet", "whisper", "vae_config", "vae_weights", "mask"}
    for spec in files:
        assert HEX40.match(spec.revision), spec
        assert spec.sha256 is not None and HEX64.match(spec.sha256), spec
        assert spec.size and spec.size > 0
        assert spec.revision in spec.url
        assert spec.licence.name and spec.licence.source_url.startswith("https://")
        assert spec.provenance
    by_role = {f.role: f for f in files}
    assert by_role["unet"].repo == by_role["whisper"].repo == f"ByteDance/LatentSync-{version}"
    assert by_role["unet"].licence.name == "openrail++" and not by_role["unet"].licence.verified
    assert by_role["vae_weights"].licence.name == "MIT"
    assert by_role["whisper"].sha256 == "65147644a518d12f04e32d6f3b26facc3f8dd46e5390956a9424a650c0ce22b9"
    assert by_role["mask"].url.startswith("https://raw.githubusercontent.com/bytedance/LatentSync/")


def test_pinned_revisions_for_1_6() -> None:
    by_role = {f.role: f for f in manifest("1.6")}
    assert by_role["unet"].revision == "c42c7e6c8e9c213626389fa7d9a3c444b8536353"
    assert by_role["unet"].size == 5_072_222_488


def test_mask_hash_equals_the_official_mask_copy() -> None:
    golden_mask = goldens_path("align", "mask.png").read_bytes()
    spec = {f.role: f for f in manifest("1.6")}["mask"]
    assert hashlib.sha256(golden_mask).hexdigest() == spec.sha256
    assert len(golden_mask) == spec.size


def test_unknown_version() -> None:
    with pytest.raises(ValueError, match="1.5"):
        manifest("2.0")


def test_checkpoints_module_does_not_import_torch() -> None:
    code = "import sys, latentsync_routes, latentsync_routes.local.checkpoints; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- a small fake world ----------------------------------------------------------------------------------


class FakeHub:
    """Serves ``/{repo}/resolve/{rev}/{file}`` like the Hub and ``/raw/...`` like a raw-file host."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, head_only: bool) -> None:
                hub.requests.append(f"{self.command} {self.path}")
                body = hub.files.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                match = re.match(r"^/[^/]+/[^/]+/resolve/([0-9a-f]{40})/", self.path)
                if match:
                    self.send_header("X-Repo-Commit", match.group(1))
                    self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head_only:
                    self.wfile.write(body)

            def do_HEAD(self) -> None:  # noqa: N802
                self._send(head_only=True)

            def do_GET(self) -> None:  # noqa: N802
                self._send(head_only=False)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _content(spec: CheckpointFile) -> bytes:
    return f"{spec.role}:{spec.filename}\n".encode() * (40 if spec.role == "unet" else 3)


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    server = FakeHub()
    yield server
    server.close()


@pytest.fixture
def world(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeHub:
    """Small stand-ins for every pinned file, served by ``hub``; the cache root is a temp dir."""

    def small_manifest(version: str) -> tuple[CheckpointFile, ...]:
        out = []
        for spec in REAL_MANIFEST(version):
            body = _content(spec)
            url = spec.url
            if spec.source == "url":
                url = f"{hub.url}/raw/{spec.revision}/{spec.filename}"
                hub.files.setdefault(f"/raw/{spec.revision}/{spec.filename}", body)
            else:
                hub.files.setdefault(f"/{spec.repo}/resolve/{spec.revision}/{spec.filename}", body)
            out.append(dataclasses.replace(spec, sha256=hashlib.sha256(body).hexdigest(), size=len(body), url=url))
        return tuple(out)

    monkeypatch.setattr(checkpoints, "manifest", small_manifest)
    monkeypatch.setenv("LATENTSYNC_ROUTES_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    small_manifest("1.5")  # register the 1.5 bodies as well
    return hub


def _go_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# ---- download, then resolve -------------------------------------------------------------------------------


def test_download_then_resolve(world: FakeHub, tmp_path: Path) -> None:
    events: list[DownloadProgress] = []
    got = download("1.6", progress=events.append, endpoint=world.url)
    root = tmp_path / "home" / "models"
    for spec in checkpoints.manifest("1.6"):
        path = got.paths[spec.role]
        assert path.read_bytes() == _content(spec)
        assert root in path.parents
    assert (root / "hub" / "models--ByteDance--LatentSync-1.6").is_dir()
    assert (got.vae_dir / "config.json").is_file()
    assert (got.vae_dir / "diffusion_pytorch_model.safetensors").is_file()
    assert got.mask.name == "mask.png" and got.unet.name == "latentsync_unet.pt"
    assert got.whisper.name == "tiny.pt"
    finished = {e.role for e in events if e.finished}
    assert finished == {"unet", "whisper", "vae_config", "vae_weights", "mask"}
    assert any(not e.finished and e.role == "unet" and e.done > 0 for e in events)
    assert got.licences()["unet"].name == "openrail++"

    world.requests.clear()
    again = resolve("1.6")
    assert again.paths == got.paths
    assert world.requests == []  # resolve() is local only
    download("1.6", endpoint=world.url)
    assert world.requests == []  # a complete cache is not refetched


def test_explicit_cache_dir_wins_over_home(world: FakeHub, tmp_path: Path) -> None:
    got = download("1.5", cache_dir=tmp_path / "explicit", endpoint=world.url)
    assert all((tmp_path / "explicit") in p.parents for p in got.paths.values())
    with pytest.raises(CheckpointMissing):
        resolve("1.5")  # the LATENTSYNC_ROUTES_HOME cache is still empty
    assert resolve("1.5", cache_dir=tmp_path / "explicit").paths == got.paths


def test_resolve_reads_a_hand_built_hub_cache(world: FakeHub, tmp_path: Path) -> None:
    # huggingface_hub's layout without symlinks (as on filesystems that lack them): plain snapshot files.
    root = tmp_path / "manual"
    for spec in checkpoints.manifest("1.6"):
        if spec.source == "hf":
            folder = root / "hub" / f"models--{spec.repo.replace('/', '--')}" / "snapshots" / spec.revision
        else:
            folder = root / "assets" / "github--bytedance--LatentSync" / spec.revision
        target = folder / spec.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(_content(spec))
    got = resolve("1.6", cache_dir=root)
    assert got.unet.read_bytes() == _content({f.role: f for f in checkpoints.manifest("1.6")}["unet"])
    assert world.requests == []


# ---- missing files and offline mode -------------------------------------------------------------------------


def test_missing_file_names_itself_and_the_command(world: FakeHub) -> None:
    with pytest.raises(CheckpointMissing) as info:
        resolve("1.5")
    message = str(info.value)
    assert info.value.spec.filename in message
    assert "latentsync-routes download --version 1.5" in message
    assert info.value.command == "latentsync-routes download --version 1.5"


def test_missing_unet_is_named(world: FakeHub) -> None:
    got = download("1.6", endpoint=world.url)
    got.unet.unlink()
    with pytest.raises(CheckpointMissing, match="latentsync_unet.pt") as info:
        resolve("1.6")
    assert "--version 1.6" in str(info.value)


def test_offline_works_from_a_complete_cache(world: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    first = download("1.6", endpoint=world.url)
    _go_offline(monkeypatch)
    world.requests.clear()
    assert resolve("1.6").paths == first.paths
    assert download("1.6", endpoint=world.url).paths == first.paths
    assert world.requests == []


def test_offline_with_missing_files_raises_missing(world: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    _go_offline(monkeypatch)
    with pytest.raises(CheckpointMissing, match="offline") as info:
        download("1.6", endpoint=world.url)
    assert info.value.spec.role == "mask"  # the plain-URL fetch honours offline mode too
    assert world.requests == []


def test_offline_hub_file_missing(world: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    got = download("1.6", endpoint=world.url)
    got.unet.unlink()
    _go_offline(monkeypatch)
    world.requests.clear()
    with pytest.raises(CheckpointMissing, match="latentsync_unet.pt"):
        download("1.6", endpoint=world.url)
    assert world.requests == []


# ---- checksums ------------------------------------------------------------------------------------------------


def test_download_rejects_and_discards_a_tampered_file(world: FakeHub) -> None:
    spec = {f.role: f for f in checkpoints.manifest("1.6")}["whisper"]
    key = f"/{spec.repo}/resolve/{spec.revision}/{spec.filename}"
    body = world.files[key]
    world.files[key] = bytes([body[0] ^ 1]) + body[1:]  # same size, different bytes
    with pytest.raises(ChecksumMismatch) as info:
        download("1.6", endpoint=world.url)
    assert info.value.expected == spec.sha256
    assert "latentsync-routes download --version 1.6" in str(info.value)
    assert not info.value.path.exists()  # a retry will fetch again
    world.files[key] = body
    assert download("1.6", endpoint=world.url).whisper.read_bytes() == body


def test_resolve_detects_corruption_in_the_cache(world: FakeHub) -> None:
    got = download("1.6", endpoint=world.url)
    data = got.paths["vae_weights"].read_bytes()
    real = got.paths["vae_weights"].resolve()
    real.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ChecksumMismatch, match="diffusion_pytorch_model.safetensors"):
        resolve("1.6")


def test_resolve_detects_a_wrong_size(world: FakeHub) -> None:
    got = download("1.6", endpoint=world.url)
    got.mask.write_bytes(b"short")
    with pytest.raises(ChecksumMismatch, match="bytes"):
        resolve("1.6")


def test_large_files_use_the_blob_name_unless_full_verify(world: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    got = download("1.6", endpoint=world.url)
    monkeypatch.setattr(checkpoints, "FULL_HASH_LIMIT", 0)  # treat every file as "large"
    real = got.unet.resolve()
    assert got.unet.is_symlink() and real.name == {f.role: f for f in checkpoints.manifest("1.6")}["unet"].sha256
    data = real.read_bytes()
    real.write_bytes(bytes([data[0] ^ 1]) + data[1:])
    resolve("1.6")  # fast path: size and content-addressed name still agree
    with pytest.raises(ChecksumMismatch, match="latentsync_unet.pt"):
        resolve("1.6", full_verify=True)
