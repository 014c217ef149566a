"""The shared retry loop: what it retries, how long it waits, when it stops, and what it records."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest

from latentsync_routes.errors import DeadlineExceeded, ProviderError, ProviderInputRejected
from latentsync_routes.retry import RetryPolicy, StepFailure, parse_retry_after, run_step
from tests.hosted_fixtures import make_job


def flaky(failures: list[StepFailure], value: str = "ok") -> tuple[list[int], object]:
    calls: list[int] = []

    def attempt() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return value

    return calls, attempt


def transient(code: int = 503, retry_after: float | None = None, billed: float = 0.0) -> StepFailure:
    error = ProviderError(f"HTTP {code}", route="test", status_code=code)
    return StepFailure(error, retryable=True, retry_after=retry_after, billed_amount=billed)


def test_parse_retry_after_seconds_dates_and_garbage() -> None:
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.5 ") == 0.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after((now + timedelta(seconds=5)).isoformat(), now=now) == 5.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("") is None and parse_retry_after("soon") is None


def test_retries_transient_failures_and_records_every_try(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    calls, attempt = flaky([transient(429, retry_after=0), transient(503)])
    assert run_step(job, "wait", attempt, policy=RetryPolicy(max_attempts=5, base_delay=0.001)) == "ok"
    assert len(calls) == 3
    assert [(a.step, a.status, a.http_status, a.retryable) for a in job.record.attempts] == [
        ("wait", "error", 429, True),
        ("wait", "error", 503, True),
        ("wait", "ok", None, False),
    ]
    assert [a.number for a in job.record.attempts] == [1, 2, 3]
    assert job.record.retry_reasons[0].startswith("wait: ProviderError: HTTP 429")


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    calls, attempt = flaky([transient(429, retry_after=0.3)])
    started = time.monotonic()
    run_step(job, "wait", attempt, policy=RetryPolicy(base_delay=0.001), record_success=False)
    assert time.monotonic() - started >= 0.3
    assert len(calls) == 2 and len(job.record.attempts) == 1


def test_non_retryable_failure_is_raised_at_once_with_its_billing(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    rejected = ProviderInputRejected("bad input", fields=["guidance_scale"], route="test", status_code=422)
    calls, attempt = flaky([StepFailure(rejected, retryable=False, billed_amount=0.2)])
    with pytest.raises(ProviderInputRejected) as info:
        run_step(job, "fetch", attempt)
    assert info.value.fields == ["guidance_scale"] and len(calls) == 1
    (only,) = job.record.attempts
    assert only.billed_amount == 0.2 and not only.retryable and only.http_status == 422
    assert job.record.cost.billed_failures == 0.2


def test_stops_at_max_attempts_and_says_so(tmp_path: Path) -> None:
    job = make_job(tmp_path, max_attempts=3)
    calls, attempt = flaky([transient() for _ in range(10)])
    with pytest.raises(ProviderError, match=r"gave up after 3 tries \(max_attempts=3\)") as info:
        run_step(job, "wait", attempt, policy=RetryPolicy.from_settings(job.settings))
    assert len(calls) == 3 and info.value.retryable
    assert [a.status for a in job.record.attempts] == ["error"] * 3


def test_a_retry_after_beyond_the_budget_stops_without_sleeping(tmp_path: Path) -> None:
    job = make_job(tmp_path, retry_max_seconds=5.0)
    calls, attempt = flaky([transient(429, retry_after=3600)])
    started = time.monotonic()
    with pytest.raises(ProviderError, match="retry_max_seconds=5"):
        run_step(job, "wait", attempt, policy=RetryPolicy.from_settings(job.settings))
    assert time.monotonic() - started < 1.0 and len(calls) == 1


def test_deadline_stops_retries_and_hands_over(tmp_path: Path) -> None:
    job = make_job(tmp_path, deadline_s=0.2)
    calls, attempt = flaky([transient(503, retry_after=1.0) for _ in range(5)])

    def on_deadline() -> None:
        raise DeadlineExceeded("deadline", route="test", request_id="r1")

    with pytest.raises(DeadlineExceeded):
        run_step(job, "wait", attempt, on_deadline=on_deadline)  # type: ignore[arg-type]
    assert len(calls) == 1


def test_other_exceptions_propagate_untouched(tmp_path: Path) -> None:
    job = make_job(tmp_path)

    def attempt() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        run_step(job, "wait", attempt)
    assert job.record.attempts == []
