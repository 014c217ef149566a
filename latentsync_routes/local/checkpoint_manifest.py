"""The pinned checkpoint files of each LatentSync version, as data: revisions, hashes, sizes, licences.

It is its own module because the pins are data that change when a release is added or re-checked, apart
from the code that finds, verifies and downloads the files (:mod:`.checkpoints`, which re-exports
everything public here).

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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["SYNCNET_QUOTED_SHA256", "VERSIONS", "CheckpointFile", "Licence", "manifest", "syncnet_file"]

VERSIONS = ("1.5", "1.6")


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


#: sha256 of ``syncnet_v2.model`` as one public project pins it for the Oxford VGG copy
#: (``robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model``, via joonson/syncnet_python). One
#: third-party source, for another host's copy: shown beside the hash we record, never enforced.
SYNCNET_QUOTED_SHA256 = "961e8696f888fce4f3f3a6c3d5b3267cf5b343100b238e79b2659bff2c605442"


def syncnet_file() -> CheckpointFile:
    """The official SyncNet weights the LatentSync evaluation loads (``checkpoints/auxiliary/syncnet_v2.model``).

    Where from: the official code fetches a missing ``auxiliary/syncnet_v2.model`` from the Hub repository
    ``ByteDance/LatentSync-1.5`` (``check_model_and_download``'s default), and the 1.5 release's setup
    script downloaded that whole repository, auxiliary models included. We pin the same revision as the
    1.5 UNet. No sha256 or size is pinned here: none could be checked against the file from where this
    was written, so :mod:`latentsync_routes.quality.weights` records the hash of the first download that
    loads as SyncNet and holds every later use to it.
    """
    ls = _LATENTSYNC["1.5"]
    repo, rev = str(ls["repo"]), str(ls["revision"])
    licence = Licence(
        "not stated by its publisher (hosting repository tagged openrail++)",
        "https://github.com/joonson/syncnet_python/blob/6efbb1c305c23f47a62b09cf4215a8ac45e97d49/LICENSE.md",
        verified=False,
        note="Chung & Zisserman's SyncNet weights, published by Oxford VGG for joonson/syncnet_python, whose "
        "LICENSE.md (MIT) covers its code, not the weights it downloads; LatentSync re-hosts the file in "
        "ByteDance/LatentSync-1.5, whose card tag is openrail++ (third-party quoted). Treated as research-only: "
        "fetched by the user, never bundled",
    )
    return _hub_file_unpinned("syncnet", repo, rev, "auxiliary/syncnet_v2.model", licence)


def _hub_file_unpinned(role: str, repo: str, revision: str, filename: str, licence: Licence) -> CheckpointFile:
    url = f"https://huggingface.co/{repo}/resolve/{revision}/{filename}"
    provenance = "revision third-party quoted; hash recorded on first verified download (trust on first use)"
    return CheckpointFile(role, "hf", repo, revision, filename, None, None, licence, provenance, url)
