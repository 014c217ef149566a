"""What a fal job cost: the price book's rule on the output, fal's raw billable units, and what a cancelled
request was billed (read from its result's headers after it ended).

Its own module so the fal route stays its single tries of each step. The rule for the record: the actual
is the price book's rule on the downloaded output's length; ``x-fal-billable-units`` is kept raw with what
it prices at, and a disagreement between the two is flagged (fal does not document what one unit of
``fal-ai/latentsync`` is). A charge fal did not report is ``None`` here: the template records its worst
case, never $0.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...pricing import compare_with_rule, fal_cost_for_seconds, fal_units_cost, price_book
from ...types import MediaSource
from .errors import billable_units

if TYPE_CHECKING:
    import httpx

    from ..base import JobContext


def keep_units(job: JobContext, units: float | None) -> None:
    """Record fal's raw ``x-fal-billable-units`` on the job's cost."""
    job.mark(cost=job.record.cost.model_copy(update={"billable_units": units}))


def settle_from_result(http: httpx.Client, url: str, job: JobContext, *, timeout: Any) -> tuple[float | None, str]:
    """One GET of an ended request's result: its ``x-fal-billable-units`` are what fal billed."""
    import httpx

    try:
        response = http.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return None, f"reading the request's result failed ({type(exc).__name__})"
    units = billable_units(response)
    if units is None:
        return None, f"fal's result (HTTP {response.status_code}) reported no x-fal-billable-units"
    keep_units(job, units)
    cost = fal_units_cost(units)
    return cost, f"fal reported x-fal-billable-units {units:g} = ${cost:.4f}"


def price_output(job: JobContext, path: Path) -> tuple[float, str]:
    """The actual (the rule on the output's length) and its basis; units and a disagreement on the record."""
    from ...media import probe

    seconds = probe(MediaSource(kind="path", path=path), with_hash=False).duration
    cost = fal_cost_for_seconds(seconds)
    basis = f"the price book's rule on the {seconds:.2f} s output = ${cost:.4f}"
    units = job.record.cost.billable_units
    if units is None:
        job.mark(cost=job.record.cost.model_copy(update={"units_cost": None, "disagreement": None}))
        return cost, f"{basis}; fal sent no x-fal-billable-units"
    units_cost = fal_units_cost(units)
    flag = compare_with_rule(cost, units_cost)
    job.mark(cost=job.record.cost.model_copy(update={"units_cost": units_cost, "disagreement": flag}))
    price = price_book()["fal"]["billable_unit_price"]
    return cost, f"{basis}; fal reported x-fal-billable-units {units:g} (x ${price}/unit = ${units_cost:.4f})"
