"""Every file the local LatentSync route needs: where it comes from, how it is checked, where it is cached.

Each file is pinned to an immutable revision (a Hugging Face commit or a GitHub commit) and, where the value
is known, a sha256 and a byte size. ``download`` fetches what is missing and hashes what it fetched;
``resolve`` never touches the network and fails with a :class:`CheckpointMissing` that names the command to
run. Licences are recorded as data next to each file, with their source and whether we checked them.

Cache layout. ``cache_dir`` (argument), else ``$LATENTSYNC_ROUTES_HOME/models``, is a root of our own:
Hugging Face files go to ``<root>/hub`` in huggingface_hub's cache layout and plain-URL files to
``<root>/assets``. With neither set, Hugging Face files share huggingface_hub's default cache (so a VAE that
another tool already downloaded is reused, and ``HF_HOME``/``HF_HUB_CACHE`` are honoured) and plain-URL files
go to this package's user cache directory, keeping foreign files out of the shared hub cache.

Provenance of the pins (as of this writing; nothing here was checked against the live Hub):

* GitHub ``bytedance/LatentSync`` commit ``a229c39…`` and the mask's sha256: **verified** against a snapshot of
  that repository and against the byte copy in the project's golden data.
* ``whisper/tiny.pt`` sha256: **verified** in the sense that openai-whisper's own download URL for "tiny"
  embeds this hash; that the LatentSync repositories carry the same bytes is **third-party** (public projects
  pinning these revisions quote the same value).
* Hugging Face revisions, UNet and VAE hashes and sizes: **third-party**, quoted identically by several
  independent public projects; the 1.6 UNet size also matches the LFS pointer quoted in our reference notes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from ..errors import ConfigurationError

__all__ = [
    "CheckpointDownloadFailed",
    "CheckpointError",
    "CheckpointFile",
    "CheckpointMissing",
    "CheckpointSet",
    "ChecksumMismatch",
    "DownloadProgress",
    "Licence",
    "VERSIONS",
    "download",
    "download_command",
    "manifest",
    "resolve",
]

VERSIONS = ("1.5", "1.6")
HOME_ENV = "LATENTSYNC_ROUTES_HOME"
# Files at or below this size are fully hashed on every resolve(); above it, resolve() relies on the size and
# on the content-addressed blob name, because hashing a 5 GB UNet on every run would cost seconds.
FULL_HASH_LIMIT = 256 * 1024 * 1024
_CHUNK = 1024 * 1024


# --------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------


def download_command(version: str) -> str:
    """The CLI command that fetches everything ``resolve(version)`` needs."""
    return f"latentsync-routes download --version {version}"


class CheckpointError(ConfigurationError):
    """Base of the checkpoint errors: something to download (or re-download) before the local route runs."""

    def __init__(self, message: str) -> None:
        super().__init__(message, route="local")


class CheckpointMissing(CheckpointError):
    """A required file is not in the local cache (or could not be fetched because the hub is offline)."""

    def __init__(self, spec: CheckpointFile, version: str, reason: str = "not in the local cache") -> None:
        self.spec = spec
        self.version = version
        self.command = download_command(version)
        super().__init__(
            f"LatentSync {version} checkpoint missing: {spec.filename} from {spec.repo}@{spec.revision[:12]} "
            f"({reason}). Fetch it with: {self.command}"
        )


class ChecksumMismatch(CheckpointError):
    """A cached or fetched file does not have the pinned sha256 or size."""

    def __init__(self, spec: CheckpointFile, path: Path, expected: str, actual: str, version: str) -> None:
        self.spec = spec
        self.path = path
        self.expected = expected
        self.actual = actual
        self.command = download_command(version)
        super().__init__(
            f"{spec.filename} at {path} does not match its pin: expected {expected}, found {actual}. "
            f"Delete it and run: {self.command}"
        )


class CheckpointDownloadFailed(CheckpointError):
    """The network fetch itself failed (server, permissions, connectivity)."""


# --------------------------------------------------------------------------------------------------------
# The manifest
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Licence:
    """A licence as its source states it. ``verified`` is False where we relay someone else's reading."""

    name: str
    source_url: str
    verified: bool
    note: str = ""


@dataclass(frozen=True)
class CheckpointFile:
    """One pinned file. ``source`` is ``"hf"`` (a Hub repo) or ``"url"`` (a fixed URL at a pinned commit)."""

    role: str
    source: Literal["hf", "url"]
    repo: str
    revision: str
    filename: str
    sha256: str | None
    size: int | None
    licence: Licence
    provenance: str
    url: str


