"""The official SyncNet weights: fetched on request, pinned on first verified download, loaded strictly.

Why trust on first use: no sha256 of the re-hosted ``syncnet_v2.model`` could be checked against the file
where this package was written (one public project quotes a hash for the Oxford copy:
:data:`~latentsync_routes.local.checkpoint_manifest.SYNCNET_QUOTED_SHA256`). So the first download is
accepted only when it loads as SyncNet with every key of the right shape, and its sha256 is then recorded
beside the cache (``<cache root>/pins/``). Every later load, and every later download, must match that
record: a file swapped or corrupted after the first download is refused. The report says whether the
recorded hash equals the quoted one.

Nothing here downloads at scoring time: :func:`resolve_syncnet` reads the cache or a path the user names,
and only ``latentsync-routes download --syncnet`` (:func:`download_syncnet`) touches the network.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..local.checkpoint_manifest import SYNCNET_QUOTED_SHA256, CheckpointFile, syncnet_file
from ..local.checkpoints import (
    SYNCNET,
    ChecksumMismatch,
    ProgressCallback,
    cache_root,
    cached_file,
    discard_file,
    fetch_file,
)
from .errors import SyncNetWeightsError

if TYPE_CHECKING:
    from .syncnet import SyncNet

__all__ = ["SyncNetWeights", "download_syncnet", "load_state", "load_syncnet", "resolve_syncnet"]

_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class SyncNetWeights:
    """A verified weights file: where it is, its sha256, and how that hash is vouched for."""

    path: Path
    sha256: str
    pin: str  #: "recorded now" | "matches the recorded pin" | "user-supplied (not pinned)"
    matches_quoted: bool  #: equals the one third-party quoted hash of the Oxford copy

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "pin": self.pin,
            "matches_quoted": self.matches_quoted,
            "quoted_sha256": SYNCNET_QUOTED_SHA256,
            "licence": syncnet_file().licence.name,
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _pin_path(spec: CheckpointFile, cache_dir: str | Path | None) -> Path:
    name = f"{spec.repo.replace('/', '--')}--{spec.revision[:12]}--{spec.filename.replace('/', '--')}.json"
    return cache_root(cache_dir) / "pins" / name


def _recorded(spec: CheckpointFile, cache_dir: str | Path | None) -> str | None:
    path = _pin_path(spec, cache_dir)
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("sha256")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError) as exc:
        raise SyncNetWeightsError(
            f"the recorded pin {path} cannot be read ({exc}); delete it and download again"
        ) from exc
    return str(value) if value else None


def load_state(path: Path) -> dict[str, Any]:
    """The state dict in ``path`` (``torch.load`` with ``weights_only=True``: no code runs from the file)."""
    import torch

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise SyncNetWeightsError(f"no SyncNet weights at {path}") from exc
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign file: any unpickling error means the same
        raise SyncNetWeightsError(f"{path} is not a readable torch state dict: {type(exc).__name__}: {exc}") from exc
    if not isinstance(state, dict):
        raise SyncNetWeightsError(f"{path} holds a {type(state).__name__}, not a state dict")
    return state


def load_syncnet(path: str | Path, *, device: str = "cpu") -> SyncNet:
    """A :class:`SyncNet` from a weights file, every key checked."""
    from .syncnet import SyncNet

    return SyncNet.from_state_dict(load_state(Path(path)), device=device)


def resolve_syncnet(path: str | Path | None = None, *, cache_dir: str | Path | None = None) -> SyncNetWeights:
    """The weights to score with: ``path`` if given (the user vouches for it), else the pinned cached copy.

    Never touches the network. Raises :class:`SyncNetWeightsError` naming ``latentsync-routes download
    --syncnet`` when nothing is cached, or when the cached file no longer matches its recorded hash.
    """
    if path is not None:
        chosen = Path(path).expanduser()
        if not chosen.is_file():
            raise SyncNetWeightsError(f"no SyncNet weights file at {chosen}")
        digest = _sha256(chosen)
        return SyncNetWeights(chosen, digest, "user-supplied (not pinned)", digest == SYNCNET_QUOTED_SHA256)
    spec = syncnet_file()
    found = cached_file(spec, cache_dir)
    recorded = _recorded(spec, cache_dir)
    if found is None or recorded is None:
        raise SyncNetWeightsError(
            "the SyncNet weights (syncnet_v2.model) are not downloaded; fetch them with: latentsync-routes download "
            "--syncnet (or pass --syncnet-weights PATH)"
        )
    digest = _sha256(found)
    if digest != recorded:
        raise SyncNetWeightsError(
            f"{found} no longer matches the sha256 recorded at its first download "
            f"({recorded}, found {digest}); delete it and run: latentsync-routes download --syncnet"
        )
    return SyncNetWeights(found, digest, "matches the recorded pin", digest == SYNCNET_QUOTED_SHA256)


def download_syncnet(
    cache_dir: str | Path | None = None, progress: ProgressCallback | None = None, *, endpoint: str | None = None
) -> SyncNetWeights:
    """Fetch ``syncnet_v2.model`` at its pinned revision unless cached, verify it, and pin or check its hash.

    Verified means: it loads as SyncNet with every key (:meth:`SyncNet.from_state_dict`) and, when a hash
    was recorded before, it has that hash. A fetched file failing either is deleted before the error.
    """
    spec = syncnet_file()
    found = cached_file(spec, cache_dir)
    fetched = found is None
    path = found if found is not None else fetch_file(spec, SYNCNET, cache_dir, progress, endpoint=endpoint)
    digest = _sha256(path)
    recorded = _recorded(spec, cache_dir)
    try:
        if recorded is not None and digest != recorded:
            raise ChecksumMismatch(spec, path, recorded, digest, SYNCNET)
        if recorded is None:
            load_syncnet(path)  # the first-use check: the file is SyncNet, key by key
    except (ChecksumMismatch, SyncNetWeightsError):
        if fetched:
            discard_file(path)
        raise
    if recorded is None:
        pin = _pin_path(spec, cache_dir)
        pin.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "sha256": digest,
            "size": path.stat().st_size,
            "repo": spec.repo,
            "revision": spec.revision,
            "filename": spec.filename,
            "quoted_sha256": SYNCNET_QUOTED_SHA256,
        }
        pin.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    state = "recorded now" if recorded is None else "matches the recorded pin"
    return SyncNetWeights(path, digest, state, digest == SYNCNET_QUOTED_SHA256)
