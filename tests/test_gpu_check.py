"""``benchmarks/gpu_check.py`` at tiny sizes on the CPU, so the GPU run cannot rot before a GPU is lent: the
JSON has every part the docs' renderer reads, the renderer fills the docs' block and nothing else, and the
figures are real (finite errors that are not all zero, positive times and peaks)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    sys.path.insert(0, str(BENCH))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(BENCH))
    out = tmp_path_factory.mktemp("gpu") / "gpu.json"
    argv = ["gpu_check.py", "--device", "cpu", "--tiny", "--out", str(out)]
    old, sys.argv = sys.argv, argv
    try:
        gpu_check.main()
    finally:
        sys.argv = old
    loaded: dict[str, Any] = json.loads(out.read_text())
    return loaded


@pytest.mark.slow
def test_the_json_has_every_part(report: dict[str, Any]) -> None:
    assert {"parity", "speed", "memory", "official", "machine", "elapsed_s", "budget_s"} <= set(report)
    assert report["mode"] == "tiny" and report["machine"]["device"] == "cpu"
    parity = report["parity"]
    assert parity["dtypes"] == ["float32", "bfloat16"]  # no fp16 on a CPU
    golden = parity["golden"]["unet"]
    assert golden["float32"]["max_abs"] <= 1e-4  # our fp32 on this device matches the official CPU fp32
    assert golden["bfloat16"]["max_abs"] > golden["float32"]["max_abs"]
    for version in ("1.5", "1.6"):
        for part in ("unet", "chunk"):
            found = parity["random"][version][part]["bfloat16"]
            assert found["finite"] and 0 < found["max_abs"] and found["mean_abs"] <= found["max_abs"]
    runs = report["speed"]["runs"]
    assert {(r["version"], r["compiled"]) for r in runs} == {("1.5", False), ("1.6", False), ("1.5", True)}
    assert report["speed"]["skipped"] == ["compiled 1.6: --tiny compiles one version only"]
    for run in runs:
        per = run["seconds_per_output_second"]
        assert all(per[stage] > 0 for stage in ("faces", "whisper", "unet", "vae", "restore"))
        assert per["total"] == pytest.approx(sum(per[s] for s in ("faces", "whisper", "unet", "vae", "restore")))
    memory = report["memory"]
    assert len(memory["runs"]) == 6 and all(r["peak_gb"] >= 0 and r["chunks"] >= 1 for r in memory["runs"])
    assert [r["frames"] for r in memory["runs"][:3]] == sorted(r["frames"] for r in memory["runs"][:3])
    choice = {row["budget_gb"]: row["version"] for row in memory["auto_choice"]}
    assert choice == {8.0: "1.5", 12.0: "1.5", 18.0: "1.6", 24.0: "1.6"}
    assert report["official"]["ran"] is False and report["official"]["reason"]


@pytest.mark.slow
def test_the_renderer_fills_the_docs_block(report: dict[str, Any]) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        from render_gpu_table import END, START, fill, render
    finally:
        sys.path.remove(str(BENCH))
    page = (BENCH.parent / "docs" / "performance.md").read_text()
    assert START in page and END in page
    filled = fill(page, report)
    head, tail = page.split(START)[0], page.split(END)[1]
    assert filled.startswith(head) and filled.endswith(tail)  # only the block changes
    table = render(report)
    assert table in filled and "| 1.6 |" in table and "bfloat16" in table and "not run:" in table
    assert fill(filled, report) == filled  # filling again gives the same page
    with pytest.raises(ValueError, match="no <!-- gpu-check:start -->"):
        fill("# a page without the block\n", report)
