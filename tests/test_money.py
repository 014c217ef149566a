"""Money is summed and compared exactly: three $0.20 jobs fit a $0.60 budget, and totals never drift."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from latentsync_routes import LipSyncClient
from latentsync_routes.journal import Journal
from latentsync_routes.money import exceeds, from_micros, micros, total
from tests.hosted_fixtures import FAL_KEY, fal, hosted_env, media  # noqa: F401
from tests.test_batch import _manifest
from tests.test_journal import record


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (0.2, 200_000),
        ("0.6", 600_000),
        (Decimal("0.0000005"), 0),
        (Decimal("0.0000015"), 2),
        (None, 0),
        (3, 3_000_000),
        (0.1 + 0.2, 300_000),
        (0.000975 * 133, 129_675),
    ],
)
def test_amounts_become_exact_micro_dollars(amount: Any, expected: int) -> None:
    assert micros(amount) == expected


def test_sums_and_caps_are_exact() -> None:
    assert 0.2 + 0.2 + 0.2 > 0.6  # the float drift this module exists for
    assert total([0.2, 0.2, 0.2]) == 0.6 and not exceeds(total([0.2, 0.2, 0.2]), 0.6)
    assert total([0.1] * 10) == 1.0 and exceeds(0.600001, 0.6)
    assert from_micros(micros(0.1 + 0.2)) == 0.3 and from_micros(129_675) == 0.129675
    with pytest.raises(ValueError, match="finite"):
        micros(float("nan"))


def test_a_budget_of_three_jobs_exact_cost_lets_all_three_run(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: Any,  # noqa: F811
) -> None:
    manifest = _manifest(tmp_path, media, 3, lambda i: "fal")  # $0.20 each on fal (its minimum charge)
    report = LipSyncClient(route="fal", credentials={"fal": FAL_KEY}, consent="test").run_many(manifest, budget=0.6)
    assert [job.state for job in report.jobs] == ["fetched"] * 3 and len(fal.jobs) == 3
    assert report.totals["estimated"] == 0.6


def test_a_client_budget_total_of_three_jobs_exact_cost_lets_all_three_run(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: Any,  # noqa: F811
) -> None:
    client = LipSyncClient(route="fal", credentials={"fal": FAL_KEY}, consent="test", budget_total=0.6)
    for seed in range(3):
        client.run(*media, tmp_path / f"out{seed}.mp4", seed=seed)
    assert len(fal.jobs) == 3


def test_the_journal_sums_spend_exactly(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    for n in range(10):
        job = record(f"j{n}", key=f"k{n}")
        job.cost.estimated, job.cost.actual, job.cost.billed_failures = 0.1, 0.1, 0.07
        journal.save(job)
    (row,) = journal.spend()
    assert (row.estimated, row.actual, row.billed_failures, row.spent) == (1.0, 1.0, 0.7, 1.7)
