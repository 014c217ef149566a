from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from latentsync_routes import __version__
from latentsync_routes.journal import ClaimLost, ClaimTimeout, Journal, JournalError
from latentsync_routes.records import append_jsonl
from latentsync_routes.types import Cost, JobRecord


def record(job_id: str, key: str = "k", state: str = "created") -> JobRecord:
    return JobRecord(
        job_id=job_id,
        idempotency_key=key,
        state=state,
        route="fal",
        route_owner="fal",
        billing_owner="me",  # type: ignore[arg-type]
        model="fal-ai/latentsync",
        model_version="v",
        upload_destination="cdn",
        retention_policy="7d",
        deletion_policy="expiry",
        cost=Cost(estimated=0.2),
        library_version=__version__,
    )


def test_save_get_update(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    r = record("a")
    journal.save(r)
    r.state, r.provider_request_id = "submitted", "req-1"
    journal.save(r)
    back = journal.get("a")
    assert back is not None and back.state == "submitted" and back.provider_request_id == "req-1"
    assert journal.get("missing") is None


def test_find_latest_returns_the_newest_job_whatever_its_state(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    journal.save(record("old", state="failed"))
    assert journal.find_latest("k") is not None
    assert journal.find_latest("other") is None


def test_a_claim_is_exclusive_and_a_waiter_gets_the_same_job(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    made: list[str] = []

    def make() -> JobRecord:
        made.append("x")
        return record(f"job-{len(made)}")

    first, rec = journal.claim("k", make)
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.append(journal.claim("k", make)[1].job_id))
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive() and got == []  # blocked while the first owner holds the job
    first.release()
    waiter.join(10)
    assert got == [rec.job_id] and made == ["x"]  # one record, handed to both in turn


def test_a_dead_owner_process_is_taken_over_at_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    claim, rec = journal.claim("k", lambda: record("a"), owner="somehost-not-here:1:x")
    assert claim.owner.startswith("somehost")
    # another host's owner is alive until its lease runs out
    with pytest.raises(ClaimTimeout):
        journal.claim("k", lambda: record("b"), wait_s=0.3)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = f"{socket.gethostname()}:{dead.stdout.strip()}:y"
    journal.claim("k2", lambda: record("c", key="k2"), owner=gone)
    took, rec2 = journal.claim("k2", lambda: record("d", key="k2"), wait_s=5)
    assert took.took_over and rec2.job_id == "c"


def test_an_expired_lease_is_taken_over_and_the_old_owner_can_no_longer_write(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    old, rec = journal.claim("k", lambda: record("a"), owner="elsewhere:1:x")
    new, _ = journal.claim("k", lambda: record("b"), lease_s=0.0, wait_s=5)
    assert new.took_over
    rec.state = "submitted"
    with pytest.raises(ClaimLost):
        journal.save(rec, owner=old.owner)
    journal.save(rec, owner=new.owner)
    assert journal.get("a").state == "submitted"  # type: ignore[union-attr]


def test_cancel_request_reaches_the_owner(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    claim, _ = journal.claim("k", lambda: record("a"))
    assert not claim.cancel_requested()
    assert journal.request_cancel("k") and claim.cancel_requested()
    claim.release()
    assert not journal.request_cancel("k")


def _heartbeat_an_hour_late(journal: Journal) -> None:
    with contextlib.closing(sqlite3.connect(journal.path)) as db, db:
        db.execute("UPDATE claims SET heartbeat = heartbeat - 3600")


def test_a_canceller_never_takes_over_a_live_owner_that_took_the_cancel_on(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    owner, rec = journal.claim("k", lambda: record("a"))  # this process: alive
    _heartbeat_an_hour_late(journal)
    assert journal.request_cancel("k") and owner.cancel_requested()  # taken on
    _heartbeat_an_hour_late(journal)
    with pytest.raises(ClaimTimeout, match="cancel request"):
        journal.claim_job("a", for_cancel=True, lease_s=0.0, wait_s=0.3)
    assert journal.request_cancel("k") and owner.cancel_requested()  # asked again: still taken on
    journal.save(rec, owner=owner.owner)  # still the owner


def test_a_canceller_judges_a_silent_owner_by_its_own_watching_and_carries_the_cancel_over(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    old, rec = journal.claim("k", lambda: record("a"), owner="elsewhere:1:x")
    _heartbeat_an_hour_late(journal)  # late at the first look: not dead yet
    assert journal.request_cancel("k")
    started = time.monotonic()
    new, _ = journal.claim_job("a", for_cancel=True, lease_s=0.3, wait_s=10)
    assert new.took_over and time.monotonic() - started >= 0.3
    assert journal.cancel_requested("k")  # the cancel is asked of whoever holds the job now
    assert old.cancel_requested()  # the old owner learns the job is being cancelled ...
    with pytest.raises(ClaimLost):  # ... and can no longer write
        journal.save(rec, owner=old.owner)


def test_a_canceller_takes_over_an_owner_whose_process_is_gone_at_once(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    journal.claim("k", lambda: record("a"), owner=f"{socket.gethostname()}:{dead.stdout.strip()}:y")
    journal.request_cancel("k")
    took, _ = journal.claim_job("a", for_cancel=True, wait_s=2)
    assert took.took_over


def test_an_owner_taken_over_without_a_cancel_is_not_told_to_cancel(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    old, _ = journal.claim("k", lambda: record("a"), owner="elsewhere:1:x")
    journal.claim("k", lambda: record("b"), lease_s=0.0, wait_s=5)
    assert not old.cancel_requested()


def test_a_corrupt_journal_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError, match="damaged") as info:
        Journal(path)
    assert info.value.exit_code == 2


def _claim_and_count(path: str, key: str, counter: str) -> None:
    journal = Journal(Path(path))
    claim, rec = journal.claim(key, lambda: record(f"{os.getpid()}-{threading.get_ident()}", key=key))
    try:
        if rec.state == "created":  # the first owner does the work; the others find it done
            with open(counter, "a") as handle:
                handle.write("work\n")
            rec.state = "fetched"
            journal.save(rec, owner=claim.owner)
    finally:
        claim.release()


def test_identical_claims_across_threads_and_processes_do_the_work_once(tmp_path: Path) -> None:
    path, counter = str(tmp_path / "j.sqlite3"), str(tmp_path / "count.txt")
    Journal(Path(path))
    threads = [threading.Thread(target=_claim_and_count, args=(path, "same", counter)) for _ in range(6)]
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_claim_and_count, args=(path, "same", counter)) for _ in range(3)]
    for worker in [*threads, *processes]:
        worker.start()
    for worker in [*threads, *processes]:
        worker.join(60)
    assert all(p.exitcode == 0 for p in processes)
    assert Path(counter).read_text().splitlines() == ["work"]
    assert len(Journal(Path(path)).list(limit=100)) == 1


def _write_many(path: str, prefix: str, count: int) -> None:
    journal = Journal(Path(path))
    for i in range(count):
        r = record(f"{prefix}-{i}", key=prefix)
        journal.save(r)
        r.state = "submitted"
        journal.save(r)


def test_concurrent_writers_threads_and_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "j.sqlite3")
    Journal(Path(path))
    threads = [threading.Thread(target=_write_many, args=(path, f"t{n}", 25)) for n in range(4)]
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_write_many, args=(path, f"p{n}", 25)) for n in range(2)]
    for worker in [*threads, *processes]:
        worker.start()
    for worker in [*threads, *processes]:
        worker.join(60)
    assert all(p.exitcode == 0 for p in processes)
    records = Journal(Path(path)).list(limit=1000)
    assert len(records) == 150
    assert {r.state for r in records} == {"submitted"}


def test_jsonl_sink(tmp_path: Path) -> None:
    sink = tmp_path / "records" / "jobs.jsonl"
    append_jsonl(sink, record("a"))
    append_jsonl(sink, record("b"))
    lines = sink.read_text().splitlines()
    assert len(lines) == 2 and '"job_id": "a"' in lines[0]


def test_spend_sums_estimated_actual_and_failure_billed_per_route_and_day(tmp_path: Path) -> None:
    from datetime import date, datetime, timezone

    from latentsync_routes.journal import SpendRow

    journal = Journal(tmp_path / "j.sqlite3")
    day1, day2 = datetime(2026, 11, 30, 23, 59, tzinfo=timezone.utc), datetime(2026, 12, 1, 0, 1, tzinfo=timezone.utc)
    jobs = [  # (id, route, created, estimated, actual, billed failures)
        ("a", "fal", day1, 0.20, 0.20, 0.0),
        ("b", "fal", day1, 0.20, None, 0.05),
        ("c", "fal", day2, 0.30, 0.25, 0.0),
        ("d", "replicate", day2, 0.04, 0.03, 0.01),
    ]
    for job_id, route, created, estimated, actual, billed in jobs:
        r = record(job_id, key=job_id, state="fetched" if actual is not None else "failed")
        r.route, r.created_at = route, created
        r.cost = Cost(estimated=estimated, actual=actual, billed_failures=billed)
        journal.save(r)
    rows = journal.spend()
    assert all(isinstance(row, SpendRow) for row in rows)
    got = {
        (row.day.isoformat(), row.route): (row.jobs, row.estimated, row.actual, row.billed_failures, row.without_actual)
        for row in rows
    }
    assert got == {
        ("2026-11-30", "fal"): (2, 0.40, 0.20, 0.05, 1),
        ("2026-12-01", "fal"): (1, 0.30, 0.25, 0.0, 0),
        ("2026-12-01", "replicate"): (1, 0.04, 0.03, 0.01, 0),
    }
    assert [row.day for row in rows] == sorted(row.day for row in rows)
    assert rows[0].spent == 0.25
    assert [row.route for row in journal.spend(route="replicate")] == ["replicate"]
    assert {row.day for row in journal.spend(since=date(2026, 12, 1))} == {date(2026, 12, 1)}
    assert Journal(tmp_path / "empty.sqlite3").spend() == []
