"""The journal as the page shows it: one row per job, and what was spent per route per day as an SVG chart.

Spend is computed here from the records themselves (``journal.list()``), so the chart needs no other API:
a job's spend is its actual cost, or its estimate when it finished without a billed figure, plus what its
failed attempts were billed. The chart is a plain inline SVG (no plotting library, no network), its text
escaped, so a route name or a date can never become markup.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from html import escape

from ..types import JobRecord

HISTORY_HEADERS = ["job", "route", "state", "cost", "date"]

#: One colour per route, in order of first appearance (colour-blind safe palette).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")


def job_cost(record: JobRecord) -> tuple[float, bool]:
    """What the job cost and whether that figure is the provider's own (False: the estimate stands in)."""
    if record.cost.actual is not None:
        return record.cost.actual + record.cost.billed_failures, True
    if record.state == "fetched":
        return record.cost.estimated + record.cost.billed_failures, False
    return record.cost.billed_failures, record.cost.billed_failures == 0.0


def history_rows(records: Iterable[JobRecord]) -> list[list[str]]:
    """One row per job: id, route, state (``interrupted`` when a re-run would carry it on), cost, date."""
    rows = []
    for record in records:
        cost, known = job_cost(record)
        state = f"{record.state} (interrupted)" if record.interrupted else record.state
        state += " (failed-quality)" if record.sync_scores is not None and record.sync_scores.failed else ""
        state += _deleted_note(record.deleted)
        rows.append(
            [
                record.job_id,
                record.route,
                state,
                f"${cost:.4f}" + ("" if known else " (est.)"),
                record.created_at.strftime("%Y-%m-%d %H:%M"),
            ]
        )
    return rows


def _deleted_note(deleted: list[str]) -> str:
    """What was deleted, in words: after a normal run only the uploads are (the job is not deleted)."""
    if not deleted:
        return ""
    if any(item.startswith("local output ") for item in deleted):
        return " · job deleted"
    return " · uploads removed from the provider"


def spend_by_day(records: Iterable[JobRecord]) -> dict[date, dict[str, float]]:
    """Spend per day (UTC, the record's creation) per route; days and routes with no spend are left out."""
    spend: dict[date, dict[str, float]] = {}
    for record in records:
        cost, _ = job_cost(record)
        if cost <= 0:
            continue
        day = spend.setdefault(record.created_at.date(), {})
        day[record.route] = round(day.get(record.route, 0.0) + cost, 6)
    return dict(sorted(spend.items()))


def _routes_in(spend: dict[date, dict[str, float]]) -> list[str]:
    seen: list[str] = []
    for per_route in spend.values():
        seen += [name for name in sorted(per_route) if name not in seen]
    return seen


def spend_chart_svg(
    spend: dict[date, dict[str, float]], *, width: int = 640, height: int = 220, max_days: int = 14
) -> str:
    """Grouped bars, one group per day (the last ``max_days``), one bar per route, each labelled in $."""
    days: Sequence[date] = list(spend)[-max_days:]
    if not days:
        return '<p id="ls-spend-empty">No spend yet.</p>'
    routes = _routes_in({day: spend[day] for day in days})
    colour = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(routes)}
    top = max(value for day in days for value in spend[day].values())
    left, bottom, plot_h = 48, 40, height - 70
    group_w = (width - left - 10) / len(days)
    bar_w = max(4.0, min(28.0, (group_w - 8) / max(1, len(routes))))
    parts = [
        f'<svg id="ls-spend-chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="spend per route per day">',
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 10}" y2="{height - bottom}" stroke="#888"/>',
        f'<text x="4" y="20" font-size="11" fill="#555">${top:.4f}</text>',
    ]
    for i, day in enumerate(days):
        x0 = left + i * group_w + 4
        for j, name in enumerate(name for name in routes if name in spend[day]):
            value = spend[day][name]
            bar_h = max(1.0, plot_h * value / top)
            x = x0 + j * bar_w
            y = height - bottom - bar_h
            label = escape(f"{name} {day.isoformat()}: ${value:.4f}")
            parts.append(
                f'<rect class="ls-bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{bar_h:.1f}" '
                f'fill="{colour[name]}" data-route="{escape(name)}" data-day="{day.isoformat()}" '
                f'data-usd="{value:.6f}"><title>{label}</title></rect>'
            )
        parts.append(
            f'<text x="{x0:.1f}" y="{height - bottom + 14}" font-size="10" fill="#333">{day.strftime("%m-%d")}</text>'
        )
    for k, name in enumerate(routes):
        x = left + k * 110
        parts.append(
            f'<rect x="{x}" y="{height - 16}" width="10" height="10" fill="{colour[name]}"/>'
            f'<text x="{x + 14}" y="{height - 7}" font-size="11" fill="#333">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
