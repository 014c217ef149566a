"""The official LatentSync release facts the local route relies on, with sources and dates."""

from __future__ import annotations

from datetime import date

from ..kit import Fact

CHECKED = date(2026, 11, 23)
README = "https://github.com/bytedance/LatentSync#readme"

FACTS: tuple[Fact, ...] = (
    Fact("vram", "Minimum inference VRAM: 8 GB for LatentSync 1.5 and 18 GB for LatentSync 1.6.", README, CHECKED),
    Fact(
        "weights-licence",
        "The LatentSync 1.5 and 1.6 checkpoints are published under openrail++.",
        "https://huggingface.co/ByteDance/LatentSync-1.5",
        CHECKED,
    ),
    Fact(
        "v16-weights",
        "LatentSync 1.6 (512 px) checkpoints are published on Hugging Face under openrail++.",
        "https://huggingface.co/ByteDance/LatentSync-1.6",
        CHECKED,
    ),
    Fact(
        "code-licence",
        "The official LatentSync code is Apache-2.0.",
        "https://github.com/bytedance/LatentSync",
        CHECKED,
    ),
    Fact(
        "deepcache",
        "The official inference script, its shell wrapper and its app run with DeepCache (interval 3).",
        "https://github.com/bytedance/LatentSync",
        CHECKED,
    ),
    Fact(
        "default-seed",
        "The official scripts' default seed is 1247.",
        "https://github.com/bytedance/LatentSync",
        CHECKED,
    ),
)
