"""The models, inputs and timers ``gpu_check.py`` shares between its parts (run ``gpu_check.py``, not this).

Full size (the real run): the released LatentSync UNet's architecture (1.27 B parameters), the
``sd-vae-ft-mse`` VAE architecture and Whisper tiny's encoder, built on the device with random weights (their
cost and memory do not depend on the values). ``--tiny``: the narrow test models of
``latentsync_routes.testing.tiny_local`` at 64 / 128 px, so the whole script runs on a CPU in seconds.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentsync_routes.local.audio import WhisperDims, WhisperFeatures
from latentsync_routes.local.unet import LatentSyncUNet, UNetConfig

VERSIONS = ("1.5", "1.6")
FPS = 25
CHUNK = 16
WHISPER_TINY = WhisperDims(n_mels=80, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6, n_audio_layer=4)


def _fill_zeroed(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """A fresh LatentSync UNet zeroes its in/out convs and motion-module outputs (its output would be 0): give
    those N(0, fan_in^-1/2), leaving torch's default initialisation elsewhere (sane activation sizes)."""
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim >= 2 and not param.any():
                param.normal_(0.0, param[0].numel() ** -0.5, generator=gen)
    return model


@dataclass
class Setup:
    """Where and at which sizes the check runs."""

    device: torch.device
    tiny: bool
    resolution: dict[str, int] = field(default_factory=dict)
    frame_hw: tuple[int, int] = (0, 0)
    steps: int = 20  # the official default; --tiny takes 4 (full passes at steps 0 and 3, two shallow between)
    goldens: Path | None = None

    @classmethod
    def make(cls, device: str, tiny: bool, goldens: Path | None) -> Setup:
        res = {"1.5": 64, "1.6": 128} if tiny else {"1.5": 256, "1.6": 512}
        return cls(torch.device(device), tiny, res, (96, 128) if tiny else (480, 640), 4 if tiny else 20, goldens)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.is_cuda:
            torch.cuda.synchronize(self.device)

    def unet(self) -> LatentSyncUNet:
        """fp32 on the device; the caller casts."""
        if self.tiny:  # imported here: tiny_local needs PyAV, which the GPU machine lacks
            from latentsync_routes.testing.tiny_local import tiny_unet

            return tiny_unet().to(self.device)
        with torch.device(self.device):
            model = LatentSyncUNet(UNetConfig())
        return _fill_zeroed(model, self.device).eval().requires_grad_(False)  # type: ignore[return-value]

    def vae(self) -> Any:
        if self.tiny:
            from latentsync_routes.testing.tiny_local import tiny_vae

            return tiny_vae().to(self.device)
        from diffusers.models.autoencoders.autoencoder_kl import AutoencoderKL

        torch.manual_seed(3)
        with torch.device(self.device):
            vae = AutoencoderKL(
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                norm_num_groups=32, sample_size=256,
            )  # fmt: skip
        return vae.eval().requires_grad_(False)

    def whisper(self) -> WhisperFeatures:
        if self.tiny:
            from latentsync_routes.testing.tiny_local import tiny_whisper

            return tiny_whisper().to(self.device)
        torch.manual_seed(13)
        return WhisperFeatures(WHISPER_TINY).eval().to(self.device)

    def mask(self, version: str) -> np.ndarray:
        """The official mouth mask (the goldens' byte copy) at the version's size, else the tiny models' own."""
        if self.goldens is not None and (self.goldens / "align" / "mask.png").is_file():
            from latentsync_routes.local.align import load_mask

            return load_mask(self.goldens / "align" / "mask.png", self.resolution[version])
        from latentsync_routes.testing.tiny_local import tiny_mask

        return tiny_mask(self.resolution[version])

    def audio_dim(self) -> int:
        return 64 if self.tiny else 384

    def clip(self, count: int, frame_hw: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``count`` frames (H, W, 3) uint8 of texture (``frame_hw``, default the speed runs' size), and the 3
        anchors of each (where a face would be)."""
        height, width = frame_hw or self.frame_hw
        gen = np.random.default_rng(5)
        base = gen.integers(60, 200, size=(height, width, 3), dtype=np.uint8)
        frames = np.stack([np.roll(base, k % 3, axis=1) for k in range(count)])
        anchors = np.array([[0.42 * width, 0.40 * height], [0.58 * width, 0.40 * height], [0.5 * width, 0.5 * height]])
        points = np.stack([np.round(anchors + [k % 2, 0]) for k in range(count)])
        return frames, points

    def voice(self, seconds: float) -> np.ndarray:
        t = np.arange(int(seconds * 16000)) / 16000
        return (0.3 * np.sin(2 * np.pi * 140 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def pick_dtypes(setup: Setup) -> list[str]:
    """fp16 is a CUDA precision (the route refuses it on a CPU, where it is emulated)."""
    return ["float32", "float16", "bfloat16"] if setup.is_cuda else ["float32", "bfloat16"]


def cast(model: Any, dtype: str) -> Any:
    import copy

    return copy.deepcopy(model).to(getattr(torch, dtype))


@contextmanager
def exact_fp32(setup: Setup) -> Iterator[None]:
    """No TF32 on CUDA while the float32 references are computed (cuDNN convolutions use it by default)."""
    if not setup.is_cuda:
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def errors(got: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """max and mean absolute error, and max relative error (max |diff| / max |ref|)."""
    diff = (got.detach().float().cpu() - ref.detach().float().cpu()).abs()
    scale = float(ref.detach().float().abs().max()) or 1.0
    return {
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "max_rel": float(diff.max()) / scale,
        "finite": bool(torch.isfinite(got).all()),
    }


class Budget:
    """A part's wall-clock budget: what is left, and whether a step of a given estimate still fits."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.monotonic()

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def fits(self, estimate: float) -> bool:
        return self.left() >= estimate


class PeakMemory:
    """Peak device memory over a block: CUDA's allocator peak, or on a CPU this process's resident set size
    sampled every 5 ms (above the level at the start)."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.peak = 0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * self._page

    def _sample(self, base: int) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss() - base)

    def measure(self, block: Callable[[], Any]) -> tuple[int, str]:
        if self.setup.is_cuda:
            self.setup.sync()
            torch.cuda.reset_peak_memory_stats(self.setup.device)
            block()
            self.setup.sync()
            return int(torch.cuda.max_memory_allocated(self.setup.device)), "cuda max_memory_allocated"
        base = self._rss()
        thread = threading.Thread(target=self._sample, args=(base,), daemon=True)
        thread.start()
        try:
            block()
        finally:
            self._stop.set()
            thread.join()
        return self.peak, "process RSS growth (sampled; no CUDA)"
