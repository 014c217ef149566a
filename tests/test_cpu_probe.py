"""``dtype="auto"`` on a CPU follows a measured probe: both decisions injected, the cache, the decision rule,
the explicit dtype winning, and what ``doctor`` shows. Nothing here is timed: the probe's timings are
replaced by given figures (the conftest fixes the suite's default at float32)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from latentsync_routes.local import cpu_probe, precision, runtime

REAL_MEASURE = cpu_probe.measure  # the suite's conftest replaces it; the rule's test needs the real one


def result(decision: str, latent_size: int = 32, **kw: Any) -> cpu_probe.ProbeResult:
    fields: dict[str, Any] = {
        "decision": decision, "float32_cpu_s": 1.0, "bfloat16_cpu_s": 0.5 if decision == "bfloat16" else 1.4,
        "cpu": cpu_probe.cpu_model(), "torch": "x", "latent_size": latent_size, "probe_latent_size": latent_size,
        "threads": 2, "measured_at": "2026-12-07T00:00:00Z", "reason": "injected",
    }  # fmt: skip
    return cpu_probe.ProbeResult(**{**fields, **kw})


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """The probe with an injected decision; ``calls`` counts the measurements, the cache is in ``tmp_path``."""
    state: dict[str, Any] = {"decision": "float32", "calls": [], "file": tmp_path / "cache" / "cpu-precision.json"}

    def measure(latent_size: int) -> cpu_probe.ProbeResult:
        state["calls"].append(latent_size)
        return result(state["decision"], latent_size)

    monkeypatch.setattr(cpu_probe, "measure", measure)
    monkeypatch.setattr(cpu_probe, "cache_file", lambda: state["file"])
    cpu_probe.forget()
    return state


@pytest.mark.parametrize("decision", ["bfloat16", "float32"])
def test_auto_on_the_cpu_follows_the_probe(probe: dict[str, Any], decision: str) -> None:
    probe["decision"] = decision
    assert precision.resolve_dtype("auto", "cpu") == decision
    assert precision.resolve_dtype(None, "cpu") == decision
    assert runtime.choose("1.5", "cpu").dtype == decision
    assert runtime.dtype_name_for("cpu") == decision
    assert probe["calls"] == [32]  # measured once, then remembered in the process
    # an explicit dtype always wins, and CUDA stays float16: neither runs the probe
    assert precision.resolve_dtype("float32", "cpu") == "float32"
    assert precision.resolve_dtype("bfloat16", "cpu") == "bfloat16"
    assert runtime.choose("1.5", "cpu", requested_dtype="float32").dtype == "float32"
    assert precision.resolve_dtype("auto", "cuda:0") == "float16"
    assert probe["calls"] == [32]


def test_the_job_shapes_pick_the_probe_size(probe: dict[str, Any]) -> None:
    runtime.choose("1.6", "cpu")
    runtime.choose("1.5", "cpu")
    assert probe["calls"] == [64, 32]  # 1.6 is 512 px (latent 64), 1.5 256 px (latent 32)


def test_the_decision_is_kept_per_cpu_and_torch_version(probe: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    probe["decision"] = "bfloat16"
    assert cpu_probe.cpu_decision(32).source == "measured"
    kept = json.loads(probe["file"].read_text())
    key = f"{cpu_probe.cpu_model()} | torch {torch.__version__} | latent 32"
    assert kept[key]["decision"] == "bfloat16"
    cpu_probe.forget()  # a new process: read back from the file, not measured again
    probe["decision"] = "float32"
    again = cpu_probe.cpu_decision(32)
    assert (again.decision, again.source, probe["calls"]) == ("bfloat16", "cache", [32])
    cpu_probe.forget()  # another torch version is measured afresh, and both entries stay
    monkeypatch.setattr(torch, "__version__", "9.9.9")
    assert cpu_probe.cpu_decision(32).decision == "float32"
    assert probe["calls"] == [32, 32] and len(json.loads(probe["file"].read_text())) == 2


def test_an_unreadable_cache_is_measured_again_and_an_unwritable_one_still_decides(probe: dict[str, Any]) -> None:
    probe["file"].parent.mkdir(parents=True)
    probe["file"].write_text("{not json")
    assert cpu_probe.cpu_decision(32).decision == "float32" and probe["calls"] == [32]
    probe["file"] = Path("/proc/no-such-dir/cpu-precision.json")  # cannot be written
    cpu_probe.forget()
    probe["decision"] = "bfloat16"
    assert cpu_probe.cpu_decision(32).decision == "bfloat16"


@pytest.mark.parametrize(
    ("screen", "full", "decision", "probed_at"),
    [
        ((0.1, 0.45), None, "float32", 0),  # 4.5x at the screen: no bf16 hardware, decided at once
        ((0.1, 0.15), (1.0, 0.5), "bfloat16", 32),  # 2x faster at the job's size
        ((0.1, 0.15), (1.0, 0.95), "float32", 32),  # a near tie keeps float32 (margin 0.9)
        ((0.1, 0.15), (1.0, 1.3), "float32", 32),  # slower
    ],
)
def test_the_decision_rule(
    monkeypatch: pytest.MonkeyPatch,
    screen: tuple[float, float],
    full: tuple[float, float] | None,
    decision: str,
    probed_at: int,
) -> None:
    runs: list[tuple[int, int]] = []

    def timed_pair(latent_size: int, repeats: int) -> tuple[float, float]:
        runs.append((latent_size, repeats))
        assert full is not None, "the screen should have decided"
        return full

    monkeypatch.setattr(cpu_probe, "_screen", lambda: screen)
    monkeypatch.setattr(cpu_probe, "_timed_pair", timed_pair)
    got = REAL_MEASURE(64)
    assert (got.decision, got.probe_latent_size, got.latent_size) == (decision, probed_at, 64)
    assert runs == ([] if full is None else [(32, cpu_probe.REPEATS)])
    expected = full or screen
    assert (got.float32_cpu_s, got.bfloat16_cpu_s) == expected
    assert got.as_dict()["bf16_speedup"] == round(expected[0] / expected[1], 3)


def test_the_probe_layers_run_in_both_precisions() -> None:
    fp32, bf16 = cpu_probe._timed_pair(4, 1)  # real layers at a tiny size: the figures exist, not their size
    assert fp32 > 0 and bf16 > 0
    assert all(t > 0 for t in cpu_probe._screen())


def test_doctor_shows_the_decision_and_its_figures(probe: dict[str, Any]) -> None:
    from latentsync_routes.doctor import local_precision

    probe["decision"] = "bfloat16"
    shown = local_precision()
    assert shown["decision"] == "bfloat16" and shown["device"] == "cpu"
    assert shown["float32_cpu_s"] == 1.0 and shown["bfloat16_cpu_s"] == 0.5 and shown["bf16_speedup"] == 2.0
    assert shown["cache_file"] == str(probe["file"]) and isinstance(shown["cpu_flags"], list)
    json.dumps(shown)  # what doctor --json prints
