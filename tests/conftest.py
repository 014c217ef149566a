"""Shared fixtures: where the official goldens live, and small media the tests make."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
GOLDENS = SHARED / "goldens" / "latentsync"
FACE_CHECK_ENV = "LATENTSYNC_ROUTES_POLICY__FACE_CHECK"
DEADLINE_CHECK_ENV = "LATENTSYNC_ROUTES_POLICY__DEADLINE_CHECK"


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
def _checks_that_do_not_fit_test_media(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two checklist rows are off by default in the tests, as a user whose media or route they do not fit
    would turn them off (``policy.face_check``, ``policy.deadline_check``):

    * the face row: the tests' clips are synthetic and show no face, so every hosted job would stop;
    * the deadline row: the loopback fakes answer in a second whatever the provider's estimate says, and the
      suite tests the routes' own deadlines and cancels on them with deadlines of a second or two.

    tests/test_face_check.py and tests/test_preflight.py turn them on and test them.
    """
    monkeypatch.setenv(FACE_CHECK_ENV, "false")
    monkeypatch.setenv(DEADLINE_CHECK_ENV, "false")


@pytest.fixture(autouse=True)
def _cpu_precision_decided(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """``dtype="auto"`` on a CPU is a measured probe's decision (``latentsync_routes.local.cpu_probe``). In
    the suite it is fixed at float32, so that no test's outcome depends on timings or on the machine, and
    the probe's cache goes to a temporary folder, never the user's. tests/test_cpu_probe.py injects both
    decisions and tests the probe itself; CLI tests in child processes run the real probe.
    """
    from latentsync_routes.local import cpu_probe

    def decided(latent_size: int) -> cpu_probe.ProbeResult:
        return cpu_probe.ProbeResult(
            decision="float32", float32_cpu_s=1.0, bfloat16_cpu_s=2.0, cpu="test CPU", torch="test",
            latent_size=latent_size, probe_latent_size=latent_size, threads=1, measured_at="",
            reason="fixed for the test suite", source="injected",
        )  # fmt: skip

    monkeypatch.setattr(cpu_probe, "measure", decided)
    cache = tmp_path_factory.getbasetemp() / "cpu-precision.json"
    monkeypatch.setattr(cpu_probe, "cache_file", lambda: cache)
    cpu_probe.forget()