_GITHUB_REPO = "bytedance/LatentSync"
_GITHUB_COMMIT = "a229c3948406bc2cf6eaf4873e662e70c6a04746"  # HEAD of 2025-06-20, the goldens' commit
_VAE_REPO = "stabilityai/sd-vae-ft-mse"
_VAE_REVISION = "31f26fdeee1355a5c34592e401dd41e45d25a493"  # third-party quoted

_LATENTSYNC: Mapping[str, Mapping[str, Any]] = {
    "1.5": {
        "repo": "ByteDance/LatentSync-1.5",
        "revision": "32a20d29aead0498e3e885e90dbbe8027da1b61b",  # third-party quoted
        "unet_sha256": "6440b49a7ccceff56cdc001f5f17605216337f5bbd66fa360139768926e23f51",
        "unet_size": 5_072_348_184,
    },
    "1.6": {
        "repo": "ByteDance/LatentSync-1.6",
        "revision": "c42c7e6c8e9c213626389fa7d9a3c444b8536353",  # third-party quoted
        "unet_sha256": "0a478e89eb660f82da4c35dbdde8a5adfb27f99d1b4e50edd03729e1e98316d3",
        "unet_size": 5_072_222_488,
    },
}

_WHISPER_TINY_SHA256 = "65147644a518d12f04e32d6f3b26facc3f8dd46e5390956a9424a650c0ce22b9"
_WHISPER_TINY_SIZE = 75_572_083

_MIT_WHISPER = Licence(
    "MIT",
    "https://github.com/openai/whisper/blob/c0d2f624c09dc18e709e37c2ad90c039a4eb72a2/README.md",
    verified=True,
    note="openai/whisper states its code and model weights are MIT; the LatentSync repositories redistribute "
    "the same file under their own card's tag",
)
_MIT_VAE = Licence(
    "MIT",
    f"https://huggingface.co/{_VAE_REPO}",
    verified=False,
    note="model-card metadata 'license: mit' as quoted by public projects; not fetched by this project",
)
_APACHE_MASK = Licence(
    "Apache-2.0",
    f"https://github.com/{_GITHUB_REPO}/blob/{_GITHUB_COMMIT}/LICENSE",
    verified=True,
    note="the repository LICENSE at the pinned commit",
)


def _hub_file(
    role: str, repo: str, revision: str, filename: str, sha256: str, size: int, licence: Licence, provenance: str
) -> CheckpointFile:
    url = f"https://huggingface.co/{repo}/resolve/{revision}/{filename}"
    return CheckpointFile(role, "hf", repo, revision, filename, sha256, size, licence, provenance, url)


def manifest(version: str) -> tuple[CheckpointFile, ...]:
    """The pinned files for LatentSync ``version`` ("1.5" or "1.6"), in download order (small first)."""
    if version not in _LATENTSYNC:
        raise ValueError(f"unknown LatentSync version {version!r}; expected one of {VERSIONS}")
    ls = _LATENTSYNC[version]
    repo, rev = str(ls["repo"]), str(ls["revision"])
    weights_licence = Licence(
        "openrail++",
        f"https://huggingface.co/{repo}",
        verified=False,
        note="model-card metadata tag as quoted by public projects; not fetched by this project",
    )
    third_party = "third-party: revision and hash quoted identically by several public projects"
    mask_path = "latentsync/utils/mask.png"
    mask = CheckpointFile(
        role="mask",
        source="url",
        repo=f"github:{_GITHUB_REPO}",
        revision=_GITHUB_COMMIT,
        filename=mask_path,
        sha256="aa233251b9ff5691a1565a4108f0910ab1e5e7ad79a7bb2b741ab4d92c81053c",
        size=1871,
        licence=_APACHE_MASK,
        provenance="verified: hash of the blob at the pinned commit and of the goldens' byte copy",
        url=f"https://raw.githubusercontent.com/{_GITHUB_REPO}/{_GITHUB_COMMIT}/{mask_path}",
    )
    return (
        mask,
        _hub_file(
            "vae_config", _VAE_REPO, _VAE_REVISION, "config.json",
            "92d3dfb746fca211a2c9e019e285f8597412211728dce3c5bcf4eda0f2d62e7e", 547, _MIT_VAE, third_party,
        ),
        _hub_file(
            "whisper", repo, rev, "whisper/tiny.pt", _WHISPER_TINY_SHA256, _WHISPER_TINY_SIZE, _MIT_WHISPER,
            "hash verified against openai-whisper's content-addressed 'tiny' URL; "
            "its presence at this revision is third-party",
        ),
        _hub_file(
            "vae_weights", _VAE_REPO, _VAE_REVISION, "diffusion_pytorch_model.safetensors",
            "a1d993488569e928462932c8c38a0760b874d166399b14414135bd9c42df5815", 334_643_276, _MIT_VAE,
            third_party + "; size matches our reference notes",
        ),
        _hub_file(
            "unet", repo, rev, "latentsync_unet.pt", str(ls["unet_sha256"]), int(ls["unet_size"]),
            weights_licence, third_party + " (size too)",
        ),
    )  # fmt: skip


