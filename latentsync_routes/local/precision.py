"""Which floating-point type the local models run in, per device.

Why per device: the UNet is 91 % of a chunk's time and its speed depends mostly on the number type the
hardware multiplies fastest, at a quality cost measured in docs/local.md.

* **CUDA**: float16, the official pipeline's precision (``scripts/inference.py`` uses fp16 on Ampere and
  newer). bfloat16 has the same tensor-core throughput there but fewer mantissa bits; it is used only when
  asked for, since no GPU measurement here shows it faster.
* **CPU**: whichever of bfloat16 and float32 this CPU runs the UNet faster, decided by a short measured probe
  on first use and kept per CPU model and torch version (:mod:`.cpu_probe`). Flags do not decide it: on two
  machines with the same AVX512-BF16 flag and no AMX, a full UNet pass ran 1.9x faster in bfloat16 on one
  and 1.25-1.47x slower on the other (docs/performance.md), and AMX CPUs (``amx_bf16``) are expected to
  favour bfloat16 but are measured all the same. ``dtype="bfloat16"`` always halves the UNet's memory.
* **Apple MPS**: float32 (MPS fp16 has known artefacts).

The VAE follows the UNet's dtype except on the CPU, where it stays float32: measured on the AVX512-BF16 CPU
where bfloat16 was the slower, the
SD VAE is about 25 % *slower* in bfloat16 (encode 4.1 vs 3.3 CPU s, decode 9.1 vs 7.1 CPU s per 256 px
frame; its GroupNorm and upsampling have no fast bf16 kernels there), and float32 is also exact.

``float32`` is always available on request: it is the precision the parity goldens hold the code to.
Nothing here imports torch at module import time.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

__all__ = ["DTYPES", "bf16_flags", "cpu_has_amx", "cpu_has_bf16", "default_dtype", "resolve_dtype", "vae_dtype"]

#: The dtypes a caller may ask for, by torch name; ``auto`` means :func:`default_dtype`.
DTYPES = ("float32", "bfloat16", "float16")
#: /proc/cpuinfo flags that mean native bfloat16 matrix arithmetic on x86 (AVX512-BF16, AMX-BF16).
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: AMX tiles: reported by ``doctor`` beside the probe's decision, which alone decides.
_FAST_BF16_FLAG = "amx_bf16"


def _cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def bf16_flags() -> list[str]:
    """This CPU's bfloat16-related flags (AVX512-BF16, AMX), for reports: they inform, the probe decides."""
    return sorted(_cpu_flags() & (_BF16_FLAGS | {"amx_tile"}))


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when this CPU multiplies bfloat16 natively and torch's oneDNN backend can use it.

    Both must hold: the CPU flag (else bf16 is emulated, slower than fp32) and torch's own check (a build
    without oneDNN bf16 kernels would fall back to the emulation as well).
    """
    if not (_cpu_flags() & _BF16_FLAGS):
        return False
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - torch builds without oneDNN
        return False


@functools.lru_cache(maxsize=1)
def cpu_has_amx() -> bool:
    """True when the CPU has AMX-BF16 tiles and torch can use bfloat16 there (see :func:`cpu_has_bf16`)."""
    return _FAST_BF16_FLAG in _cpu_flags() and cpu_has_bf16()


def default_dtype(device: str, latent_size: int = 32) -> str:
    """The dtype the local route uses on ``device`` unless told otherwise (see the module docstring); on the
    CPU, the probe's decision for a job at ``latent_size`` (32 for LatentSync 1.5, 64 for 1.6)."""
    kind = device.split(":", 1)[0]
    if kind == "cuda":
        return "float16"
    if kind == "cpu":
        from .cpu_probe import cpu_decision

        return cpu_decision(latent_size).decision
    return "float32"


def resolve_dtype(requested: str | None, device: str, latent_size: int = 32) -> str:
    """``requested`` (a name in :data:`DTYPES`) or, for None/``auto``, the device's default (an explicit dtype
    never runs the CPU probe).

    Raises ValueError for an unknown name or float16 on a CPU (emulated there: many times slower than fp32).
    """
    if requested in (None, "", "auto"):
        return default_dtype(device, latent_size)
    if requested not in DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {', '.join(DTYPES)}, got {requested!r}")
    if requested == "float16" and device.split(":", 1)[0] == "cpu":
        raise ValueError("float16 on the CPU is emulated and slow; use 'bfloat16' or 'float32'")
    assert requested is not None
    return requested


def vae_dtype(device: str, unet_dtype: str) -> str:
    """The VAE's dtype for a job whose UNet runs in ``unet_dtype``: float32 on the CPU (faster there, see the
    module docstring), the UNet's elsewhere."""
    return "float32" if device.split(":", 1)[0] == "cpu" else unet_dtype
