"""``LatentSyncPipeline``: the local model as one object, loaded once and called per video.

Why an object: a caller who only wants lip-sync on their own machine should not assemble a UNet, a VAE, a
Whisper encoder, a mask and a face detector and pass twenty keywords to :func:`.pipeline.sync_video`
(diffusers' pipelines are the model here). It knows nothing of routes, prices or job records; the ``local``
route drives the same functions with its own model cache.

    from latentsync_routes.local.lipsync import LatentSyncPipeline

    pipe = LatentSyncPipeline.from_pretrained("1.5")              # pinned checkpoints, already downloaded
    pipe = LatentSyncPipeline.from_pretrained("path/to/folder")   # or a folder of your own (see below)
    stats = pipe("face.mp4", "voice.wav", "out.mp4", seed=1247)

Defaults are the official inference defaults (20 DDIM steps, guidance 1.5, seed 1247, the step cache at
interval 3), in the device's fastest sound dtype (:mod:`.precision`). :func:`.pipeline.sync_frames` keeps
its own exact defaults (no cache, the models' dtype) as the parity surface.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .allocator import keep_freed_memory as keep_freed_memory_
from .pipeline import LoopMode, MissingFacePolicy, Progress, StreamStats, sync_video
from .runtime import RESOLUTION, LoadedModels, compile_models, dtype_name_for, load_models, pick_device

__all__ = ["DEFAULT_SEED", "FOLDER_LAYOUT", "LatentSyncPipeline"]

#: The official scripts' default seed.
DEFAULT_SEED = 1247
#: What ``from_pretrained(folder)`` reads: the official ``checkpoints/`` files plus the VAE and the mask.
FOLDER_LAYOUT = {
    "unet": "latentsync_unet.pt",
    "whisper": "whisper/tiny.pt",
    "vae_dir": "vae",  # stabilityai/sd-vae-ft-mse: config.json + diffusion_pytorch_model.safetensors
    "mask": "mask.png",  # latentsync/utils/mask.png of the official repository
}


class LatentSyncPipeline:
    """LatentSync 1.5/1.6 on this machine: ``pipe(video, audio, output)`` writes a lip-synced mp4."""

    def __init__(self, models: LoadedModels, *, detector: Callable[[np.ndarray], np.ndarray | None] | None = None):
        self.models = models
        self._detector = detector
        self._lock = models.lock  # shared with the route's jobs when the set comes from its cache

    @classmethod
    def from_pretrained(
        cls,
        version_or_folder: str | Path = "1.5",
        *,
        device: str | None = None,
        dtype: str | None = None,
        cache_dir: str | Path | None = None,
        resolution: int | None = None,
        compile: bool = False,
        keep_freed_memory: bool = True,
    ) -> LatentSyncPipeline:
        """Load ``"1.5"`` / ``"1.6"`` from the pinned, verified checkpoints (offline; a missing file raises
        :class:`~latentsync_routes.local.checkpoints.CheckpointMissing` naming the download command), or a
        folder laid out as :data:`FOLDER_LAYOUT` (``resolution`` 256 unless given: 512 for 1.6 weights).

        ``device`` defaults to CUDA, then MPS, then the CPU; ``dtype`` to the device's (:mod:`.precision`);
        ``compile=True`` compiles the UNet's blocks with ``torch.compile`` (a one-time cost on the first call).
        On a CPU, ``keep_freed_memory`` tunes glibc's malloc for the process (:mod:`.allocator`: 15-20 % less
        CPU time, the peak heap kept after a job).
        """
        target = pick_device(device)
        if keep_freed_memory and target.split(":", 1)[0] == "cpu":
            keep_freed_memory_()
        dtype_name = dtype_name_for(target, dtype)
        if str(version_or_folder) in RESOLUTION:
            models = load_models(str(version_or_folder), target, cache_dir, dtype_name)
        else:
            models = _load_folder(Path(version_or_folder), target, dtype_name, resolution or 256)
        if compile:
            compile_models(models)
        return cls(models)

    @property
    def device(self) -> str:
        return self.models.device

    @property
    def dtype(self) -> str:
        return self.models.dtype

    @property
    def resolution(self) -> int:
        return self.models.resolution

    def __call__(
        self,
        video: str | Path,
        audio: str | Path,
        output: str | Path,
        *,
        num_inference_steps: int = 20,
        guidance_scale: float = 1.5,
        seed: int | None = DEFAULT_SEED,
        deepcache: bool = True,
        loop_mode: LoopMode = "pingpong",
        on_missing_face: MissingFacePolicy = "error",
        detector: Callable[[np.ndarray], np.ndarray | None] | None = None,
        progress: Progress | None = None,
        should_stop: Callable[[], None] | None = None,
    ) -> StreamStats:
        """Lip-sync ``video`` to ``audio`` and write an H.264 mp4 at ``output`` (see :func:`.pipeline.sync_video`).

        ``detector`` finds a face's three anchors in an RGB frame; by default MediaPipe (the ``faces`` extra).
        ``seed=None`` draws from torch's global generator.
        """
        import torch

        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        find = detector or self._detector or self._default_detector()
        models = self.models
        return sync_video(
            video, audio, output, unet=models.unet, vae=models.vae, whisper=models.whisper, mask=models.mask,
            detector=find, resolution=models.resolution, num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale, generator=generator, loop_mode=loop_mode, on_missing_face=on_missing_face,
            deepcache=deepcache, progress=progress, exclusive=self._lock, should_stop=should_stop,
        )  # fmt: skip

    def _default_detector(self) -> Callable[[np.ndarray], np.ndarray | None]:
        from .faces import MediaPipeDetector

        self._detector = MediaPipeDetector()
        return self._detector

    def __repr__(self) -> str:
        return f"LatentSyncPipeline({self.models.version}, device={self.device!r}, dtype={self.dtype!r})"


def _load_folder(folder: Path, device: str, dtype_name: str, resolution: int) -> LoadedModels:
    """A model set from a folder of the official files (:data:`FOLDER_LAYOUT`); nothing is fetched."""
    import torch

    from .align import load_mask
    from .audio import WhisperFeatures
    from .checkpoints import CheckpointError
    from .diffusion import load_vae
    from .precision import vae_dtype
    from .runtime import fit_vae_to_device
    from .unet import UNetConfig, load_unet_checkpoint

    paths = {role: folder / name for role, name in FOLDER_LAYOUT.items()}
    missing = [str(path) for path in paths.values() if not path.exists()]
    if missing:
        raise CheckpointError(f"{folder} is not a LatentSync folder: missing {', '.join(missing)}")
    target = torch.device(device)
    unet = load_unet_checkpoint(paths["unet"], UNetConfig(), device=target, dtype=getattr(torch, dtype_name))
    vae_type = getattr(torch, vae_dtype(device, dtype_name))
    vae = fit_vae_to_device(load_vae(paths["vae_dir"], dtype=vae_type, device=target), target.type)
    whisper = WhisperFeatures.from_checkpoint(paths["whisper"]).to(target)
    version = "1.6" if resolution == 512 else "1.5"
    return LoadedModels(
        unet=unet, vae=vae, whisper=whisper, mask=load_mask(paths["mask"], resolution), version=version,
        device=device, dtype=dtype_name, model_version=f"LatentSync weights from {folder}", weights_licence=None,
        files={role: str(path) for role, path in paths.items()},
    )  # fmt: skip
