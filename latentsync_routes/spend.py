"""What the journal's jobs cost, per route and day, and what each *accepted* job cost.

A job under the quality gate (``min_sync_confidence``) was paid for all the same, so what a usable output
really costs is the money spent divided by the jobs whose output was accepted: fetched and not
failed-quality (a job that was never gated counts as accepted). Exact: micro-dollars, divided once and
rounded half-even to the micro-dollar.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal

from pydantic import BaseModel, computed_field

from .money import from_micros, micros, total

__all__ = ["SpendRow", "per_accepted_job"]


def per_accepted_job(spent: float, accepted: int) -> float | None:
    """``spent`` over ``accepted`` jobs, to the micro-dollar (half-even); ``None`` when none was accepted."""
    if accepted <= 0:
        return None
    share = (Decimal(micros(spent)) / accepted).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    return from_micros(int(share))


class SpendRow(BaseModel):
    """What one route's jobs of one day (UTC, by creation) cost: estimated before, actual after, and what
    failed provider jobs were billed. ``without_actual`` counts jobs with no actual cost recorded (not
    finished, failed, or a provider that did not say), whose cost is then not in ``actual``."""

    route: str
    day: date
    currency: str
    jobs: int
    estimated: float
    actual: float
    billed_failures: float
    without_actual: int
    #: jobs run against a base-URL override (the fakes, a gateway under test): not real money
    sandbox: bool = False
    #: fetched jobs not marked failed-quality by the ``min_sync_confidence`` gate
    accepted: int = 0

    @property
    def spent(self) -> float:
        """Actual plus failure-billed: what is known to have been charged."""
        return total([self.actual, self.billed_failures])

    @computed_field  # type: ignore[prop-decorator]
    @property
    def per_accepted_job(self) -> float | None:
        """Spent (actual + failure-billed) over accepted jobs: what a usable output cost."""
        return per_accepted_job(self.spent, self.accepted)
