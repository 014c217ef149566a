from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from latentsync_routes.errors import BudgetExceeded
from latentsync_routes.money import from_micros, micros
from latentsync_routes.pricing import (
    check_budget,
    compare_with_rule,
    cost_by_rule,
    estimate_fal,
    estimate_local,
    estimate_replicate,
    fal_billable_units_for,
    fal_cost_for_seconds,
    fal_micros_for_seconds,
    fal_units_cost,
    override_path,
    price_book,
    replicate_cost_for_predict_time,
    replicate_micros_for_predict_time,
    write_override,
)


def test_every_price_has_source_and_date() -> None:
    for name, entry in price_book().items():
        assert entry["source"].startswith("https://"), name
        assert date.fromisoformat(entry["checked"]) <= date.today(), name
        for rule in ("failure_rule", "cancel_rule"):  # billing rules carry their own source and date
            if rule in entry:
                assert entry[rule]["source"].startswith("https://") and date.fromisoformat(entry[rule]["checked"])
    assert {"failure_rule", "cancel_rule"} <= set(price_book()["replicate"])


def test_a_user_override_is_read_with_its_source_and_date(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATENTSYNC_ROUTES_HOME", str(tmp_path))
    assert override_path() == tmp_path / "prices.json"
    before = fal_units_cost(40)
    with pytest.raises(ValueError, match="source"):
        write_override("fal", {"billable_unit_price": 0.01}, source="", checked=date(2026, 12, 2))
    write_override(
        "fal", {"billable_unit_price": 0.01}, source="https://api.fal.ai/v1/models/pricing?x", checked=date(2026, 12, 2)
    )
    assert fal_units_cost(40) == pytest.approx(0.40) != before
    entry = price_book()["fal"]
    assert entry["override_source"].startswith("https://api.fal.ai/") and entry["override_checked"] == "2026-12-02"
    assert entry["source"].startswith("https://fal.ai/")  # the packaged rule keeps its own source
    assert entry["flat_amount"] == 0.2  # what the override does not name stays the packaged value


@pytest.mark.parametrize(("audio", "amount"), [(5.0, 0.20), (30.0, 0.20), (40.0, 0.20), (60.0, 0.30), (100.0, 0.50)])
def test_fal_rule(audio: float, amount: float) -> None:
    estimate = estimate_fal(audio)
    assert estimate.amount == pytest.approx(amount)
    assert estimate.is_exact and estimate.low == estimate.high == estimate.amount
    assert "max($0.20" in estimate.basis
    assert estimate.price_source.startswith("https://fal.ai/")


def test_fal_flat_then_per_second() -> None:
    assert fal_cost_for_seconds(39.6) == pytest.approx(0.20)
    assert fal_cost_for_seconds(41.0) == pytest.approx(0.205)
    assert fal_units_cost(100) == pytest.approx(0.50) and fal_units_cost(1) == pytest.approx(0.005)
    assert fal_billable_units_for(3.0) == 40 and fal_billable_units_for(61.2) == 61


def test_a_disagreement_between_units_and_the_rule_is_flagged() -> None:
    assert compare_with_rule(0.20, 0.20) is None and compare_with_rule(0.20, 0.205) is None
    flag = compare_with_rule(0.20, 0.005)  # fal reporting 1 unit for a $0.20 job
    assert flag is not None and "$0.0050" in flag and "$0.2000" in flag


def test_replicate_band_and_rate() -> None:
    estimate = estimate_replicate(25.0)
    assert estimate.low < estimate.amount < estimate.high
    assert not estimate.is_exact
    # A 25 s clip lands near the model page's typical 133 s run.
    assert estimate.expected_wall_seconds == pytest.approx(133.3, abs=1.0)
    assert estimate.amount == pytest.approx(estimate.expected_wall_seconds * 0.000975, rel=1e-6)
    assert replicate_cost_for_predict_time(133) == pytest.approx(0.129675)


def test_local_costs_zero_unless_gpu_hour_set() -> None:
    free = estimate_local(10.0, version="1.5", device="cuda", gpu_hour_usd=0.0)
    assert free.amount == 0.0 and free.expected_vram_gb == 8
    paid = estimate_local(10.0, version="1.6", device="cuda:0", gpu_hour_usd=3.6)
    assert paid.expected_vram_gb == 18
    assert paid.amount == pytest.approx(paid.expected_wall_seconds / 3600 * 3.6, rel=1e-4)
    cpu = estimate_local(10.0, version="1.5", device="cpu", gpu_hour_usd=3.6)
    assert cpu.amount == 0.0 and cpu.expected_wall_seconds > paid.expected_wall_seconds


def test_budget_caps_use_the_worst_case() -> None:
    estimate = estimate_replicate(25.0)
    check_budget(estimate, per_call=estimate.high)
    check_budget(estimate, per_call=None)
    with pytest.raises(BudgetExceeded, match="per-call") as info:
        check_budget(estimate, per_call=estimate.amount)
    assert info.value.exit_code == 5


@pytest.mark.parametrize(("seconds", "expected"), [(0.1, 0.000098), (0.14, 0.000136), (133, 0.129675), (2.5, 0.002438)])
def test_replicate_cost_is_the_exact_product_rounded_half_even(seconds: float, expected: float) -> None:
    """0.1 s x $0.000975/s is exactly $0.0000975: half-even gives $0.000098, where the float product
    (just under 9.75e-05 in binary) rounded to 6 places gave $0.000097. The micro-dollar figure is the exact one."""
    assert replicate_micros_for_predict_time(seconds) == micros(str(expected))
    assert replicate_cost_for_predict_time(seconds) == expected


def test_every_price_book_product_is_computed_in_decimal() -> None:
    assert fal_micros_for_seconds(41.0) == 205_000 and fal_units_cost(0.02) == 0.0001
    assert estimate_replicate(0.1).amount == from_micros(micros(estimate_replicate(0.1).amount))
    assert cost_by_rule("wavespeed", 5.0) == 0.15 and cost_by_rule("wavespeed", 15.0) == 0.45
