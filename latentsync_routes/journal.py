"""A durable SQLite journal of jobs, so a paid result is never lost and never paid for twice.

The provider request id is written *before* the wait starts; a process killed mid-wait leaves a row in
state ``submitted`` that ``resume`` (or a second ``run`` with the same idempotency key) picks up instead of
submitting again. WAL mode and a busy timeout make it safe for several processes and threads at once: each
operation opens its own short-lived connection.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .types import JobRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL,
    route TEXT NOT NULL,
    state TEXT NOT NULL,
    provider_request_id TEXT,
    record TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS jobs_key ON jobs (idempotency_key, created_at);
"""

TERMINAL_OK = "fetched"
TERMINAL_BAD = ("failed", "cancelled")


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout=30000")
            # WAL + NORMAL: each commit survives a crash or SIGKILL of the process (what resume needs);
            # only an OS crash or power loss could drop the last commits, and it saves an fsync per write.
            db.execute("PRAGMA synchronous=NORMAL")
            yield db
        finally:
            db.close()

    def save(self, record: JobRecord) -> None:
        """Insert or update one job (atomic; last writer wins for the same job)."""
        with self._connect() as db:
            db.execute(
                "INSERT INTO jobs (job_id, idempotency_key, route, state, provider_request_id, record, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(job_id) DO UPDATE SET state=excluded.state, "
                "provider_request_id=excluded.provider_request_id, record=excluded.record, "
                "updated_at=CURRENT_TIMESTAMP",
                (
                    record.job_id,
                    record.idempotency_key,
                    record.route,
                    record.state,
                    record.provider_request_id,
                    record.model_dump_json(),
                    record.created_at.isoformat(),
                ),
            )

    def get(self, job_id: str) -> JobRecord | None:
        with self._connect() as db:
            row = db.execute("SELECT record FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return JobRecord.model_validate_json(row[0]) if row else None

    def find_live(self, idempotency_key: str) -> JobRecord | None:
        """The newest job with this key that did not fail: the one a repeated ``run`` must reuse."""
        placeholders = ",".join("?" for _ in TERMINAL_BAD)
        with self._connect() as db:
            row = db.execute(
                f"SELECT record FROM jobs WHERE idempotency_key = ? AND state NOT IN ({placeholders}) "  # noqa: S608
                "ORDER BY created_at DESC LIMIT 1",
                (idempotency_key, *TERMINAL_BAD),
            ).fetchone()
        return JobRecord.model_validate_json(row[0]) if row else None

    def list(self, *, limit: int = 50, state: str | None = None) -> list[JobRecord]:
        query = "SELECT record FROM jobs"
        args: tuple[object, ...] = ()
        if state:
            query += " WHERE state = ?"
            args = (state,)
        query += " ORDER BY created_at DESC LIMIT ?"
        with self._connect() as db:
            rows = db.execute(query, (*args, limit)).fetchall()
        return [JobRecord.model_validate_json(r[0]) for r in rows]


def append_jsonl(path: Path, record: JobRecord) -> None:
    """Append one record as a JSON line (the optional log-shipping sink)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(json.loads(record.model_dump_json()), sort_keys=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
