"""``budget_total``: a cap over what the journal's jobs of a period may cost, in every process at once.

A cap kept in one process's memory lets a second process (or yesterday's runs) spend past it. So the cap
is read from the journal: every job created in the period counts at what it is known to have cost
(actual, failure-billed, and unknown charges at their worst case), and a job still in flight at its
estimate's high end. The check and the new job's record are written in the same ``BEGIN IMMEDIATE``
transaction (:meth:`.journal.Journal.claim`), so two processes can never both pass a cap that only one
job fits under. Jobs run against a base-URL override (``sandbox``) are not real money: they count only
against the cap of other sandbox jobs, so a budget can be tried out on the fakes without touching the
real one.

Periods are UTC: ``day`` (since midnight), ``month`` (since the 1st, the default: providers bill monthly)
or ``all``. Sums are in integer micro-dollars (:mod:`.money`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from . import money
from .errors import BudgetExceeded

BudgetPeriod = Literal["day", "month", "all"]

#: What the jobs created since ``?`` are committed to, in micro-dollars: a finished job at its known cost
#: (a fetched one without an actual cost at its estimate), a job in flight at its worst case.
_COMMITTED = """SELECT coalesce(sum(CAST(round(
    CASE WHEN state IN ('fetched', 'failed', 'cancelled') THEN
        coalesce(json_extract(record, '$.cost.actual'),
                 CASE WHEN state = 'fetched' THEN json_extract(record, '$.cost.estimated') ELSE 0 END)
        + coalesce(json_extract(record, '$.cost.billed_failures'), 0)
        + coalesce(json_extract(record, '$.cost.billed_unknown'), 0)
    ELSE max(coalesce(json_extract(record, '$.cost.estimated_high'), json_extract(record, '$.cost.estimated'), 0),
             coalesce(json_extract(record, '$.cost.actual'), 0)
             + coalesce(json_extract(record, '$.cost.billed_failures'), 0)
             + coalesce(json_extract(record, '$.cost.billed_unknown'), 0))
    END * 1000000) AS INTEGER)), 0)
FROM jobs WHERE created_at >= ? AND coalesce(json_extract(record, '$.sandbox'), 0) = ?"""


def period_start(period: BudgetPeriod, now: datetime | None = None) -> str:
    """The ISO timestamp the period began at (UTC), as the journal's ``created_at`` compares; ``""`` for all."""
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    if period == "all":
        return ""
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        start = start.replace(day=1)
    return start.isoformat()


def period_words(period: BudgetPeriod) -> str:
    return {"day": "today (UTC)", "month": "this month (UTC)", "all": "in the journal"}[period]


@dataclass(frozen=True)
class BudgetCap:
    """``budget_total`` over ``period``, and the worst case of the job asking to be let under it."""

    total: float
    period: BudgetPeriod
    worst_case: float
    route: str | None = None
    #: the job runs against a base-URL override: only sandbox jobs count towards its cap
    sandbox: bool = False

    def committed(self, db: sqlite3.Connection) -> int:
        """Micro-dollars the period's jobs are committed to, read inside the caller's transaction."""
        return int(db.execute(_COMMITTED, (period_start(self.period), int(self.sandbox))).fetchone()[0])

    def problem(self, committed_micros: int) -> str | None:
        """Why this job does not fit under the cap, or ``None`` when it does."""
        after = committed_micros + money.micros(self.worst_case)
        if after <= money.micros(self.total):
            return None
        kind = "sandbox jobs" if self.sandbox else "jobs"
        return (
            f"this job may cost up to ${self.worst_case:.4f}; the journal's {kind} {period_words(self.period)} "
            f"are committed to ${money.from_micros(committed_micros):.4f} of the budget_total of "
            f"${self.total:.4f} (budget_period={self.period})"
        )

    def admit(self, db: sqlite3.Connection) -> None:
        """Raise :class:`BudgetExceeded` (exit 5) unless this job fits; called where its record is created."""
        problem = self.problem(self.committed(db))
        if problem is not None:
            raise BudgetExceeded(problem, route=self.route, amount=self.worst_case, cap=self.total)
