"""Which device, LatentSync version and dtype the local route uses, and the process-wide model cache.

Why a cache: the official scripts load about 5.5 GB of weights for every video; an SDK serving many jobs
should pay that once. Models are loaded on first use, kept per (version, device, dtype) for the life of the
process, and shared by concurrent jobs; each entry carries a lock that jobs hold around their model work, so
two jobs never stack their activations on one GPU.

Why these choices:

* **Device**: ``local_device`` when set, else CUDA, else Apple MPS, else the CPU. A CPU run is allowed but
  warned about, with an estimate of its duration (it is hundreds of times slower).
* **Version** ``auto``: LatentSync 1.6 (512 px) needs about 18 GB of VRAM and 1.5 (256 px) about 8 GB, per
  the official README; ``auto`` picks 1.6 when at least 18 GB is free, else 1.5. A version whose models are
  already loaded on the device is kept, because the memory they hold would otherwise make the next check
  pick the other version and load a second set. Without CUDA, ``auto`` is 1.5: 1.6 costs about 4x more.
* **dtype**: per device, see :mod:`.precision` (fp16 on CUDA; on a CPU, bf16 or fp32 as a measured probe
  finds faster there; fp32 elsewhere or on request). The cache keys on it, so an fp32 job and a bf16 job
  never share weights.

Nothing here imports torch at module import time.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CACHE",
    "RESOLUTION",
    "VRAM_MIN_GB",
    "Choice",
    "LoadedModels",
    "ModelCache",
    "choose",
    "choose_version",
    "compile_models",
    "cpu_seconds_per_output_second",
    "dtype_name_for",
    "free_vram_gb",
    "get_models",
    "load_models",
    "pick_device",
    "register_models",
]

log = logging.getLogger(__name__)

VERSIONS = ("1.5", "1.6")
#: Minimum free VRAM (GB, 1e9 bytes) per version, from the official README.
VRAM_MIN_GB: dict[str, float] = {"1.5": 8.0, "1.6": 18.0}
#: Face crop resolution per version; the networks are otherwise identical.
RESOLUTION: dict[str, int] = {"1.5": 256, "1.6": 512}


# --------------------------------------------------------------------------------------------- the choice


def _torch_installed() -> bool:
    return importlib.util.find_spec("torch") is not None


def pick_device(requested: str | None) -> str:
    """``requested`` as given, else ``cuda``, else ``mps``, else ``cpu`` (``cpu`` when torch is absent)."""
    if requested:
        return requested
    if not _torch_installed():
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def device_kind(device: str) -> str:
    return device.split(":", 1)[0]


def free_vram_gb(device: str) -> float | None:
    """Free memory of a CUDA device in GB (1e9 bytes); None for other devices."""
    if device_kind(device) != "cuda" or not _torch_installed():
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return free / 1e9


def dtype_name_for(device: str, requested: str | None = None, version: str = "1.5") -> str:
    """The dtype name a job on ``device`` runs in: ``requested`` if given, else the device's default (on the
    CPU, the measured probe's decision at ``version``'s latent size)."""
    from .precision import resolve_dtype

    return resolve_dtype(requested, device, RESOLUTION.get(version, RESOLUTION["1.5"]) // 8)


def choose_version(
    requested: str, device: str, free_gb: float | None, loaded: tuple[str, ...] = ()
) -> tuple[str, str, list[str]]:
    """(version, why, warnings) for a requested version (``auto``, ``1.5`` or ``1.6``) on ``device``."""
    warnings: list[str] = []
    kind = device_kind(device)
    if requested in VERSIONS:
        reason = f"LatentSync {requested} was asked for (local_version={requested})"
        need = VRAM_MIN_GB[requested]
        if free_gb is not None and free_gb < need:
            warnings.append(
                f"only {free_gb:.1f} GB of VRAM is free and LatentSync {requested} needs about {need:g} GB; "
                "the run may fail out of memory"
            )
        return requested, reason, warnings
    if requested != "auto":
        raise ValueError(f"local_version must be 'auto', '1.5' or '1.6', got {requested!r}")
    if loaded:
        version = "1.6" if "1.6" in loaded else loaded[0]
        return version, f"LatentSync {version} is already loaded on {device} in this process", warnings
    if kind != "cuda" or free_gb is None:
        return "1.5", f"no CUDA device: 1.5 (256 px) is about 4x cheaper than 1.6 on {kind}", warnings
    if free_gb >= VRAM_MIN_GB["1.6"]:
        return "1.6", f"{free_gb:.1f} GB of VRAM free >= {VRAM_MIN_GB['1.6']:g} GB needed by 1.6", warnings
    if free_gb >= VRAM_MIN_GB["1.5"]:
        why = f"{free_gb:.1f} GB of VRAM free: below 1.6's {VRAM_MIN_GB['1.6']:g} GB, enough for 1.5's 8 GB"
        return "1.5", why, warnings
    warnings.append(
        f"only {free_gb:.1f} GB of VRAM is free, below the {VRAM_MIN_GB['1.5']:g} GB LatentSync 1.5 needs; "
        "the run may fail out of memory (set local_device='cpu' to run slowly on the CPU instead)"
    )
    return "1.5", f"{free_gb:.1f} GB of VRAM free: too little for 1.6, so the smaller 1.5", warnings


@dataclass(frozen=True)
class Choice:
    """What the local route will run on, and why."""

    device: str
    version: str
    dtype: str
    reason: str
    free_vram_gb: float | None
    warnings: tuple[str, ...] = ()

    @property
    def resolution(self) -> int:
        return RESOLUTION[self.version]

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "version": self.version,
            "resolution": self.resolution,
            "dtype": self.dtype,
            "reason": self.reason,
            "free_vram_gb": None if self.free_vram_gb is None else round(self.free_vram_gb, 2),
            "min_vram_gb": dict(VRAM_MIN_GB),
            "warnings": list(self.warnings),
        }


def choose(
    requested_version: str,
    requested_device: str | None,
    cache: ModelCache | None = None,
    requested_dtype: str | None = None,
) -> Choice:
    """Pick device, version and dtype for the settings (see the module docstring for the rules)."""
    device = pick_device(requested_device)
    dtype = dtype_name_for(device, requested_dtype, requested_version)
    loaded = (cache or CACHE).loaded_versions(device, dtype)
    free = free_vram_gb(device)
    version, reason, warnings = choose_version(requested_version, device, free, loaded)
    if device_kind(device) == "cpu":
        from .speed import wall_seconds_per_output_second

        per_second = wall_seconds_per_output_second(device, dtype, version, deepcache=True)
        warnings.append(
            f"running on the CPU: expect about {per_second / 60:.0f} min of wall time per second of output video "
            f"for LatentSync {version} in {dtype} with the step cache; a CUDA GPU with >= 8 GB is about a "
            "hundred times faster"
        )
    return Choice(device, version, dtype, reason, free, tuple(warnings))


def cpu_seconds_per_output_second(version: str, dtype: str | None = None) -> float:
    """Expected wall seconds per second of output on this machine's CPU (default dtype, step cache on)."""
    from .speed import wall_seconds_per_output_second

    return wall_seconds_per_output_second("cpu", dtype_name_for("cpu", dtype, version), version, deepcache=True)


