"""What fal says it charged for one request: ``GET /v1/models/billing-events`` of fal's Platform API.

Source: https://fal.ai/docs/platform-apis/v1/models/billing-events (checked 2026-12-07; facts
``billing-events`` and ``billing-events-lag``). The call takes ``Authorization: Key <admin key>`` and the
filters ``request_id``, ``endpoint_id``, ``start`` (default 24 h ago; a range is capped at 90 days), ``end``,
``limit`` and ``cursor``; it answers ``{"billing_events": [{"request_id", "endpoint_id", "timestamp",
"output_units", "unit_price", "percent_discount", "cost_estimate_nano_usd"}], "next_cursor", "has_more"}``.

The charge is read in integer nano-dollars and rounded half-even to the micro-dollar, never through a
float sum. Whatever goes wrong here (a key without the admin scope, no event yet, a network failure) gives
no figure and a sentence saying why: the caller keeps the charge it had (the price book's rule, fal's
result headers, or the worst case) and records that it is not fal's own figure. A missing event is never
read as $0: fal does not document how soon an event appears, nor whether a request that cost nothing has one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ... import money
from ...errors import DeadlinePassed
from ...retry import json_or_none
from .errors import platform_error

if TYPE_CHECKING:
    import httpx

    from ..base import JobContext

DOCS = "https://fal.ai/docs/platform-apis/v1/models/billing-events"
#: Events are looked for from this long before the job's submit (clock skew between fal and us).
SKEW = timedelta(minutes=10)
#: fal caps a billing-events range at 90 days; an older submit is not looked for.
MAX_RANGE = timedelta(days=90)
#: At most this many pages (an id filter answers one event, or a few).
PAGES = 3


@dataclass(frozen=True)
class Charge:
    """fal's figure for one request (``amount``, exact to the micro-dollar) or ``None`` and why not."""

    amount: float | None
    note: str
    refused: bool = False


def event_micros(event: dict[str, Any]) -> int | None:
    """One event's charge in micro-dollars: ``cost_estimate_nano_usd`` (an integer), else ``output_units``
    x ``unit_price`` less ``percent_discount``, computed in decimal; ``None`` when neither is readable."""
    nano = event.get("cost_estimate_nano_usd")
    if isinstance(nano, int) and not isinstance(nano, bool):
        return money.micros(Decimal(nano) / 1000 / money.MICROS)
    units, price = _number(event.get("output_units")), _number(event.get("unit_price"))
    if units is None or price is None:
        return None
    off = _number(event.get("percent_discount")) or Decimal(0)
    return money.micros(units * price * (100 - off) / 100)


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return money.exact(value)


def charge_for(
    http: httpx.Client, base: str, endpoint: str, request_id: str, *, since: datetime | None, timeout: Any
) -> Charge:
    """fal's billing events for ``request_id``, summed exactly; a refusal or a miss says why."""
    import httpx

    start = (since or datetime.now(timezone.utc)) - SKEW
    if datetime.now(timezone.utc) - start > MAX_RANGE:
        return Charge(None, f"the request is older than fal's 90-day billing-events range ({DOCS})")
    params = {"request_id": request_id, "endpoint_id": endpoint, "start": start.strftime("%Y-%m-%dT%H:%M:%SZ")}
    found: list[int | None] = []
    for _ in range(PAGES):
        try:
            response = http.get(f"{base}/v1/models/billing-events", params=params, timeout=timeout)
        except (httpx.HTTPError, DeadlinePassed) as exc:  # never fails the job: the charge it had stays
            return Charge(None, f"fal's billing events could not be read ({type(exc).__name__})")
        data = json_or_none(response)
        if response.status_code in (401, 403):
            kind, message = platform_error(data)
            said = f": {kind or 'error'}: {str(message)[:160]}" if message else ""
            note = f"fal refused its billing events (HTTP {response.status_code}{said}; they need an admin key)"
            return Charge(None, note, refused=True)
        events = data.get("billing_events") if isinstance(data, dict) else None
        if response.status_code >= 400 or not isinstance(events, list):
            return Charge(None, f"fal's billing events answered HTTP {response.status_code} without events")
        found += [event_micros(e) for e in events if isinstance(e, dict) and e.get("request_id") == request_id]
        cursor = data.get("next_cursor") if isinstance(data, dict) and data.get("has_more") else None
        if not cursor:
            break
        params["cursor"] = str(cursor)
    if not found:
        return Charge(None, f"fal's billing events list no charge for request {request_id} yet")
    if any(m is None for m in found):
        return Charge(None, f"fal's billing event for request {request_id} carries no readable cost")
    amount = money.from_micros(sum(m for m in found if m is not None))
    events = "event" if len(found) == 1 else f"{len(found)} events"
    return Charge(amount, f"fal's billing {events} for request {request_id}: ${amount:.6f}")


def record_charge(job: JobContext, charge: Charge) -> None:
    """Keep fal's figure (or why there is none) on the job's cost, beside the charge recorded."""
    update = {"provider_charge": charge.amount, "provider_charge_note": charge.note}
    job.mark(cost=job.record.cost.model_copy(update=update))