@dataclass(frozen=True)
class CheckpointSet:
    """Local paths of every file of one LatentSync version, after verification."""

    version: str
    paths: Mapping[str, Path]
    files: tuple[CheckpointFile, ...] = field(repr=False)

    @property
    def unet(self) -> Path:
        return self.paths["unet"]

    @property
    def whisper(self) -> Path:
        return self.paths["whisper"]

    @property
    def vae_dir(self) -> Path:
        """Directory holding the VAE's ``config.json`` and safetensors weights (same Hub snapshot)."""
        return self.paths["vae_weights"].parent

    @property
    def mask(self) -> Path:
        return self.paths["mask"]

    def licences(self) -> dict[str, Licence]:
        return {f.role: f.licence for f in self.files}


@dataclass(frozen=True)
class DownloadProgress:
    """One progress report: bytes done for one file (``total`` may be unknown)."""

    role: str
    filename: str
    done: int
    total: int | None
    finished: bool = False


ProgressCallback = Callable[[DownloadProgress], None]


# --------------------------------------------------------------------------------------------------------
# Locations
# --------------------------------------------------------------------------------------------------------


def _root(cache_dir: str | Path | None) -> Path | None:
    if cache_dir is not None:
        return Path(cache_dir)
    home = os.environ.get(HOME_ENV)
    return Path(home) / "models" if home else None


def _hub_dir(cache_dir: str | Path | None) -> Path | None:
    root = _root(cache_dir)
    return root / "hub" if root is not None else None  # None: huggingface_hub's own default


def _asset_path(spec: CheckpointFile, cache_dir: str | Path | None) -> Path:
    root = _root(cache_dir)
    if root is None:
        import platformdirs

        base = Path(platformdirs.user_cache_dir("latentsync-routes")) / "assets"
    else:
        base = root / "assets"
    owner_repo = spec.repo.removeprefix("github:").replace("/", "--")
    return base / f"github--{owner_repo}" / spec.revision / spec.filename


def _offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(constants.HF_HUB_OFFLINE) or env in {"1", "ON", "YES", "TRUE"}


# --------------------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(spec: CheckpointFile, path: Path, version: str, full: bool) -> None:
    """Check size, then sha256: fully when cheap or asked, else by the content-addressed blob name."""
    if spec.size is not None:
        actual_size = path.stat().st_size
        if actual_size != spec.size:
            raise ChecksumMismatch(spec, path, f"{spec.size} bytes", f"{actual_size} bytes", version)
    if spec.sha256 is None:
        return
    if full or path.stat().st_size <= FULL_HASH_LIMIT:
        actual = _sha256(path)
    elif path.is_symlink():
        # The hub cache names LFS blobs by their sha256 (the server's etag); a cheap consistency check.
        actual = path.resolve().name
    else:
        return
    if actual != spec.sha256:
        raise ChecksumMismatch(spec, path, spec.sha256, actual, version)


def _cached(spec: CheckpointFile, cache_dir: str | Path | None) -> Path | None:
    if spec.source == "url":
        path = _asset_path(spec, cache_dir)
        return path if path.is_file() else None
    from huggingface_hub import try_to_load_from_cache

    hub = _hub_dir(cache_dir)
    found = try_to_load_from_cache(
        spec.repo, spec.filename, cache_dir=str(hub) if hub else None, revision=spec.revision
    )
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def resolve(version: str, cache_dir: str | Path | None = None, *, full_verify: bool = False) -> CheckpointSet:
    """Find every file of ``version`` in the local cache and verify it; no network access, ever.

    Raises :class:`CheckpointMissing` (naming the file and ``latentsync-routes download --version …``) or
    :class:`ChecksumMismatch`. ``full_verify`` hashes the large files too.
    """
    files = manifest(version)
    paths: dict[str, Path] = {}
    for spec in files:
        path = _cached(spec, cache_dir)
        if path is None:
            raise CheckpointMissing(spec, version)
        _verify(spec, path, version, full_verify)
        paths[spec.role] = path
    return CheckpointSet(version=version, paths=paths, files=files)


