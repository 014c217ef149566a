from __future__ import annotations

from datetime import date

import pytest

from latentsync_routes.errors import BudgetExceeded
from latentsync_routes.pricing import (
    check_budget,
    estimate_fal,
    estimate_local,
    estimate_replicate,
    fal_actual_cost,
    fal_cost_for_seconds,
    price_book,
    replicate_cost_for_predict_time,
)


def test_every_price_has_source_and_date() -> None:
    for name, entry in price_book().items():
        assert entry["source"].startswith("https://"), name
        assert date.fromisoformat(entry["checked"]) <= date.today(), name


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
    assert fal_actual_cost(100) == pytest.approx(0.50)


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
    check_budget(estimate, per_call=estimate.high, remaining=None)
    with pytest.raises(BudgetExceeded, match="per-call") as info:
        check_budget(estimate, per_call=estimate.amount, remaining=None)
    assert info.value.exit_code == 5
    with pytest.raises(BudgetExceeded, match="remaining"):
        check_budget(estimate, per_call=None, remaining=0.01)
