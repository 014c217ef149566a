"""The ambiguous-submit protocol of routes/hosted_lookup.py on records alone: decided by time, never by payload."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from latentsync_routes.routes.hosted_lookup import CLOCK_SKEW_S, Listed, decide, with_worst_case, without_worst_case
from latentsync_routes.types import Cost, JobRecord

T0 = datetime(2026, 12, 7, 12, 0, 0, tzinfo=timezone.utc)


def record(
    job_id: str,
    *,
    state: str = "submitting",
    request_id: str | None = None,
    at: datetime = T0,
    settles_after_s: float | None = 100.0,
) -> JobRecord:
    end = at + timedelta(seconds=10)
    return JobRecord(
        job_id=job_id,
        idempotency_key=job_id,
        state=state,
        route="fal",
        route_owner="",
        billing_owner="",
        model="",
        model_version="",
        upload_destination="",
        retention_policy="",
        deletion_policy="",
        cost=Cost(estimated=0.2),
        library_version="",
        provider_request_id=request_id,
        submitting_at=at,
        submit_window_end=end,
        submit_settles_at=None if settles_after_s is None else end + timedelta(seconds=settles_after_s),
    )  # type: ignore[arg-type]


def listed(request_id: str, seconds_after: float, started: bool = True) -> Listed:
    return Listed(request_id, T0 + timedelta(seconds=seconds_after), started=started)


def test_one_candidate_for_one_ambiguous_job_is_adopted() -> None:
    finding = decide(record("a"), [listed("r1", 3)], [], T0 + timedelta(seconds=20))
    assert finding.adopt == "r1"


def test_a_request_another_journal_job_holds_is_never_a_candidate() -> None:
    held = record("b", state="fetched", request_id="r1")
    earlier = record("c", state="failed", request_id="r9")
    earlier.previous_request_ids = ["r2"]
    finding = decide(record("a"), [listed("r1", 3), listed("r2", 4)], [held, earlier], T0 + timedelta(seconds=20))
    assert finding.adopt is None and finding.candidates == () and not finding.resubmit
    assert finding.decide_at is not None  # still inside the bound: undecided, not "nothing created"


def test_requests_outside_the_window_or_never_started_are_not_candidates() -> None:
    late = 10 + CLOCK_SKEW_S + 1
    finding = decide(
        record("a"),
        [listed("r1", late), listed("r2", -CLOCK_SKEW_S - 1), listed("r3", 2, False)],
        [],
        T0 + timedelta(seconds=20),
    )
    assert finding.candidates == () and finding.adopt is None


def test_nothing_listed_after_the_bound_means_nothing_was_created() -> None:
    after = T0 + timedelta(seconds=10 + 100 + CLOCK_SKEW_S + 1)
    assert decide(record("a"), [], [], after).resubmit
    before = T0 + timedelta(seconds=50)
    undecided = decide(record("a"), [], [], before)
    assert not undecided.resubmit and undecided.decide_at == T0 + timedelta(seconds=110 + CLOCK_SKEW_S)


def test_no_bound_or_no_listing_never_resubmits() -> None:
    far = T0 + timedelta(days=30)
    assert not decide(record("a", settles_after_s=None), [], [], far).resubmit
    unsearchable = decide(record("a"), None, [], far)
    assert not unsearchable.searchable and not unsearchable.resubmit


def test_more_candidates_than_ambiguous_jobs_stay_ambiguous() -> None:
    finding = decide(record("a"), [listed("r1", 1), listed("r2", 2)], [], T0 + timedelta(seconds=20))
    assert finding.adopt is None and finding.candidates == ("r1", "r2")


def test_one_candidate_for_two_ambiguous_jobs_is_not_adopted() -> None:
    peer = record("b", at=T0 + timedelta(seconds=2))
    finding = decide(record("a"), [listed("r1", 3)], [peer], T0 + timedelta(seconds=20))
    assert finding.adopt is None and finding.candidates == ("r1",) and finding.ambiguous_jobs == 2


def test_the_worst_case_is_counted_once_and_removed_when_decided() -> None:
    job = record("a")
    job.cost = with_worst_case(job, 0.2, "two candidates")["cost"]
    assert job.cost.billed_unknown == 0.2 and with_worst_case(job, 0.2, "again") == {}
    job.cost = without_worst_case(job, 0.2)["cost"]
    assert job.cost.billed_unknown == 0 and job.cost.billed_unknown_basis == ""
