"""budget_total caps the journal's spend over a period, in every process at once; sandbox money apart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from latentsync_routes import BudgetExceeded, LipSyncClient
from latentsync_routes.budget import BudgetCap, period_start
from latentsync_routes.journal import Journal
from latentsync_routes.testing import FakeFal
from tests.cli_helpers import clean_env, run_cli
from tests.hosted_fixtures import FAL_KEY, fal, hosted_env, media  # noqa: F401
from tests.journal_stress import _LAUNCH
from tests.test_journal import record


def _job(journal: Journal, name: str, *, state: str, days_ago: float = 0, sandbox: bool = False, **cost: float) -> None:
    job = record(name, key=name, state=state)
    job.created_at = datetime.now(timezone.utc) - timedelta(days=days_ago)
    job.sandbox = sandbox
    for field, value in cost.items():
        setattr(job.cost, field, value)
    journal.save(job)


def _committed(journal: Journal, period: Any, sandbox: bool = False) -> float:
    return journal.committed(BudgetCap(10.0, period, 0.0, sandbox=sandbox)) / 1e6


def test_what_the_period_s_jobs_are_committed_to(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    _job(journal, "paid", state="fetched", estimated=0.2, actual=0.25, billed_failures=0.05)
    _job(journal, "unsaid", state="fetched", estimated=0.2)  # fetched, no actual: counted at its estimate
    _job(journal, "failed", state="failed", estimated=0.2, billed_failures=0.1)
    _job(journal, "unknown", state="cancelled", estimated=0.2, billed_unknown=0.2)
    _job(journal, "flying", state="submitted", estimated=0.2, estimated_high=0.4)  # in flight: its worst case
    _job(journal, "old", state="fetched", days_ago=40, estimated=1.0, actual=1.0)
    _job(journal, "fake", state="fetched", sandbox=True, estimated=0.2, actual=0.2)
    today = 0.3 + 0.2 + 0.1 + 0.2 + 0.4
    assert _committed(journal, "day") == pytest.approx(today)
    assert _committed(journal, "all") == pytest.approx(today + 1.0)
    assert _committed(journal, "all", sandbox=True) == pytest.approx(0.2)


def test_periods_start_at_utc_midnight_and_the_first_of_the_month() -> None:
    now = datetime(2026, 12, 7, 15, 30, tzinfo=timezone.utc)
    assert period_start("day", now) == "2026-12-07T00:00:00+00:00"
    assert period_start("month", now) == "2026-12-01T00:00:00+00:00"
    assert period_start("all", now) == ""


def test_a_cap_counts_what_earlier_processes_spent(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: FakeFal,  # noqa: F811
) -> None:
    first = LipSyncClient(route="fal", credentials={"fal": FAL_KEY}, consent="test")
    first.run(*media, tmp_path / "a.mp4")  # $0.20, spent before the capped client existed
    capped = LipSyncClient(route="fal", credentials={"fal": FAL_KEY}, consent="test", budget_total=0.3)
    with pytest.raises(BudgetExceeded, match=r"committed to \$0\.2000 of the budget_total of \$0\.3000") as caught:
        capped.run(*media, tmp_path / "b.mp4")
    assert caught.value.exit_code == 5 and len(fal.jobs) == 1
    assert capped.run(*media, tmp_path / "a.mp4").job_id  # the paid job itself is returned, not refused


def test_two_processes_under_a_cap_for_one_job_run_exactly_one(
    tmp_path: Path,
    media: tuple[Path, Path],
    hosted_env: Path,  # noqa: F811
) -> None:
    with FakeFal(expected_key=FAL_KEY, queue_polls=3, progress_polls=3) as fake:
        env = clean_env(
            hosted_env,
            {
                "LATENTSYNC_ROUTES_FAL_BASE_URL": fake.url,
                "FAL_KEY": FAL_KEY,
                "LATENTSYNC_ROUTES_BUDGET_TOTAL": "0.3",
                "LATENTSYNC_ROUTES_POLL_INTERVAL": "0.05",
            },
        )
        start = str(time.time() + 3.0)
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _LAUNCH,
                    start,
                    "run",
                    str(media[0]),
                    str(media[1]),
                    "-o",
                    str(tmp_path / f"out{n}.mp4"),
                    "--route",
                    "fal",
                    "--consent",
                    "test",
                    "--json",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(2)
        ]
        outputs = [p.communicate(timeout=240) for p in procs]
        assert sorted(p.returncode for p in procs) == [0, 5], outputs
        assert len(fake.jobs) == 1


def test_check_shows_the_budget_row_and_sandbox_money_stays_apart(
    tmp_path: Path,
    media: tuple[Path, Path],
    hosted_env: Path,  # noqa: F811
) -> None:
    with FakeFal(expected_key=FAL_KEY, queue_polls=1, progress_polls=1) as fake:
        env = {
            "LATENTSYNC_ROUTES_FAL_BASE_URL": fake.url,
            "FAL_KEY": FAL_KEY,
            "LATENTSYNC_ROUTES_BUDGET_TOTAL": "0.3",
            "LATENTSYNC_ROUTES_BUDGET_PERIOD": "day",
        }
        args = [str(media[0]), str(media[1]), "--route", "fal", "--consent", "test", "--json"]
        before = run_cli("check", *args, home=hosted_env, env=env)
        assert before.returncode == 0, before.stderr
        (row,) = [r for r in json.loads(before.stdout) if r["check"] == "budget"]
        assert row["passed"] and "$0.0000 of $0.3000 committed today (UTC)" in row["reason"]
        ran = run_cli("run", *args, "-o", str(tmp_path / "a.mp4"), home=hosted_env, env=env)
        assert ran.returncode == 0, ran.stderr
        assert json.loads(ran.stdout)["record"]["sandbox"] is True
        after = run_cli("check", *args, home=hosted_env, env=env)
        assert after.returncode == 5 and "sandbox jobs today (UTC) are committed to $0.2000" in after.stdout
    spend = run_cli("jobs", "spend", "--json", home=hosted_env)
    (day,) = json.loads(spend.stdout)
    assert day["sandbox"] is True and day["actual"] == 0.2
    human = run_cli("jobs", "spend", home=hosted_env)
    assert "sandbox (base-URL overrides, not real money)" in human.stdout and "known spend" not in human.stdout


def test_a_rerun_of_a_paid_job_says_nothing_was_charged_now(
    tmp_path: Path,
    media: tuple[Path, Path],
    hosted_env: Path,  # noqa: F811
) -> None:
    with FakeFal(expected_key=FAL_KEY, queue_polls=1, progress_polls=1) as fake:
        env = {"LATENTSYNC_ROUTES_FAL_BASE_URL": fake.url, "FAL_KEY": FAL_KEY}
        args = [
            "run",
            str(media[0]),
            str(media[1]),
            "-o",
            str(tmp_path / "a.mp4"),
            "--route",
            "fal",
            "--consent",
            "test",
        ]
        first = " ".join(run_cli(*args, home=hosted_env, env=env).stdout.split())  # rich wraps at 80 columns
        again = " ".join(run_cli(*args, home=hosted_env, env=env).stdout.split())
    assert "cost: estimated $0.2000, actual $0.2000 (sandbox" in first and "already paid" not in first
    assert "already paid: nothing charged now (job " in again and "$0.2000 on " in again
    assert "actual" not in again and len(fake.jobs) == 1
