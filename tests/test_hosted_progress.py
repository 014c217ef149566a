"""Hosted progress: state, queue position, elapsed against the estimate, and the provider's own progress."""

from __future__ import annotations

from pathlib import Path

import pytest

from latentsync_routes.routes.hosted_progress import TIME_FRACTION_CAP, progress_from_logs, wait_message
from latentsync_routes.testing import FakeFal
from tests import hosted_fixtures
from tests.hosted_fixtures import fal_client

fal = hosted_fixtures.fal
hosted_env = hosted_fixtures.hosted_env
media = hosted_fixtures.media


@pytest.mark.parametrize(
    ("lines", "fraction"),
    [
        (["Starting", "Inference step 3/20"], 0.15),
        ([" 45%|####      | 9/20 [00:05<00:06]"], 0.45),
        (["loading", "progress 80%"], 0.80),
        (["Inference step 5/4"], None),  # a count past its total is not progress
        (["no numbers here"], None),
        ([], None),
    ],
)
def test_progress_is_read_from_the_latest_log_line_that_has_one(lines: list[str], fraction: float | None) -> None:
    assert progress_from_logs(lines) == (pytest.approx(fraction) if fraction is not None else None)


def test_wait_message_names_state_position_time_and_the_fraction_rule() -> None:
    queued, none = wait_message("fal", "queued", elapsed=3, expected=40, queue_position=2)
    assert queued == "fal: queued (position 2), 3 s elapsed of ~40 s expected" and none is None
    running, by_time = wait_message("fal", "running", elapsed=10, expected=40)
    assert by_time == pytest.approx(0.25) and "~25% by time" in running
    _, capped = wait_message("fal", "running", elapsed=400, expected=40)
    assert capped == TIME_FRACTION_CAP  # only the provider's "done" is 100 %
    own, fraction = wait_message("fal", "running", elapsed=10, expected=40, provider_fraction=0.6)
    assert fraction == 0.6 and "provider progress 60%" in own


def test_a_fal_run_reports_queue_position_elapsed_time_and_log_progress(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path
) -> None:
    fal.queue_polls, fal.progress_polls = 2, 4
    events: list[tuple[str, float | None]] = []
    fal_client().run(*media, tmp_path / "out.mp4", progress=lambda m, f: events.append((m, f)))
    queued = [m for m, _ in events if m.startswith("fal: queued (position")]
    assert queued and all("elapsed of ~" in m and "expected" in m for m in queued)
    running = [(m, f) for m, f in events if m.startswith("fal: running")]
    fractions = [f for _, f in running]
    assert fractions and all(f is not None and 0 < f <= 1 for f in fractions)
    assert fractions == sorted(fractions) and any("provider progress" in m for m, _ in running)
    assert events[-1] == ("fal: done", 1.0)
