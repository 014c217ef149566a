"""The price book and the estimators built on it.

Prices are data, each route's in its own folder (``routes/<name>/prices.json``, read through the route's
kit), each with the page it came from and the day it was checked, so a price change is a one-line data
edit and every estimate can cite its source. Each estimator returns a
:class:`CostEstimate` whose ``basis`` spells the arithmetic out in one sentence.

A user override (``$LATENTSYNC_ROUTES_HOME/prices.json``, written by ``latentsync-routes prices refresh``)
is laid over the packaged book key by key within each route's entry; every value it changes comes with its
own ``source`` and ``checked`` date, so an estimate still cites where its price came from.
"""

from __future__ import annotations

import json
import math
import os
from datetime import date
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from .errors import BudgetExceeded
from .media import OUTPUT_FPS, output_duration, output_frame_count
from .money import exact, exceeds, from_micros, micros
from .types import CostEstimate

#: The user override's file name under ``LATENTSYNC_ROUTES_HOME``.
OVERRIDE_FILE = "prices.json"


def override_path() -> Path:
    """Where ``prices refresh`` writes the user's price-book override (under LATENTSYNC_ROUTES_HOME)."""
    home = os.environ.get("LATENTSYNC_ROUTES_HOME")
    if home:
        return Path(home).expanduser() / OVERRIDE_FILE
    from .config import default_home

    return default_home() / OVERRIDE_FILE


def packaged_price_book() -> dict[str, Any]:
    """The price book shipped with the package: every registered route's own entry (each read once)."""
    from .routes import REGISTRY

    return {name: kit.prices() for name, kit in REGISTRY.items()}


@lru_cache(maxsize=8)
def _merged(path: str, stamp: float, routes: tuple[str, ...]) -> dict[str, Any]:
    book = {route: dict(entry) for route, entry in packaged_price_book().items()}
    if stamp < 0:
        return book
    try:
        override = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError):  # an unreadable override is ignored, never half-applied
        return book
    if not isinstance(override, dict):
        return book
    for route, entry in override.items():
        if isinstance(entry, dict) and route in book:
            book[route].update(entry)
    return book


def price_book() -> dict[str, Any]:
    """The price book: packaged prices with the user's override (if any) laid over them."""
    path = override_path()
    try:
        stamp = path.stat().st_mtime
    except OSError:
        stamp = -1.0
    from .routes import REGISTRY

    return _merged(str(path), stamp, tuple(REGISTRY))


def write_override(route: str, values: dict[str, Any], *, source: str, checked: date) -> Path:
    """Merge ``values`` into the user's override for ``route``, with where they came from and when.

    The entry's own ``source``/``checked`` (those of the packaged rule) stay; the override's are kept beside
    it as ``override_source``/``override_checked``, so each figure can still be traced.
    """
    if not source or not isinstance(checked, date):
        raise ValueError("a price override needs its source and the date it was checked")
    path = override_path()
    try:
        current = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        current = {}
    if not isinstance(current, dict):
        current = {}
    entry = {**(current.get(route) or {}), **values, "override_source": source, "override_checked": checked.isoformat()}
    current[route] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n", "utf-8")
    temporary.replace(path)
    return path


def _money(value: Decimal) -> float:
    """An exact amount (computed in decimal from the price book's figures) rounded half-even to the
    micro-dollar, as the float that carries it (its repr is the exact six-decimal amount)."""
    return from_micros(micros(value))


def fal_micros_for_seconds(output_seconds: float) -> int:
    """fal's rule in integer micro-dollars: a flat fee up to ``flat_seconds`` of output, then a rate per second."""
    entry = price_book()["fal"]
    billed_seconds = round(output_seconds)
    return micros(max(exact(entry["flat_amount"]), billed_seconds * exact(entry["per_second"])))


def fal_cost_for_seconds(output_seconds: float) -> float:
    """:func:`fal_micros_for_seconds` as the float the records carry."""
    return from_micros(fal_micros_for_seconds(output_seconds))


def estimate_fal(audio_seconds: float) -> CostEstimate:
    entry = price_book()["fal"]
    model = entry["runtime_model"]
    frames = output_frame_count(audio_seconds)
    seconds = output_duration(audio_seconds)
    amount = fal_cost_for_seconds(seconds)
    basis = (
        f"output follows the audio: {audio_seconds:.2f} s of audio gives {frames} frames at {OUTPUT_FPS} fps "
        f"= {seconds:.2f} s, billed as {round(seconds)} s; max(${entry['flat_amount']:.2f}, "
        f"{round(seconds)} s x ${entry['per_second']}/s) = ${amount:.4f}"
    )
    return CostEstimate(
        route="fal",
        currency=entry["currency"],
        amount=amount,
        low=amount,
        high=amount,
        is_exact=True,
        basis=basis,
        price_source=entry["source"],
        price_checked=date.fromisoformat(entry["checked"]),
        output_seconds=seconds,
        expected_wall_seconds=float(model["fixed_seconds"]) + float(model["seconds_per_output_second"]) * seconds,
    )


def fal_units_cost(billable_units: float) -> float:
    """What fal's ``x-fal-billable-units`` come to at the book's unit price (no minimum applied)."""
    return _money(exact(billable_units) * exact(price_book()["fal"]["billable_unit_price"]))


def fal_billable_units_for(output_seconds: float) -> float:
    """The units the price book's rule implies for an output: billed seconds, at least ``flat_seconds``."""
    entry = price_book()["fal"]
    return float(max(int(entry["flat_seconds"]), round(output_seconds)))


