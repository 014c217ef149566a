from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

from latentsync_routes import __version__
from latentsync_routes.journal import Journal, append_jsonl
from latentsync_routes.types import Cost, JobRecord


def record(job_id: str, key: str = "k", state: str = "created") -> JobRecord:
    return JobRecord(
        job_id=job_id, idempotency_key=key, state=state, route="fal", route_owner="fal", billing_owner="me",  # type: ignore[arg-type]
        model="fal-ai/latentsync", model_version="v", upload_destination="cdn", retention_policy="7d",
        deletion_policy="expiry", cost=Cost(estimated=0.2), library_version=__version__,
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


def test_find_live_skips_failed(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    journal.save(record("old", state="failed"))
    assert journal.find_live("k") is None
    journal.save(record("new", state="submitted"))
    live = journal.find_live("k")
    assert live is not None and live.job_id == "new"


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
