"""A durable SQLite journal of jobs and of who owns each one, so a job is paid for once and never lost.

Two tables. ``jobs`` holds one row per job (the :class:`JobRecord` as JSON, plus the columns queries need).
``claims`` holds at most one row per idempotency key: the owner running that job now, with a heartbeat.
A job is claimed *before* anything leaves the machine, in one ``BEGIN IMMEDIATE`` transaction, so two
threads or two processes with the same key can never both upload and submit: the second one waits for the
first and then finds the job finished (and returns its result) or resumable (and carries it on). An owner
whose heartbeat is older than the lease, or whose process is gone from this host, is dead, and its job is
taken over where it stopped. Every write of an owned job checks the claim in the same statement, so an
owner whose claim was taken over can no longer write (it raises :class:`ClaimLost`).

A cancel is handed over through the claim: ``request_cancel`` asks the owner, the owner takes the cancel on
(a claim-checked write), and the caller cancelling waits for it. That caller judges the owner only by what
it sees itself (see :class:`.owners.CancelWatch`), so it never takes over an owner that is carrying the cancel out.
WAL mode and a busy timeout make it safe for several processes at once; each operation opens its own
short-lived connection (:mod:`.journal_db` opens the file, once switches it to WAL and creates the schema).
A lock held too long raises :class:`JournalBusy` (transient); a damaged file :class:`JournalError` (exit 2).
"""

from __future__ import annotations

import builtins
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date
from os.path import commonprefix
from pathlib import Path

from .budget import BudgetCap
from .errors import ClaimLost, ClaimTimeout, ConfigurationError, JournalBusy, JournalError
from .journal_db import connect, initialise
from .money import from_micros
from .owners import CANCEL_ASKED, CANCEL_NONE, CANCEL_TAKEN, CancelWatch, new_owner, owner_dead
from .spend import SpendRow
from .types import JobRecord

#: Per route, day and currency: jobs, then estimated, actual and failure-billed cost summed in integer
#: micro-dollars (exact, as :data:`.money.MICROS`), then the jobs without an actual cost.
_SPEND_SUMS = """SELECT route, substr(created_at, 1, 10) AS day,
    coalesce(json_extract(record, '$.cost.currency'), 'USD') AS currency, count(*),
    coalesce(sum(CAST(round(json_extract(record, '$.cost.estimated') * 1000000) AS INTEGER)), 0),
    coalesce(sum(CAST(round(json_extract(record, '$.cost.actual') * 1000000) AS INTEGER)), 0),
    coalesce(sum(CAST(round(json_extract(record, '$.cost.billed_failures') * 1000000) AS INTEGER)), 0),
    sum(json_extract(record, '$.cost.actual') IS NULL),
    coalesce(json_extract(record, '$.sandbox'), 0) AS sandbox,
    sum(state = 'fetched' AND json_extract(record, '$.sync_scores.gate') IS NOT 'failed-quality') FROM jobs"""
#: The fewest characters of a job id accepted as a prefix of it.
MIN_PREFIX = 6
TERMINAL_OK = "fetched"
TERMINAL_BAD = ("failed", "cancelled")
#: Seconds without a heartbeat after which an owner on another host (or a hung one) counts as dead.
LEASE_S = 30.0
#: Seconds between two checks of a claim held by someone else.
WAIT_POLL_S = 0.1