def compare_with_rule(rule_cost: float, units_cost: float) -> str | None:
    """A sentence when the provider's figure and the rule's differ by more than a cent and 1 %, else None."""
    gap = abs(micros(rule_cost) - micros(units_cost))
    if gap <= micros("0.01") or gap * 100 <= max(micros(rule_cost), micros(units_cost)):
        return None
    return (
        f"the provider's billable units come to ${units_cost:.4f} but the price book's rule gives "
        f"${rule_cost:.4f}: check the provider's usage page (the record's actual is the rule's)"
    )


def replicate_micros_for_predict_time(predict_seconds: float) -> int:
    """Predict time x the per-second rate, in integer micro-dollars (exact decimal product, half-even)."""
    return micros(exact(predict_seconds) * exact(price_book()["replicate"]["per_second"]))


def replicate_cost_for_predict_time(predict_seconds: float) -> float:
    """:func:`replicate_micros_for_predict_time` as the float the records carry."""
    return from_micros(replicate_micros_for_predict_time(predict_seconds))


def estimate_replicate(audio_seconds: float) -> CostEstimate:
    entry = price_book()["replicate"]
    seconds = output_duration(audio_seconds)
    model = entry["runtime_model"]

    def run_time(band: str) -> float:
        return float(model[band]["fixed_seconds"]) + float(model[band]["seconds_per_output_second"]) * seconds

    mid, low, high = run_time("mid"), run_time("low"), run_time("high")
    rate = exact(entry["per_second"])
    basis = (
        f"{entry['hardware']} at ${rate}/s x predicted run time; run time modelled as "
        f"{model['mid']['fixed_seconds']} s + {model['mid']['seconds_per_output_second']} s per output second "
        f"x {seconds:.2f} s = {mid:.0f} s (range {low:.0f}-{high:.0f} s); the model page says ~"
        f"{entry['typical_predict_seconds']} s typical"
    )
    return CostEstimate(
        route="replicate",
        currency=entry["currency"],
        amount=_money(exact(mid) * rate),
        low=_money(exact(low) * rate),
        high=_money(exact(high) * rate),
        is_exact=False,
        basis=basis,
        price_source=entry["source"],
        price_checked=date.fromisoformat(entry["checked"]),
        output_seconds=seconds,
        expected_wall_seconds=mid,
    )


def estimate_local(audio_seconds: float, *, version: str, device: str, gpu_hour_usd: float = 0.0) -> CostEstimate:
    """Local runs cost the user's own hardware time: $0 unless they set a $/GPU-hour."""
    entry = price_book()["local"]
    seconds = output_duration(audio_seconds)
    kind = device.split(":", 1)[0] if device else "cpu"
    speeds = entry["seconds_per_output_second"]
    per_second = float(speeds.get(kind, speeds["cpu"])[version])
    wall = per_second * seconds
    amount = _money(exact(wall) / 3600 * exact(gpu_hour_usd)) if kind != "cpu" else 0.0
    basis = (
        f"LatentSync {version} on {kind}: ~{per_second:g} s of wall time per output second x {seconds:.2f} s "
        f"= {wall:.0f} s; at ${gpu_hour_usd}/GPU-hour = ${amount:.4f}; needs ~{entry['vram_gb'][version]} GB VRAM"
    )
    return CostEstimate(
        route="local",
        currency=entry["currency"],
        amount=amount,
        low=_money(exact(amount) / 2),
        high=_money(exact(amount) * 2),
        is_exact=False,
        basis=basis,
        price_source=entry["source"],
        price_checked=date.fromisoformat(entry["checked"]),
        output_seconds=seconds,
        expected_wall_seconds=wall,
        expected_vram_gb=float(entry["vram_gb"][version]),
    )


def cost_by_rule(route: str, output_seconds: float) -> float:
    """The price book's rule for ``route`` applied to an output length (for routes priced by rule).

    Rules: ``per_block`` — ``block_price`` for every started ``block_seconds`` of output, at least
    ``min_blocks``.
    """
    entry = price_book()[route]
    if entry.get("rule") != "per_block":
        raise KeyError(f"the price book has no rule for route {route!r}")
    blocks = max(int(entry.get("min_blocks", 1)), math.ceil(round(output_seconds, 6) / float(entry["block_seconds"])))
    return _money(blocks * exact(entry["block_price"]))


def estimate_by_rule(route: str, audio_seconds: float) -> CostEstimate:
    """An estimate from the price book's rule for ``route``: exact when the rule is on output length."""
    entry = price_book()[route]
    seconds = output_duration(audio_seconds)
    amount = cost_by_rule(route, seconds)
    per = entry["block_seconds"]
    basis = (
        f"{entry['block_price']} {entry['currency']} per started {per:g} s of output x "
        f"ceil({seconds:.2f} s / {per:g} s) = ${amount:.4f} ({entry['quote']})"
    )
    wall = entry.get("typical_wall_seconds_per_output_second")
    return CostEstimate(
        route=route,
        currency=entry["currency"],
        amount=amount,
        low=amount,
        high=amount,
        is_exact=True,
        basis=basis,
        price_source=entry["source"],
        price_checked=date.fromisoformat(entry["checked"]),
        output_seconds=seconds,
        expected_wall_seconds=None if wall is None else float(wall) * seconds,
    )


def check_budget(estimate: CostEstimate, *, per_call: float | None) -> None:
    """Refuse a call whose worst case (``high``) is over the per-call cap, before anything is uploaded.

    ``budget_total`` is checked where the job's record is created, against the journal (:mod:`.budget`).
    """
    if per_call is not None and exceeds(estimate.high, per_call):
        raise BudgetExceeded(
            f"estimated cost up to ${estimate.high:.4f} exceeds the per-call budget of ${per_call:.4f}",
            route=estimate.route,
            amount=estimate.high,
            cap=per_call,
        )
