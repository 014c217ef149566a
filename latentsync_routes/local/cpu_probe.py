"""Whether this CPU runs the LatentSync UNet faster in bfloat16 or in float32: decided by measuring, once.

Why measure instead of reading CPU flags: the answer depends on the CPU and on the kernels torch ships for
it, not on our code, and flags mislead. Measured side by side on two machines with the same AVX512-BF16 flag
(no AMX), one ran a full UNet pass 1.9x faster in bfloat16 and the other 1.25-1.47x *slower*
(docs/performance.md). So the first CPU job (or ``doctor``) runs a short probe: one UNet layer group at the
job's shapes (a ResNet and a spatial transformer with audio attention at the network's first width and the
job's latent size, classifier-free-guidance batch, one frame) in both precisions, interleaved, timed in
**CPU seconds** of this process (user + system, all threads), so other work on a shared machine changes
the figure little. bfloat16 is chosen only when it takes at most :data:`BF16_MARGIN` of the float32 time:
the probe is short, and a near tie is not worth bfloat16's quality cost (docs/performance.md states it).

The probe's cost is measured in docs/performance.md: on a CPU without bfloat16 hardware the screen (see
:func:`measure`) decides within a few CPU seconds, imports included; with it, the probe runs on at the
job's size for a few more. The decision is kept per CPU model, torch version and latent size in
``cpu-precision.json`` in the package's cache folder (``$LATENTSYNC_ROUTES_HOME/cache``, else the user
cache directory), so a machine pays the probe once per torch upgrade. An explicit dtype never consults
it. Nothing here imports torch at module import time.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BF16_MARGIN",
    "CACHE_FILE",
    "ProbeResult",
    "cache_file",
    "cpu_decision",
    "cpu_model",
    "forget",
    "measure",
]

log = logging.getLogger(__name__)

#: bfloat16 is chosen when its CPU time is at most this share of float32's.
BF16_MARGIN = 0.9
#: Timed runs per precision at the job's size (after one warm-up each), interleaved fp32 / bf16.
REPEATS = 2
#: The screen's convolution (width, latent side), and the bfloat16 / float32 time ratio there that decides
#: float32 without more runs.
SCREEN_WIDTH, SCREEN_LATENT, SCREEN_LIMIT = 320, 8, 2.0
#: Larger latents (LatentSync 1.6's 64x64) are probed at this size: the ratio holds, the probe stays short.
MAX_PROBE_LATENT = 32
CACHE_FILE = "cpu-precision.json"
HOME_ENV = "LATENTSYNC_ROUTES_HOME"

_lock = threading.Lock()
_memo: dict[str, ProbeResult] = {}


@dataclass(frozen=True)
class ProbeResult:
    """The decision and the figures it rests on (CPU seconds per probe run, medians)."""

    decision: str
    float32_cpu_s: float | None
    bfloat16_cpu_s: float | None
    cpu: str
    torch: str
    latent_size: int
    probe_latent_size: int
    threads: int
    measured_at: str
    reason: str
    source: str = "measured"  # "measured" now, or "cache" (read back from the cache file)

    @property
    def bf16_speedup(self) -> float | None:
        """float32 time / bfloat16 time (above 1: bfloat16 is faster)."""
        if not self.float32_cpu_s or not self.bfloat16_cpu_s:
            return None
        return self.float32_cpu_s / self.bfloat16_cpu_s

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        speedup = self.bf16_speedup
        data["bf16_speedup"] = None if speedup is None else round(speedup, 3)
        return data


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else what the platform reports)."""
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cache_file() -> Path:
    """Where decisions are kept: ``$LATENTSYNC_ROUTES_HOME/cache``, else the user cache directory."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home) / "cache" / CACHE_FILE
    import platformdirs

    return Path(platformdirs.user_cache_dir("latentsync-routes")) / CACHE_FILE


def _key(torch_version: str, latent_size: int) -> str:
    return f"{cpu_model()} | torch {torch_version} | latent {latent_size}"


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path, key: str, result: ProbeResult) -> None:
    """Add one entry, replacing the file atomically (a reader never sees half a file)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read_cache(path)
        data[key] = asdict(result)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home must not stop a job: the decision still holds in this process
        log.warning("could not keep the CPU precision decision in %s: %s", path, exc)