# --------------------------------------------------------------------------------------------- the cache


@dataclass
class LoadedModels:
    """One loaded model set, ready for :func:`~latentsync_routes.local.pipeline.sync_video`.

    ``model_version`` and ``weights_licence`` are what job records show; ``lock`` is held by a job around
    its model work (one chunk at a time).
    """

    unet: Any
    vae: Any
    whisper: Any
    mask: np.ndarray
    version: str
    device: str
    dtype: str
    model_version: str
    weights_licence: str | None
    files: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    compiled: bool = False

    @property
    def resolution(self) -> int:
        return int(self.mask.shape[0])

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.version, self.device, self.dtype)


class ModelCache:
    """Thread-safe (version, device, dtype) -> :class:`LoadedModels`; each set is loaded at most once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str], LoadedModels] = {}
        self._loading: dict[tuple[str, str, str], threading.Lock] = {}

    def get(self, version: str, device: str, dtype: str, loader: Callable[[], LoadedModels]) -> LoadedModels:
        key = (version, device, dtype)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                return found
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one thread loads; the others wait for it instead of loading a second copy
            with self._lock:
                found = self._entries.get(key)
            if found is not None:
                return found
            models = loader()
            with self._lock:
                self._entries[key] = models
                self._loading.pop(key, None)
            return models

    def put(self, models: LoadedModels) -> None:
        with self._lock:
            self._entries[models.key] = models

    def loaded_versions(self, device: str, dtype: str) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(v for (v, d, t) in self._entries if d == device and t == dtype))

    def clear(self) -> None:
        """Drop every model set (their memory is freed once no job still uses them)."""
        with self._lock:
            self._entries.clear()


#: The process-wide cache the local route uses.
CACHE = ModelCache()


def register_models(models: LoadedModels, cache: ModelCache | None = None) -> None:
    """Put an already-built model set into the cache, e.g. tiny random models in tests or weights an
    application loaded itself; jobs on that version and device then use it without reading checkpoints."""
    (cache or CACHE).put(models)


# --------------------------------------------------------------------------------------------- loading


def fit_vae_to_device(vae: Any, device_type: str) -> Any:
    """On a GPU, decode and encode a chunk's frames one at a time (diffusers' VAE slicing).

    The VAE is per-frame (2-D), so slicing changes no result beyond float rounding (~1e-5), while the
    activations of a 16-frame 512 px decode (several GB at once) are what push 8-16 GB cards out of memory
    (reference §7: "the 2 GiB VAE allocations OOM"). On the CPU there is no such limit, and batching is faster.
    """
    if device_type == "cuda":
        vae.enable_slicing()
    return vae


def load_models(
    version: str, device: str, cache_dir: str | Path | None = None, dtype: str | None = None
) -> LoadedModels:
    """Resolve the pinned checkpoints of ``version`` (offline; a missing file raises
    :class:`~latentsync_routes.local.checkpoints.CheckpointMissing` naming the download command) and load
    them onto ``device`` in ``dtype`` (default: the device's, see :mod:`.precision`); the VAE too."""
    import torch

    from .align import load_mask
    from .audio import WhisperFeatures
    from .checkpoints import resolve
    from .diffusion import load_vae
    from .precision import vae_dtype
    from .unet import UNetConfig, load_unet_checkpoint

    ckpt = resolve(version, cache_dir)
    dtype_name = dtype_name_for(device, dtype, version)
    torch_dtype: torch.dtype = getattr(torch, dtype_name)
    vae_torch_dtype: torch.dtype = getattr(torch, vae_dtype(device, dtype_name))
    target = torch.device(device)
    log.info("loading LatentSync %s onto %s (%s)", version, device, dtype_name)
    unet = load_unet_checkpoint(ckpt.unet, UNetConfig(), device=target, dtype=torch_dtype)
    vae = fit_vae_to_device(load_vae(ckpt.vae_dir, dtype=vae_torch_dtype, device=target), target.type)
    # Whisper tiny is small and runs once per job, so it stays fp32 everywhere (the official casts it to fp16).
    whisper = WhisperFeatures.from_checkpoint(ckpt.whisper).to(target)
    mask = load_mask(ckpt.mask, RESOLUTION[version])
    by_role = {f.role: f for f in ckpt.files}
    unet_file = by_role["unet"]
    vae_file = by_role["vae_weights"]
    model_version = (
        f"LatentSync {version}: {unet_file.repo}@{unet_file.revision} {unet_file.filename} "
        f"sha256:{unet_file.sha256}; VAE {vae_file.repo}@{vae_file.revision[:12]}; whisper tiny "
        f"sha256:{by_role['whisper'].sha256}"
    )
    licences = ckpt.licences()
    weights_licence = (
        f"{licences['unet'].name} (LatentSync UNet, {licences['unet'].source_url}); "
        f"{licences['vae_weights'].name} (VAE); {licences['whisper'].name} (Whisper)"
    )
    files = {role: str(path) for role, path in ckpt.paths.items()}
    return LoadedModels(
        unet=unet, vae=vae, whisper=whisper, mask=mask, version=version, device=device, dtype=dtype_name,
        model_version=model_version, weights_licence=weights_licence, files=files,
    )  # fmt: skip


def get_models(choice: Choice, cache_dir: str | Path | None = None, cache: ModelCache | None = None) -> LoadedModels:
    """The cached model set for ``choice``, loading it on first use."""
    store = cache or CACHE
    return store.get(
        choice.version,
        choice.device,
        choice.dtype,
        lambda: load_models(choice.version, choice.device, cache_dir, choice.dtype),
    )


def compile_models(models: LoadedModels) -> LoadedModels:
    """Compile the UNet of a model set with ``torch.compile`` (once; later calls return at once).

    Regional compilation: each ResNet, attention and motion module is compiled on its own rather than the
    whole UNet, so the graphs are small and shared by equal blocks (less one-time cost), and the step cache's
    feature hook on the last decoder ResNet stays outside any graph (that module is left eager). The
    one-time cost is paid on the first chunk; docs/local.md gives the measured figure.
    """
    with models.lock:
        if not models.compiled:
            from .compiling import compile_unet_regions

            compile_unet_regions(models.unet)
            models.compiled = True
    return models
