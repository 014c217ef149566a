"""A client's budget while its jobs run: each job's worst case held until the job ends, then what it cost.

``run`` holds a job's worst case for the call. ``submit`` returns while the provider still runs the job, so
its worst case stays held until a handle of the same client (``wait``, ``status``) or a webhook sees the job
end; a job submitted here and finished in another process stays held here, the cautious reading.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import money
from .errors import LatentSyncError
from .journal import TERMINAL_BAD, TERMINAL_OK, Journal
from .pricing import check_budget

if TYPE_CHECKING:
    from .config import Settings
    from .types import CostEstimate, JobRecord


@dataclass
class Hold:
    """A job's worst case held against the budget, and the job it became once claimed."""

    micros: int
    job_id: str | None = None


class BudgetHolds:
    """Worst cases held and costs spent by one client's jobs, in integer micro-dollars (:mod:`.money`)."""

    def __init__(self, settings: Callable[[], Settings], journal: Callable[[], Journal]) -> None:
        self._settings = settings
        self._journal = journal
        self._lock = threading.Lock()
        self._reserved = 0  # worst-case estimates of jobs in flight
        self._spent = 0  # actual and failure-billed cost of the jobs this client ran
        self._held: dict[str, int] = {}  # worst cases of submitted jobs not yet seen ending, by job id

    @contextmanager
    def hold(self, estimate: CostEstimate, *, keep: bool = False) -> Iterator[Hold]:
        """Check the budget and hold the job's worst case while the block runs; with ``keep`` (``submit``),
        until :meth:`settle` sees the job end. Set ``Hold.job_id`` in the block."""
        with self._lock:
            settings = self._settings()
            total = settings.budget_total
            remaining = None if total is None else money.from_micros(money.micros(total) - self._spent - self._reserved)
            check_budget(estimate, per_call=settings.budget_per_call, remaining=remaining)
            self._reserved += money.micros(estimate.high)
        hold = Hold(money.micros(estimate.high))
        job_id: str | None = None
        try:
            yield hold
            job_id = hold.job_id
        except LatentSyncError as exc:
            job_id = exc.job_id
            raise
        finally:
            record = self._journal().get(job_id) if job_id else None
            if keep and record is not None and not ended(record):
                with self._lock:
                    self._held[record.job_id] = hold.micros
            else:
                self._release(hold.micros, record)

    def settle(self, job_id: str) -> None:
        """A job held by ``submit`` ended: its worst case gives way to what it cost."""
        record = self._journal().get(job_id)
        if record is None or not ended(record):
            return  # still running somewhere: its worst case stays held
        with self._lock:
            held = self._held.pop(job_id, None)
        if held is not None:
            self._release(held, record)

    def _release(self, held: int, record: JobRecord | None) -> None:
        with self._lock:
            self._reserved -= held
            if record is not None:  # what the job actually cost, failed attempts included
                self._spent += money.micros(record.cost.worst_case())  # unknown charges at their worst case


def ended(record: JobRecord) -> bool:
    return record.state == TERMINAL_OK or record.state in TERMINAL_BAD
