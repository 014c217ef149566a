"""Shared fixtures: where the official goldens live, and small media the tests make."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
GOLDENS = SHARED / "goldens" / "latentsync"
FACE_CHECK_ENV = "LATENTSYNC_ROUTES_POLICY__FACE_CHECK"


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


@pytest.fixture(autouse=True)
def _face_check_off_for_synthetic_media(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' clips are synthetic and show no face, so a hosted job on them would stop at the face check
    (the checklist's ``face`` row). It is off here, as ``policy.face_check = false`` would turn it off for a
    user with faceless media; tests/test_face_check.py turns it on and tests it on a real face and on these."""
    monkeypatch.setenv(FACE_CHECK_ENV, "false")