def _from_cache(entry: Any) -> ProbeResult | None:
    if not isinstance(entry, dict):
        return None
    try:
        return ProbeResult(**{**entry, "source": "cache"})
    except TypeError:  # written by another version of this module: measure again
        return None


def _probe_layers(latent_size: int) -> tuple[Any, tuple[Any, ...]]:
    """A ResNet and a spatial transformer (with audio attention) of the UNet's first level, random weights,
    and their inputs: a classifier-free-guidance batch of one frame at ``latent_size``."""
    import torch

    from .unet_blocks import StageSettings
    from .unet_config import UNetConfig

    cfg = UNetConfig()
    width, temb_width = cfg.block_out_channels[0], cfg.block_out_channels[0] * 4
    settings = StageSettings(
        temb_channels=temb_width, norm_groups=cfg.norm_num_groups, norm_eps=cfg.norm_eps,
        per_frame_resnet_norm=cfg.use_inflated_groupnorm, cross_attention_dim=cfg.cross_attention_dim,
        motion_kwargs=asdict(cfg.motion_module),
    )  # fmt: skip
    heads = cfg.attention_head_dim[0]
    layers = torch.nn.ModuleList([settings.resnet(width, width), settings.transformer(width, heads)])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in layers.parameters():
            param.copy_(0.05 * torch.randn(param.shape, generator=gen))
    batch = 2  # classifier-free guidance
    video = torch.randn(batch, width, 1, latent_size, latent_size, generator=gen)
    temb = torch.randn(batch, temb_width, generator=gen)
    audio = torch.randn(batch, 50, cfg.cross_attention_dim, generator=gen)
    return layers.eval(), (video, temb, audio)


def _run(layers: Any, inputs: tuple[Any, ...]) -> float:
    import torch

    video, temb, audio = inputs
    start = time.process_time()
    with torch.inference_mode():
        layers[1](layers[0](video, temb), audio)
    return time.process_time() - start


def _timed_pair(latent_size: int, repeats: int) -> tuple[float, float]:
    """(float32, bfloat16) CPU seconds of the probe layers: a warm-up each, then ``repeats`` interleaved runs
    each; the median of each."""
    import copy

    import torch

    layers32, inputs32 = _probe_layers(latent_size)
    layers16 = copy.deepcopy(layers32).to(torch.bfloat16)
    inputs16 = tuple(x.to(torch.bfloat16) for x in inputs32)
    _run(layers32, inputs32)  # warm-up: first-call allocations and oneDNN's kernel choice
    _run(layers16, inputs16)
    fp32, bf16 = [], []
    for _ in range(repeats):
        fp32.append(_run(layers32, inputs32))
        bf16.append(_run(layers16, inputs16))
    return statistics.median(fp32), statistics.median(bf16)


def _screen() -> tuple[float, float]:
    """(float32, bfloat16) CPU seconds of one 3x3 convolution of the UNet's first width at the screening size
    (medians of three after a warm-up). Convolutions are most of the UNet's work, and where bfloat16 has no
    hardware they are emulated many times slower (21x here, docs/performance.md), which this sees at once."""
    import torch

    gen = torch.Generator().manual_seed(0)
    conv32 = torch.nn.Conv2d(SCREEN_WIDTH, SCREEN_WIDTH, kernel_size=3, padding=1).eval()
    x32 = torch.randn(2, SCREEN_WIDTH, SCREEN_LATENT, SCREEN_LATENT, generator=gen)
    conv16, x16 = torch.nn.Conv2d(SCREEN_WIDTH, SCREEN_WIDTH, 3, padding=1).to(torch.bfloat16), x32.bfloat16()
    conv16.load_state_dict(conv32.state_dict())

    def timed(conv: Any, x: Any) -> float:
        start = time.process_time()
        with torch.inference_mode():
            conv(x)
        return time.process_time() - start

    timed(conv32, x32)  # warm-up
    timed(conv16, x16)
    fp32, bf16 = [], []
    for _ in range(3):
        fp32.append(timed(conv32, x32))
        bf16.append(timed(conv16, x16))
    return statistics.median(fp32), statistics.median(bf16)


