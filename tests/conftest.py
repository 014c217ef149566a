"""Shared fixtures: where the official goldens live, and small media the tests make."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
GOLDENS = SHARED / "goldens" / "latentsync"


def goldens_path(*parts: str) -> Path:
    """Path inside the official goldens; skips the test (with the reason) when they are absent."""
    path = GOLDENS.joinpath(*parts)
    if not path.exists():
        pytest.skip(
            f"official LatentSync goldens not found at {path} "
            "(they live in ../shared/goldens beside a development checkout, not on user machines)"
        )
    return path


@pytest.fixture
def goldens() -> Path:
    return goldens_path()
