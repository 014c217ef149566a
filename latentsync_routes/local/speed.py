"""How long a local job takes, per device kind, dtype, version and step cache: the estimate's speed figures.

Why here: the speed of the model is a fact of this implementation, measured with its own benchmarks
(``benchmarks/bench_local_vs_official.py``, ``benchmarks/bench_unet.py``); the route turns it into an
estimate and a price. Each figure says how it was obtained, and an estimate quotes that.

CPU figures are **CPU seconds** (user + system, all threads) per 16-frame chunk at 256 px, measured on an
AVX512-BF16 CPU with 2 threads; the expected wall time divides them by the threads torch uses, which holds
on an idle machine with that many cores (on a busy one it is longer: the estimate's high end is 2x).
GPU figures are wall seconds per output second from public reports (no GPU was lent to this project's
measurements; docs/performance.md), scaled by the work the step cache leaves.
Nothing here imports torch at module import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = [
    "CACHE_WORK_FRACTION",
    "CHUNK_OUTPUT_SECONDS",
    "MEASURED_ON",
    "SpeedFigure",
    "speed_figure",
    "vram_gb",
    "wall_seconds_per_output_second",
]

#: A chunk is 16 output frames at 25 fps.
CHUNK_OUTPUT_SECONDS = 16 / 25
#: Minimum free VRAM per version (GB), from the official README; used only where there is a GPU.
_VRAM_GB = {"1.5": 8.0, "1.6": 18.0}

MEASURED_ON = "2026-12-02"
_MEASURED = (
    "measured here (benchmarks/bench_local_vs_official.py --what parts, 256 px, 2 threads): a chunk composed of "
    "its measured VAE work, full UNet passes and shallow (cached) passes"
)
#: Measured CPU seconds of one chunk's parts at 256 px on the measurement CPU (AVX512-BF16, no AMX; medians
#: in docs/performance.md): VAE (encode masked + full faces, decode; float32 on the CPU), one full CFG UNet
#: pass and one shallow pass, per UNet dtype.
_CPU_PARTS: dict[str, tuple[float, float, float]] = {
    # UNet dtype -> (VAE, full pass, shallow pass) CPU seconds
    # medians of three processes with freed memory kept (local/allocator.py, the CPU default), each interleaved
    # with the official code's own chunk parts (docs/performance.md)
    "float32": (169.5, 79.9, 5.52),
    # UNet parts: median of two processes measured before freed memory was kept (so an upper bound); the VAE
    # stays float32 on a CPU
    "bfloat16": (222.8, 135.9, 9.10),
}
_STEPS, _FULL_WITH_CACHE = 20, 7  # official schedule: full passes at steps 0, 3, ..., 18


def _cpu_chunk_seconds(dtype: str, deepcache: bool) -> float:
    vae, full, shallow = _CPU_PARTS[dtype if dtype == "bfloat16" else "float32"]
    if not deepcache:
        return vae + _STEPS * full
    return vae + _FULL_WITH_CACHE * full + (_STEPS - _FULL_WITH_CACHE) * shallow


#: Share of a chunk's work left with the step cache at the official schedule (20 steps, interval 3), from the
#: measured float32 parts: 7 full UNet passes and 13 shallow ones, and the VAE, against 20 full passes.
CACHE_WORK_FRACTION = _cpu_chunk_seconds("float32", True) / _cpu_chunk_seconds("float32", False)


#: 512 px has 4x the latent pixels of 256 px; the CPU figure for 1.6 is scaled, not measured.
_CPU_VERSION_FACTOR = {"1.5": 1.0, "1.6": 4.0}

_PUBLIC = (
    "public reports without the step cache (A100 fp16, 1.5: 28 s of model time for 10 s of video; RTX 4090, "
    "1.6: about 2 min for 18 s)"
)
_GPU_UNCACHED: dict[tuple[str, str], float] = {
    # (device kind, version) -> wall seconds per output second, fp16, without the step cache
    ("cuda", "1.5"): 3.0,
    ("cuda", "1.6"): 8.0,
    ("mps", "1.5"): 30.0,
    ("mps", "1.6"): 90.0,
}
#: dtype factors on GPUs: bf16 runs on the same tensor cores as fp16; fp32 (TF32 off) is about twice slower.
_GPU_DTYPE_FACTOR = {"float16": 1.0, "bfloat16": 1.0, "float32": 2.0}


@dataclass(frozen=True)
class SpeedFigure:
    """Expected wall seconds per second of output video, and how the figure was obtained."""

    wall_seconds_per_output_second: float
    basis: str


def _cpu_threads() -> int:
    try:
        import torch

        return max(1, int(torch.get_num_threads()))
    except ImportError:  # pragma: no cover - the route is not installed; an estimate still works
        return max(1, (os.cpu_count() or 2) // 2)


def speed_figure(device: str, dtype: str, version: str, *, deepcache: bool = True) -> SpeedFigure:
    """The figure for a job on ``device`` (``cpu``, ``cuda[:n]``, ``mps``) in ``dtype`` at ``version``."""
    if version not in _VRAM_GB:
        raise ValueError(f"version must be '1.5' or '1.6', got {version!r}")
    kind = device.split(":", 1)[0]
    if kind == "cpu":
        cpu_seconds, how = _cpu_chunk_seconds(dtype, deepcache), _MEASURED
        threads = _cpu_threads()
        per_second = cpu_seconds * _CPU_VERSION_FACTOR[version] / CHUNK_OUTPUT_SECONDS / threads
        scaled = "" if version == "1.5" else "; x4 for 512 px (scaled, not measured)"
        return SpeedFigure(
            per_second,
            f"CPU {dtype}, step cache {'on' if deepcache else 'off'}: {cpu_seconds:.0f} CPU s per 16-frame chunk "
            f"({how}){scaled}, over {threads} thread(s)",
        )
    uncached = _GPU_UNCACHED.get((kind, version), _GPU_UNCACHED[("cuda", version)])
    factor = _GPU_DTYPE_FACTOR.get(dtype, 2.0) * (CACHE_WORK_FRACTION if deepcache else 1.0)
    cache = f", x {CACHE_WORK_FRACTION:.2f} for the step cache" if deepcache else ""
    return SpeedFigure(uncached * factor, f"{kind} {dtype}: {_PUBLIC}{cache}; not measured here")


def wall_seconds_per_output_second(device: str, dtype: str, version: str, *, deepcache: bool = True) -> float:
    """Shorthand for ``speed_figure(...).wall_seconds_per_output_second``."""
    return speed_figure(device, dtype, version, deepcache=deepcache).wall_seconds_per_output_second


def vram_gb(device: str, version: str) -> float | None:
    """GPU memory a job needs (official README), or None where there is no GPU to speak of."""
    return _VRAM_GB[version] if device.split(":", 1)[0] == "cuda" else None
