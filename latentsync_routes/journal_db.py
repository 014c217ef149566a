"""Opening the journal's SQLite file safely when many processes start at the same instant.

Two things go wrong with a naive open. First, switching a new database to WAL needs an exclusive lock,
and SQLite answers ``SQLITE_BUSY`` at once, without calling the busy handler, when waiting could deadlock
(a connection holding a read lock that asks to write while another holds the pending lock: see "busy
handler" and "journal_mode" in SQLite's documentation). Two processes opening a brand-new journal together
can hit exactly that. So the WAL switch and the schema are done once, each retried with backoff inside
the busy deadline, the schema in a ``BEGIN IMMEDIATE`` transaction (the write lock is taken first, where
the busy handler does wait), and an open that finds both done (``journal_mode`` is ``wal`` and
``user_version`` is current) writes nothing at all.

Second, a lock is not damage. A busy journal is :class:`JournalBusy` (transient: run again, nothing was
lost); only a file that ``PRAGMA integrity_check`` finds damaged, or that is not a database, is
:class:`JournalError` with the advice to keep the old file aside; anything else is reported as it is,
without telling anyone to move the file that holds every job's record.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from .errors import JournalBusy, JournalError

#: Seconds a journal operation waits for another writer's lock before it gives up as :class:`JournalBusy`.
BUSY_TIMEOUT_S = 30.0
#: The schema's version, kept in SQLite's ``user_version``: an open that finds it current writes nothing.
#: 1: jobs and claims. 2: ``jobs.webhook_url``, the callback a job's submit sends (kept out of the record,
#: which is printed and exported, because a callback URL may carry a token).
SCHEMA_VERSION = 2
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6  # result codes (sqlite3 names them only from Python 3.11)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL,
    route TEXT NOT NULL,
    state TEXT NOT NULL,
    provider_request_id TEXT,
    record TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
)""",
    "CREATE INDEX IF NOT EXISTS jobs_key ON jobs (idempotency_key, created_at)",
    """CREATE TABLE IF NOT EXISTS claims (
    idempotency_key TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    heartbeat REAL NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
)""",
)


#: Each later version's changes, applied in order to a journal of an older version (never re-applied:
#: a column is added only where it is missing, inside the schema's write transaction).
MIGRATIONS: dict[int, tuple[tuple[str, str, str], ...]] = {
    2: (("jobs", "webhook_url", "TEXT"),),
}


def is_busy(exc: BaseException) -> bool:
    """Whether an SQLite error is a lock held by someone else (``SQLITE_BUSY`` / ``SQLITE_LOCKED``)."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    text = str(exc)
    return "locked" in text or "busy" in text


def busy_error(path: Path, waited_s: float) -> JournalBusy:
    return JournalBusy(
        f"the job journal {path} stayed locked by another process for {waited_s:.0f} s; nothing was lost: "
        "run the same command again (a job already claimed resumes where it stopped)"
    )


def diagnose(path: Path, exc: sqlite3.DatabaseError) -> JournalError:
    """Say what is wrong with the file: damaged (with how to keep it) only when SQLite itself says so."""
    if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
        verdict: str | None = str(exc)
    else:
        verdict = _integrity_problem(path)
    if verdict is None:
        return JournalError(
            f"the job journal {path} cannot be used ({exc}); the file itself passes SQLite's "
            "integrity check, so keep it: check the folder's permissions and free disk space"
        )
    return JournalError(
        f"the job journal {path} is damaged ({verdict}). It holds every job's record, so keep it: rename it "
        f"(mv '{path}' '{path}.damaged') and the next run starts a new journal; `sqlite3 '{path}.damaged' "
        ".recover` can often read the old records back"
    )


def _integrity_problem(path: Path) -> str | None:
    """SQLite's own verdict on the file: ``None`` when ``PRAGMA integrity_check`` answers ``ok``."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)) as db:
            rows = db.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        return None if is_busy(exc) else str(exc)
    found = [str(row[0]) for row in rows]
    return None if found == ["ok"] else "; ".join(found[:3])


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """One short-lived connection: busy timeout set, locks reported as :class:`JournalBusy`, damage diagnosed."""
    started = time.monotonic()
    try:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise JournalError(f"cannot open the job journal {path}: {exc}") from None
    try:
        db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        # WAL + NORMAL: each commit survives a crash or SIGKILL of the process (what resume needs);
        # only an OS crash or power loss could drop the last commits, and it saves an fsync per write.
        db.execute("PRAGMA synchronous=NORMAL")
        yield db
    except sqlite3.DatabaseError as exc:
        if is_busy(exc):
            raise busy_error(path, time.monotonic() - started) from None
        raise diagnose(path, exc) from None
    finally:
        db.close()


def initialise(path: Path, *, deadline_s: float | None = None) -> None:
    """Put the file in WAL mode with the current schema, once, whoever else is opening it right now.

    Each step is retried with jittered backoff on a busy database until ``deadline_s`` (the busy timeout
    by default); a file already initialised is only read.
    """
    deadline_s = BUSY_TIMEOUT_S if deadline_s is None else deadline_s
    give_up = time.monotonic() + deadline_s
    delay = 0.005
    while True:
        try:
            with connect(path) as db:
                _switch_to_wal(db, path)
                _create_schema(db)
            return
        except JournalBusy:
            if time.monotonic() + delay > give_up:
                raise busy_error(path, deadline_s) from None
        time.sleep(delay * (1 + random.random()))  # noqa: S311 - jitter, not security
        delay = min(delay * 2, 0.25)


def _switch_to_wal(db: sqlite3.Connection, path: Path) -> None:
    if str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
        return
    mode = str(db.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
    if mode != "wal":
        raise JournalError(
            f"the job journal {path} cannot use SQLite's WAL mode here (it stayed {mode!r}); "
            "LATENTSYNC_ROUTES_HOME must be on a local filesystem"
        )


def _create_schema(db: sqlite3.Connection) -> None:
    if int(db.execute("PRAGMA user_version").fetchone()[0]) >= SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        found = int(db.execute("PRAGMA user_version").fetchone()[0])  # another opener may have just done it
        if found < SCHEMA_VERSION:
            for statement in SCHEMA:
                db.execute(statement)
            _migrate(db, found)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _migrate(db: sqlite3.Connection, found: int) -> None:
    """Bring a journal of version ``found`` (0: before versions were kept) up to the current schema."""
    for version in sorted(v for v in MIGRATIONS if v > found):
        for table, column, kind in MIGRATIONS[version]:
            columns = {str(row[1]) for row in db.execute(f"PRAGMA table_info({table})")}
            if column not in columns:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


def set_webhook_url(path: Path, job_id: str, url: str) -> None:
    """Keep the callback URL of a job's submit with the job, so a resumed submit sends it too."""
    with connect(path) as db:
        db.execute("UPDATE jobs SET webhook_url = ? WHERE job_id = ?", (url, job_id))


def webhook_url_of(path: Path, job_id: str) -> str | None:
    """The callback URL kept for a job, if its submit was given one."""
    with connect(path) as db:
        row = db.execute("SELECT webhook_url FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
    return None if row is None or row[0] is None else str(row[0])