@dataclass
class Claim:
    """This caller's hold on one job: keep it alive with :meth:`start_heartbeat`, give it back with release."""

    journal: Journal
    key: str
    job_id: str
    owner: str
    took_over: bool = False
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    def start_heartbeat(self, lease_s: float | None = None) -> None:
        """Renew the claim every third of the lease from a daemon thread, so a live owner is never taken over."""
        every = (LEASE_S if lease_s is None else lease_s) / 3

        def beat() -> None:
            while not self._stop.wait(every):
                try:
                    self.journal.renew(self)
                except (sqlite3.Error, JournalError, JournalBusy):  # must not end the beats; the next one retries
                    continue

        self._thread = threading.Thread(target=beat, name=f"latentsync-claim-{self.job_id[:8]}", daemon=True)
        self._thread.start()

    def cancel_requested(self) -> bool:
        """Whether someone (``jobs cancel``, any process) asked this owner to cancel its job; a ``True`` takes
        the cancel on, so the caller cancelling waits for this owner to carry it out.

        An owner that lost its claim gets ``True`` when the job is being cancelled all the same (by the caller
        that holds it now; this one's next write raises :class:`ClaimLost`), ``False`` otherwise.
        """
        return self.journal.take_cancel(self)

    def release(self) -> None:
        """Stop the heartbeat and give the claim back, so the next caller need not wait out the lease."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.journal.release(self)
        except (sqlite3.Error, JournalError, JournalBusy):  # the lease runs out; a later caller takes the job over
            pass


class Journal:
    """The job journal at ``path`` (created on first use): records, claims, and what the jobs cost."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        initialise(self.path)

    def _connect(self) -> AbstractContextManager[sqlite3.Connection]:
        return connect(self.path)

    # -- claims --------------------------------------------------------------------------------------
    def claim(
        self,
        key: str,
        make_record: Callable[[], JobRecord],
        *,
        owner: str | None = None,
        wait_s: float = 24 * 3600.0,
        lease_s: float | None = None,
        on_wait: Callable[[str], None] | None = None,
        for_cancel: bool = False,
        budget: BudgetCap | None = None,
    ) -> tuple[Claim, JobRecord]:
        """Own the job of ``key`` (creating its record if there is none), waiting while a live owner holds it.

        Returns the claim and the job's current record: new, finished, failed or part-way, for the caller to
        decide what to do with it. Raises :class:`ClaimTimeout` after ``wait_s`` of waiting. ``for_cancel``:
        the caller asked the owner to cancel (``request_cancel``) and judges it as :class:`.owners.CancelWatch` says.
        ``budget``: a new job's record is created only if its worst case fits under the cap, checked in the
        same transaction (:class:`.budget.BudgetCap`; raises :class:`BudgetExceeded`).
        """
        owner = owner or new_owner()
        lease = LEASE_S if lease_s is None else lease_s
        watch = CancelWatch(lease) if for_cancel else None
        give_up = time.monotonic() + wait_s
        told = False
        while True:
            with self._connect() as db:
                db.execute("BEGIN IMMEDIATE")
                try:
                    found = self._try_claim(db, key, owner, lease, make_record, watch, budget)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            if found is not None:
                record, took_over = found
                return Claim(self, key, record.job_id, owner, took_over=took_over), record
            if not told and on_wait is not None:
                on_wait(key)
                told = True
            if time.monotonic() > give_up:
                if for_cancel:
                    raise ClaimTimeout(
                        f"the caller running the job (key {key}) has not ended it within {wait_s:g} s "
                        "of the cancel request; the request stays recorded for it"
                    )
                raise ClaimTimeout(
                    f"another caller has been running the same job (key {key}) for longer than "
                    f"{wait_s:g} s; wait for it or resume it later"
                )
            time.sleep(WAIT_POLL_S)

    def _try_claim(
        self,
        db: sqlite3.Connection,
        key: str,
        owner: str,
        lease_s: float,
        make_record: Callable[[], JobRecord],
        watch: CancelWatch | None = None,
        budget: BudgetCap | None = None,
    ) -> tuple[JobRecord, bool] | None:
        row = db.execute(
            "SELECT job_id, owner, heartbeat, cancel_requested FROM claims WHERE idempotency_key = ?", (key,)
        ).fetchone()
        took_over, cancel = False, CANCEL_NONE
        if row is not None:
            owner_now, beat, asked = row[1], row[2], row[3]
            dead = watch.owner_dead(owner_now, beat, asked) if watch else owner_dead(owner_now, beat, lease_s)
            if not dead:
                return None
            took_over = True
            cancel = CANCEL_ASKED if row[3] else CANCEL_NONE  # a cancel asked of the dead owner is asked of this one
            db.execute("DELETE FROM claims WHERE idempotency_key = ?", (key,))
        latest = db.execute(
            "SELECT record FROM jobs WHERE idempotency_key = ? ORDER BY created_at DESC LIMIT 1", (key,)
        ).fetchone()
        if latest is not None:
            record = JobRecord.model_validate_json(latest[0])
        else:
            if budget is not None:
                budget.admit(db)
            record = make_record()
            self._write(db, record)
        db.execute(
            "INSERT INTO claims (idempotency_key, job_id, owner, heartbeat, cancel_requested) VALUES (?, ?, ?, ?, ?)",
            (key, record.job_id, owner, time.time(), cancel),
        )
        return record, took_over

    def claim_job(self, job_id: str, **kwargs: object) -> tuple[Claim, JobRecord]:
        """Claim an existing job by its id (``resume``, ``cancel``)."""
        record = self.get(job_id)
        if record is None:
            raise ConfigurationError(f"no job {job_id!r} in the journal at {self.path}")
        return self.claim(record.idempotency_key, lambda: record, **kwargs)  # type: ignore[arg-type]

    def renew(self, claim: Claim) -> None:
        """One heartbeat of ``claim`` (:meth:`Claim.start_heartbeat`): its owner lives, so nobody takes it over."""
        with self._connect() as db:
            db.execute(
                "UPDATE claims SET heartbeat = ? WHERE idempotency_key = ? AND owner = ?",
                (time.time(), claim.key, claim.owner),
            )

    def release(self, claim: Claim) -> None:
        """Give ``claim`` back (:meth:`Claim.release`): the next caller need not wait out the lease."""
        with self._connect() as db:
            db.execute("DELETE FROM claims WHERE idempotency_key = ? AND owner = ?", (claim.key, claim.owner))

    def request_cancel(self, key: str) -> bool:
        """Ask the live owner of ``key`` to cancel its job; False when nobody holds it."""
        with self._connect() as db:
            changed = db.execute(
                "UPDATE claims SET cancel_requested = max(cancel_requested, ?) WHERE idempotency_key = ?",
                (CANCEL_ASKED, key),
            ).rowcount
        return bool(changed)

    def take_cancel(self, claim: Claim) -> bool:
        """The owner's cancel check (:meth:`Claim.cancel_requested`): a cancel asked of it is taken on in one
        claim-checked write, which also renews the heartbeat."""
        with self._connect() as db:
            row = db.execute(
                "SELECT owner, cancel_requested FROM claims WHERE idempotency_key = ?", (claim.key,)
            ).fetchone()
            if row is not None and row[0] == claim.owner:
                if row[1] != CANCEL_ASKED:
                    return bool(row[1])
                taken = db.execute(
                    "UPDATE claims SET cancel_requested = ?, heartbeat = ? WHERE idempotency_key = ? AND owner = ?",
                    (CANCEL_TAKEN, time.time(), claim.key, claim.owner),
                ).rowcount
                if taken:
                    return True
                row = db.execute(
                    "SELECT owner, cancel_requested FROM claims WHERE idempotency_key = ?", (claim.key,)
                ).fetchone()  # taken over between the two statements
            # this owner lost its claim: is the job being cancelled all the same?
            state = db.execute("SELECT state FROM jobs WHERE job_id = ?", (claim.job_id,)).fetchone()
        return bool(row and row[1]) or bool(state and state[0] == "cancelled")

    def cancel_requested(self, key: str) -> bool:
        """Whether a cancel was requested for the claimed job of ``key``."""
        with self._connect() as db:
            row = db.execute("SELECT cancel_requested FROM claims WHERE idempotency_key = ?", (key,)).fetchone()
        return bool(row and row[0])

    def owner_of(self, key: str) -> str | None:
        """The owner token holding ``key`` now, or ``None`` when nobody holds it."""
        with self._connect() as db:
            row = db.execute("SELECT owner FROM claims WHERE idempotency_key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def move_claim_to_new_job(self, claim: Claim, record: JobRecord, budget: BudgetCap | None) -> None:
        """Write ``record`` as a new job of the claimed key (``new_job``) and move ``claim`` onto it, in one
        transaction that checks the claim is still held and that ``budget`` admits the job."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                held = "SELECT 1 FROM claims WHERE idempotency_key = ? AND owner = ?"
                if db.execute(held, (claim.key, claim.owner)).fetchone() is None:
                    raise ClaimLost(f"job {claim.job_id} was taken over by another caller; this one stops")
                if budget is not None:
                    budget.admit(db)
                self._write(db, record)
                db.execute("UPDATE claims SET job_id = ? WHERE idempotency_key = ?", (record.job_id, claim.key))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        claim.job_id = record.job_id

    def committed(self, budget: BudgetCap) -> int:
        """Micro-dollars the jobs of ``budget``'s period are committed to (the ``budget_total`` row of ``check``)."""
        with self._connect() as db:
            return budget.committed(db)

    # -- records -------------------------------------------------------------------------------------
    @staticmethod
    def _write(db: sqlite3.Connection, record: JobRecord) -> int:
        cursor = db.execute(
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
        return cursor.rowcount

    def save(self, record: JobRecord, *, owner: str | None = None) -> None:
        """Insert or update one job; with ``owner``, only while that owner still holds the job's claim."""
        with self._connect() as db:
            if owner is None:
                self._write(db, record)
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                held = db.execute(
                    "SELECT 1 FROM claims WHERE idempotency_key = ? AND owner = ?", (record.idempotency_key, owner)
                ).fetchone()
                if held is None:
                    raise ClaimLost(
                        f"job {record.job_id} was taken over by another caller; this one stops",
                        route=record.route,
                        request_id=record.provider_request_id,
                    )
                self._write(db, record)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def get(self, job_id: str) -> JobRecord | None:
        """One job's record by its id, or ``None``."""
        with self._connect() as db:
            row = db.execute("SELECT record FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return JobRecord.model_validate_json(row[0]) if row else None

    def resolve(self, id_or_prefix: str) -> str:
        """The full id of the one job whose id is ``id_or_prefix`` or starts with it (at least
        :data:`MIN_PREFIX` characters, as git takes commit ids); a typed error names what is wrong."""
        given = id_or_prefix.strip()
        with self._connect() as db:
            if db.execute("SELECT 1 FROM jobs WHERE job_id = ?", (given,)).fetchone():
                return given
            if len(given) < MIN_PREFIX:
                raise ConfigurationError(
                    f"no job {given!r} in the journal at {self.path} (a prefix of a job id "
                    f"needs at least {MIN_PREFIX} characters)"
                )
            rows = db.execute(
                "SELECT job_id FROM jobs WHERE substr(job_id, 1, ?) = ? ORDER BY job_id LIMIT 4", (len(given), given)
            ).fetchall()
        if not rows:
            raise ConfigurationError(f"no job {given!r} in the journal at {self.path}")
        if len(rows) > 1:
            shown = ", ".join(str(r[0]) for r in rows[:3]) + (", ..." if len(rows) > 3 else "")
            raise ConfigurationError(f"{given!r} starts more than one job id ({shown}); give more characters")
        return str(rows[0][0])

    def find(self, id_or_prefix: str) -> JobRecord:
        """One job's record by its id or a unique prefix of it; a typed error when there is no such one job."""
        job_id = self.resolve(id_or_prefix)
        record = self.get(job_id)
        if record is None:  # removed between the two reads: only by hand, the journal never deletes jobs
            raise ConfigurationError(f"no job {job_id!r} in the journal at {self.path}")
        return record

    def prefix_length(self, job_ids: Iterable[str]) -> int:
        """The fewest characters (at least 8) that tell each of ``job_ids`` apart from every job in the journal."""
        with self._connect() as db:
            every = sorted(str(r[0]) for r in db.execute("SELECT job_id FROM jobs"))
        wanted, length = set(job_ids), 8
        for before, after in zip(every, every[1:], strict=False):
            if before in wanted or after in wanted:
                shared = len(commonprefix([before, after]))
                length = max(length, shared + 1)
        return length

    def find_latest(self, idempotency_key: str) -> JobRecord | None:
        """The newest job with this key, whatever its state."""
        with self._connect() as db:
            row = db.execute(
                "SELECT record FROM jobs WHERE idempotency_key = ? ORDER BY created_at DESC LIMIT 1",
                (idempotency_key,),
            ).fetchone()
        return JobRecord.model_validate_json(row[0]) if row else None

    def list(self, *, limit: int = 50, state: str | None = None, route: str | None = None) -> list[JobRecord]:
        """The newest jobs first, optionally only one route's or one state's."""
        clauses, args = [], []
        if state:
            clauses.append("state = ?")
            args.append(state)
        if route:
            clauses.append("route = ?")
            args.append(route)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connect() as db:
            rows = db.execute(
                f"SELECT record FROM jobs{where} ORDER BY created_at DESC LIMIT ?",  # noqa: S608
                (*args, limit),
            ).fetchall()
        return [JobRecord.model_validate_json(r[0]) for r in rows]

    def spend(self, *, route: str | None = None, since: date | None = None) -> builtins.list[SpendRow]:
        """Sums of estimated, actual and failure-billed cost per route and per day (oldest day first)."""
        clauses: list[str] = []
        args: list[str] = []
        if route:
            clauses.append("route = ?")
            args.append(route)
        if since is not None:
            clauses.append("substr(created_at, 1, 10) >= ?")
            args.append(since.isoformat())
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        query = f"{_SPEND_SUMS}{where} GROUP BY route, day, currency, sandbox ORDER BY day, route, sandbox"  # noqa: S608 - values are bound
        with self._connect() as db:
            rows = db.execute(query, args).fetchall()
        return [
            SpendRow(
                route=r[0],
                day=date.fromisoformat(r[1]),
                currency=r[2],
                jobs=r[3],
                estimated=from_micros(r[4]),
                actual=from_micros(r[5]),
                billed_failures=from_micros(r[6]),
                without_actual=r[7],
                sandbox=bool(r[8]),
                accepted=r[9],
            )
            for r in rows
        ]
