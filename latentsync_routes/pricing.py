"""The price book and the estimators built on it.

Prices are data (``data/prices.json``), each with the page it came from and the day it was checked, so a
price change is a one-line data edit and every estimate can cite its source. Each estimator returns a
:class:`CostEstimate` whose ``basis`` spells the arithmetic out in one sentence.
"""

from __future__ import annotations

import json
import math
from datetime import date
from functools import lru_cache
from importlib import resources
from typing import Any

from .errors import BudgetExceeded
from .media import OUTPUT_FPS, output_duration, output_frame_count
from .types import CostEstimate


@lru_cache(maxsize=1)
def price_book() -> dict[str, Any]:
    """The packaged price book (read once)."""
    text = resources.files("latentsync_routes").joinpath("data/prices.json").read_text("utf-8")
    book: dict[str, Any] = json.loads(text)
    return book


def _money(value: float) -> float:
    return round(value, 6)


def fal_cost_for_seconds(output_seconds: float) -> float:
    """fal's rule: a flat fee up to ``flat_seconds`` of output, then a rate per second."""
    entry = price_book()["fal"]
    billed_seconds = round(output_seconds)
    return _money(max(float(entry["flat_amount"]), billed_seconds * float(entry["per_second"])))


def estimate_fal(audio_seconds: float) -> CostEstimate:
    entry = price_book()["fal"]
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
    )


def fal_actual_cost(billable_units: float) -> float:
    """Actual fal cost from the ``x-fal-billable-units`` header of the result."""
    return _money(billable_units * float(price_book()["fal"]["billable_unit_price"]))


def replicate_cost_for_predict_time(predict_seconds: float) -> float:
    return _money(predict_seconds * float(price_book()["replicate"]["per_second"]))


def estimate_replicate(audio_seconds: float) -> CostEstimate:
    entry = price_book()["replicate"]
    seconds = output_duration(audio_seconds)
    model = entry["runtime_model"]

    def run_time(band: str) -> float:
        return float(model[band]["fixed_seconds"]) + float(model[band]["seconds_per_output_second"]) * seconds

    mid, low, high = run_time("mid"), run_time("low"), run_time("high")
    rate = float(entry["per_second"])
    basis = (
        f"{entry['hardware']} at ${rate}/s x predicted run time; run time modelled as "
        f"{model['mid']['fixed_seconds']} s + {model['mid']['seconds_per_output_second']} s per output second "
        f"x {seconds:.2f} s = {mid:.0f} s (range {low:.0f}-{high:.0f} s); the model page says ~"
        f"{entry['typical_predict_seconds']} s typical"
    )
    return CostEstimate(
        route="replicate",
        currency=entry["currency"],
        amount=_money(mid * rate),
        low=_money(low * rate),
        high=_money(high * rate),
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
    amount = _money(wall / 3600 * gpu_hour_usd) if kind != "cpu" else 0.0
    basis = (
        f"LatentSync {version} on {kind}: ~{per_second:g} s of wall time per output second x {seconds:.2f} s "
        f"= {wall:.0f} s; at ${gpu_hour_usd}/GPU-hour = ${amount:.4f}; needs ~{entry['vram_gb'][version]} GB VRAM"
    )
    return CostEstimate(
        route="local",
        currency=entry["currency"],
        amount=amount,
        low=_money(amount * 0.5),
        high=_money(amount * 2.0),
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
    return _money(blocks * float(entry["block_price"]))


def estimate_by_rule(route: str, audio_seconds: float) -> CostEstimate:
    """An estimate from the price book's rule for ``route``: exact when the rule is on output length."""
    entry = price_book()[route]
    seconds = output_duration(audio_seconds)
    amount = cost_by_rule(route, seconds)
    per = entry["block_seconds"]
    basis = (f"{entry['block_price']} {entry['currency']} per started {per:g} s of output x "
             f"ceil({seconds:.2f} s / {per:g} s) = ${amount:.4f} ({entry['quote']})")
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


def check_budget(estimate: CostEstimate, *, per_call: float | None, remaining: float | None) -> None:
    """Refuse a call whose worst case (``high``) is over a cap, before anything is uploaded."""
    if per_call is not None and estimate.high > per_call:
        raise BudgetExceeded(
            f"estimated cost up to ${estimate.high:.4f} exceeds the per-call budget of ${per_call:.4f}",
            route=estimate.route,
            amount=estimate.high,
            cap=per_call,
        )
    if remaining is not None and estimate.high > remaining:
        raise BudgetExceeded(
            f"estimated cost up to ${estimate.high:.4f} exceeds the client's remaining budget of ${remaining:.4f}",
            route=estimate.route,
            amount=estimate.high,
            cap=remaining,
        )