def measure(latent_size: int) -> ProbeResult:
    """Time the probe in float32 and bfloat16 and decide (see the module docstring).

    Two stages, so that a CPU without bfloat16 hardware (where bfloat16 convolutions are emulated, tens of
    times slower) pays a fraction of a second: a screen (:func:`_screen`) decides float32 at once when
    bfloat16 takes :data:`SCREEN_LIMIT` times as long or more; otherwise the layer group runs at the job's
    latent size (at most :data:`MAX_PROBE_LATENT`) and decides.
    """
    import torch

    probe_size = min(latent_size, MAX_PROBE_LATENT)
    fp32, bf16 = _screen()
    screened = bf16 >= SCREEN_LIMIT * fp32
    if screened:
        reason = (
            f"a bfloat16 convolution took {bf16 / fp32:.1f}x the float32 CPU time in the screen "
            f"({SCREEN_LIMIT:g}x or more: no bfloat16 hardware), so float32"
        )
        probe_size = 0
    else:
        fp32, bf16 = _timed_pair(probe_size, REPEATS)
        faster = bf16 <= BF16_MARGIN * fp32
        reason = (
            f"bfloat16 took {bf16 / fp32:.2f}x the float32 CPU time at latent {probe_size}x{probe_size} "
            f"({'at most' if faster else 'more than'} {BF16_MARGIN:g}x, so {'bfloat16' if faster else 'float32'})"
        )
    decision = "bfloat16" if not screened and bf16 <= BF16_MARGIN * fp32 else "float32"
    return ProbeResult(
        decision=decision, float32_cpu_s=round(fp32, 4), bfloat16_cpu_s=round(bf16, 4), cpu=cpu_model(),
        torch=torch.__version__, latent_size=latent_size, probe_latent_size=probe_size,
        threads=torch.get_num_threads(), measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        reason=reason,
    )  # fmt: skip


def _without_torch(latent_size: int) -> ProbeResult:
    return ProbeResult(
        decision="float32", float32_cpu_s=None, bfloat16_cpu_s=None, cpu=cpu_model(), torch="not installed",
        latent_size=latent_size, probe_latent_size=0, threads=0, measured_at="",
        reason="torch is not installed: nothing to probe", source="default",
    )  # fmt: skip


def cpu_decision(latent_size: int = 32) -> ProbeResult:
    """The precision this CPU runs fastest at for a job at ``latent_size``: from this process's memory, the
    cache file, or a probe run now (then kept in both)."""
    try:
        import torch
    except ImportError:  # absent, or a broken or blocked install: nothing to probe
        return _without_torch(latent_size)

    key = _key(torch.__version__, latent_size)
    with _lock:  # concurrent first jobs wait for one probe instead of running two that slow each other
        found = _memo.get(key)
        if found is not None:
            return found
        path = cache_file()
        found = _from_cache(_read_cache(path).get(key))
        if found is None:
            log.info("measuring whether this CPU is faster in bfloat16 or float32 (once; about a second)")
            found = measure(latent_size)
            _write_cache(path, key, found)
        _memo[key] = found
        return found


def forget() -> None:
    """Drop the decisions held in this process (the cache file stays); the next job reads or measures again."""
    with _lock:
        _memo.clear()
