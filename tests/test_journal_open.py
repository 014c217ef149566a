"""Opening the journal: many processes at once on a new or old file, a lock is busy (not damage), and only a
file SQLite finds damaged is called damaged."""

from __future__ import annotations

import contextlib
import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from latentsync_routes.journal import Journal
from latentsync_routes.journal_db import SCHEMA_VERSION, JournalBusy, JournalError, diagnose
from tests.journal_stress import cpu_load, run_round
from tests.test_journal import record


def _open_and_claim(path: str, start: float, key: str) -> None:
    while time.time() < start:
        time.sleep(0.001)
    journal = Journal(Path(path))
    claim, _ = journal.claim(key, lambda: record(f"job-{key}", key=key))
    claim.release()


def _user_version(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def test_many_processes_opening_a_brand_new_journal_together_all_succeed(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    with cpu_load(2, seconds=120):
        for n in range(5):
            path = tmp_path / f"round{n}" / "jobs.sqlite3"
            start = time.time() + 1.5
            workers = [context.Process(target=_open_and_claim, args=(str(path), start, f"k{i % 3}")) for i in range(8)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join(120)
            assert [w.exitcode for w in workers] == [0] * 8, f"round {n}"
            assert len(Journal(path).list(limit=10)) == 3 and _user_version(path) == SCHEMA_VERSION


def test_an_initialised_journal_opens_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    Journal(path).save(record("a"))
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another process is writing right now
        began = time.monotonic()
        reopened = Journal(path)
        assert time.monotonic() - began < 5 and reopened.get("a") is not None
        other.execute("ROLLBACK")


def test_an_old_journal_without_a_schema_version_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    Journal(path).save(record("old"))
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA user_version=0")  # as the journals written before the version was kept
    assert Journal(path).get("old") is not None and _user_version(path) == SCHEMA_VERSION


def test_a_version_1_journal_gains_the_webhook_column_and_keeps_its_jobs(tmp_path: Path) -> None:
    from latentsync_routes.journal_db import SCHEMA, set_webhook_url, webhook_url_of

    path = tmp_path / "jobs.sqlite3"
    old = record("old")
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:  # the schema as version 1 made it
        db.execute("PRAGMA journal_mode=WAL")
        for statement in SCHEMA:
            db.execute(statement)
        db.execute(
            "INSERT INTO jobs (job_id, idempotency_key, route, state, record, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            ("old", old.idempotency_key, old.route, old.state, old.model_dump_json(), old.created_at.isoformat()),
        )
        db.execute("PRAGMA user_version=1")
    journal = Journal(path)
    assert journal.get("old") is not None and _user_version(path) == SCHEMA_VERSION == 2
    assert webhook_url_of(path, "old") is None
    set_webhook_url(path, "old", "https://hooks.example/x?token=t")
    assert webhook_url_of(Journal(path).path, "old") == "https://hooks.example/x?token=t"  # a reopen keeps it
    with contextlib.closing(sqlite3.connect(path)) as db:  # applied once: the column is there a single time
        columns = [row[1] for row in db.execute("PRAGMA table_info(jobs)")]
    assert columns.count("webhook_url") == 1


def test_a_version_1_journal_migrated_by_many_processes_at_once_migrates_once(tmp_path: Path) -> None:
    from latentsync_routes.journal_db import SCHEMA

    path = tmp_path / "jobs.sqlite3"
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode=WAL")
        for statement in SCHEMA:
            db.execute(statement)
        db.execute("PRAGMA user_version=1")
    context = multiprocessing.get_context("spawn")
    start = time.time() + 1.5
    workers = [context.Process(target=_open_and_claim, args=(str(path), start, f"k{i}")) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0] * 4 and _user_version(path) == SCHEMA_VERSION


def test_the_wal_switch_waits_for_a_writer_of_a_new_database(tmp_path: Path) -> None:
    """The two-process race made deterministic: while another connection holds the reserved lock of a new,
    rollback-mode file (as a second process's WAL switch or schema write does), SQLite refuses the WAL
    switch at once without calling the busy handler; the open must wait and succeed, not fail."""
    path = tmp_path / "jobs.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE early (x)")
    holder.execute("BEGIN IMMEDIATE")
    threading.Timer(0.5, lambda: (holder.execute("COMMIT"), holder.close())).start()
    journal = Journal(path)
    journal.save(record("a"))
    assert journal.get("a") is not None


def test_a_journal_locked_past_the_deadline_is_busy_not_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "jobs.sqlite3"
    Journal(path).save(record("a"))
    monkeypatch.setattr("latentsync_routes.journal_db.BUSY_TIMEOUT_S", 0.2)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(JournalBusy) as caught:
            Journal(path).save(record("b"))
        other.execute("ROLLBACK")
    message = str(caught.value)
    assert "nothing was lost" in message and "move" not in message and "damaged" not in message
    assert caught.value.exit_code == 4
    assert Journal(path).get("a") is not None  # the file was left alone


def test_a_new_journal_locked_past_the_deadline_is_busy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "jobs.sqlite3"
    monkeypatch.setattr("latentsync_routes.journal_db.BUSY_TIMEOUT_S", 0.2)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")  # a new, rollback-mode file: the WAL switch cannot happen
        with pytest.raises(JournalBusy):
            Journal(path)
        other.execute("ROLLBACK")


def test_a_damaged_journal_is_named_damaged_with_how_to_keep_it(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(JournalError) as caught:
        Journal(path)
    message = str(caught.value)
    assert "damaged" in message and f"{path}.damaged" in message and "keep it" in message
    assert caught.value.exit_code == 2 and path.read_bytes().startswith(b"this is not")


def test_an_error_on_a_sound_file_is_not_called_damaged(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    Journal(path).save(record("a"))
    verdict = diagnose(path, sqlite3.OperationalError("disk I/O error"))
    assert "damaged" not in str(verdict) and "keep it" in str(verdict) and "disk I/O error" in str(verdict)


@pytest.mark.parametrize("fresh", [True, False], ids=["new-journal", "old-journal"])
def test_cli_runs_a_batch_and_an_api_run_at_one_instant_make_one_provider_job(
    tmp_path: Path, fresh: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a relative folder, as the acceptance command's default is
    with cpu_load(2, seconds=600):
        for n in range(2):
            seen = run_round(Path(f"round{n}"), runs=4, fresh=fresh)
            assert seen.ok, seen