# --------------------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------------------


def _tqdm_bridge(spec: CheckpointFile, progress: ProgressCallback) -> type:
    """A silent tqdm class that forwards huggingface_hub's byte counts to ``progress``."""
    from tqdm.std import tqdm as plain_tqdm

    class _Bridge(plain_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = True
            self._done = int(kwargs.get("initial") or 0)
            self._expected = kwargs.get("total")
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            self._done += int(n or 0)
            progress(DownloadProgress(spec.role, spec.filename, self._done, self._expected))
            return super().update(n)

    return _Bridge


def _discard(path: Path) -> None:
    """Remove a bad cached file, and its hub blob when ``path`` is a snapshot symlink."""
    blob = path.resolve() if path.is_symlink() else None
    path.unlink(missing_ok=True)
    if blob is not None:
        blob.unlink(missing_ok=True)


def _fetch_hf(
    spec: CheckpointFile,
    version: str,
    cache_dir: str | Path | None,
    progress: ProgressCallback | None,
    endpoint: str | None,
) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    hub = _hub_dir(cache_dir)
    try:
        found = hf_hub_download(
            spec.repo,
            spec.filename,
            revision=spec.revision,
            cache_dir=str(hub) if hub else None,
            endpoint=endpoint,
            tqdm_class=_tqdm_bridge(spec, progress) if progress else None,
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        raise CheckpointMissing(spec, version, "the hub is unreachable or offline mode is on") from exc
    except (HfHubHTTPError, httpx.HTTPError, OSError) as exc:
        raise CheckpointDownloadFailed(f"could not fetch {spec.filename} from {spec.repo}: {exc}") from exc
    return Path(str(found))


def _fetch_url(
    spec: CheckpointFile,
    cache_dir: str | Path | None,
    progress: ProgressCallback | None,
    client: httpx.Client | None,
) -> Path:
    target = _asset_path(spec, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    own_client = client is None
    http = client or httpx.Client(follow_redirects=True, timeout=httpx.Timeout(30.0))
    fd, tmp_name = tempfile.mkstemp(prefix=".part-", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, http.stream("GET", spec.url) as response:
            response.raise_for_status()
            header = response.headers.get("Content-Length")
            total = int(header) if header and header.isdigit() else spec.size
            done = 0
            for block in response.iter_bytes(_CHUNK):
                out.write(block)
                done += len(block)
                if progress:
                    progress(DownloadProgress(spec.role, spec.filename, done, total))
        os.replace(tmp, target)
    except httpx.HTTPError as exc:
        raise CheckpointDownloadFailed(f"could not fetch {spec.filename} from {spec.url}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)
        if own_client:
            http.close()
    return target


def download(
    version: str,
    cache_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
    *,
    endpoint: str | None = None,
    http_client: httpx.Client | None = None,
    full_verify: bool = False,
) -> CheckpointSet:
    """Fetch whatever ``version`` lacks, hash every file fetched, and return the verified set.

    Files already cached are verified as in :func:`resolve` and not re-fetched, so with a complete cache this
    works offline. ``endpoint`` points Hugging Face downloads at a mirror (default: ``HF_ENDPOINT`` or the
    Hub); ``http_client`` carries the plain-URL downloads (default: a fresh ``httpx.Client``). A fetched file
    whose hash or size is wrong is deleted before :class:`ChecksumMismatch` is raised, so a retry refetches.
    """
    files = manifest(version)
    paths: dict[str, Path] = {}
    for spec in files:
        path = _cached(spec, cache_dir)
        if path is not None:
            _verify(spec, path, version, full_verify)
        else:
            if spec.source == "url":
                if _offline():
                    raise CheckpointMissing(spec, version, "offline mode is on (HF_HUB_OFFLINE)")
                path = _fetch_url(spec, cache_dir, progress, http_client)
            else:
                path = _fetch_hf(spec, version, cache_dir, progress, endpoint)
            try:
                _verify(spec, path, version, full=True)
            except ChecksumMismatch:
                _discard(path)
                raise
        if progress:
            size = path.stat().st_size
            progress(DownloadProgress(spec.role, spec.filename, size, size, finished=True))
        paths[spec.role] = path
    return CheckpointSet(version=version, paths=paths, files=files)
