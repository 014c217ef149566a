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

The pins themselves (revisions, hashes, sizes, licences and their provenance) are data in
:mod:`latentsync_routes.local.checkpoint_manifest`; they are re-exported here.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .checkpoint_manifest import VERSIONS, CheckpointFile, Licence, manifest
from .errors import LocalError

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
    "cache_root",
    "cached_file",
    "download_command",
    "discard_file",
    "fetch_file",
    "manifest",
    "resolve",
]

HOME_ENV = "LATENTSYNC_ROUTES_HOME"
#: The pseudo-version naming the SyncNet weights (:func:`.checkpoint_manifest.syncnet_file`) in messages.
SYNCNET = "syncnet"
# Files at or below this size are fully hashed on every resolve(); above it, resolve() relies on the size and
# on the content-addressed blob name, because hashing a 5 GB UNet on every run would cost seconds.
FULL_HASH_LIMIT = 256 * 1024 * 1024
_CHUNK = 1024 * 1024


# --------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------


def download_command(version: str) -> str:
    """The CLI command that fetches everything ``resolve(version)`` needs (``"syncnet"``: the SyncNet weights)."""
    if version == SYNCNET:
        return "latentsync-routes download --syncnet"
    return f"latentsync-routes download --version {version}"


class CheckpointError(LocalError):
    """Base of the checkpoint errors: something to download (or re-download) before the local route runs.

    The route reports it as a configuration error (exit 2): the fix is a download, not a retry."""


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
# Results
# --------------------------------------------------------------------------------------------------------


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

    class _Bridge(plain_tqdm):  # type: ignore[misc]  # tqdm ships no type information
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = True
            self._done = int(kwargs.get("initial") or 0)
            self._expected = kwargs.get("total")
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            self._done += int(n or 0)
            progress(DownloadProgress(spec.role, spec.filename, self._done, self._expected))
            done: bool | None = super().update(n)
            return done

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


# --------------------------------------------------------------------------------------------------------
# Single files (the SyncNet weights use these; their pin is kept by latentsync_routes.quality.weights)
# --------------------------------------------------------------------------------------------------------


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The folder this package's own cached files go under (``cache_dir``, ``$LATENTSYNC_ROUTES_HOME/models``,
    else the user cache directory)."""
    root = _root(cache_dir)
    if root is not None:
        return root
    import platformdirs

    return Path(platformdirs.user_cache_dir("latentsync-routes"))


def cached_file(spec: CheckpointFile, cache_dir: str | Path | None = None) -> Path | None:
    """Where ``spec`` is cached, or ``None``; never touches the network and verifies nothing."""
    return _cached(spec, cache_dir)


def fetch_file(
    spec: CheckpointFile,
    version: str,
    cache_dir: str | Path | None = None,
    progress: ProgressCallback | None = None,
    *,
    endpoint: str | None = None,
    http_client: httpx.Client | None = None,
) -> Path:
    """Download one file into the cache (as :func:`download` does) and return its path, unverified.

    ``version`` only names the download command in errors. The caller verifies the file.
    """
    if spec.source == "url":
        if _offline():
            raise CheckpointMissing(spec, version, "offline mode is on (HF_HUB_OFFLINE)")
        return _fetch_url(spec, cache_dir, progress, http_client)
    return _fetch_hf(spec, version, cache_dir, progress, endpoint)


def discard_file(path: Path) -> None:
    """Delete a cached file that failed verification (and its hub blob), so the next download refetches it."""
    _discard(path)
