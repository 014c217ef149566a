"""Turn ``gpu_check.py``'s JSON into the GPU tables of docs/performance.md.

    python benchmarks/render_gpu_table.py gpu_check.json                            # print the Markdown
    python benchmarks/render_gpu_table.py gpu_check.json --docs docs/performance.md  # fill the docs' table

The docs hold the tables between two markers (``<!-- gpu-check:start -->`` and ``<!-- gpu-check:end -->``);
``--docs`` replaces what is between them and nothing else, so the rest of the page is never touched.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

START, END = "<!-- gpu-check:start -->", "<!-- gpu-check:end -->"
STAGES = ("faces", "whisper", "unet", "vae", "restore", "total")


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.{digits}f}"
    return str(value)


def _header(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    where = m.get("gpu") or f"CPU {m['cpu']} (bf16 flags: {', '.join(m['cpu_bf16_flags']) or 'none'})"
    took = report.get("elapsed_s", {})
    return [
        f"Run {report['created']} ({report['mode']} sizes) on {where}, torch {m['torch']}"
        + (f", CUDA {m['cuda']}" if m.get("cuda") else "")
        + f", load average {m.get('load_average')}; took {_num(took.get('total'), 1)} s "
        + "("
        + ", ".join(f"{k} {_num(v, 1)} s" for k, v in took.items() if k != "total")
        + ").",
        "",
    ]


def _parity(parity: dict[str, Any]) -> list[str]:
    lines = ["| check | dtype | max abs | mean abs | max rel | finite |", "|---|---|---|---|---|---|"]
    golden = parity.get("golden", {})
    for part, label in (("unet", "goldens: tiny UNet, cases 1-3"), ("chunk", "goldens: pipeline_tiny chunk 0")):
        for dtype, e in golden.get(part, {}).items():
            lines.append(f"| {label} vs official CPU fp32 | {dtype} | {_num(e['max_abs'])} | "
                         f"{_num(e['mean_abs'])} | {_num(e['max_rel'])} | {_num(e['finite'])} |")  # fmt: skip
    for version, found in parity.get("random", {}).items():
        if "skipped" in found:
            lines.append(f"| {version} random weights | — | skipped: {found['skipped']} | | | |")
            continue
        for part, label in (("unet", "UNet forward"), ("chunk", "denoised chunk")):
            for dtype, e in found[part].items():
                lines.append(f"| {version} {label} vs fp32 on the device | {dtype} | {_num(e['max_abs'])} | "
                             f"{_num(e['mean_abs'])} | {_num(e['max_rel'])} | {_num(e['finite'])} |")  # fmt: skip
    if "chunk_skipped" in golden:
        lines += ["", f"Goldens' chunk skipped: {golden['chunk_skipped']}."]
    return [*lines, ""]


def _speed(speed: dict[str, Any]) -> list[str]:
    lines = [
        "| version | dtype | compiled | " + " | ".join(STAGES) + " | first chunk s |",
        "|---|---|---|" + "---|" * len(STAGES) + "---|",
    ]
    for run in speed.get("runs", []):
        per = run["seconds_per_output_second"]
        cells = " | ".join(_num(per[s]) for s in STAGES)
        lines.append(f"| {run['version']} | {run['dtype']} | {_num(run['compiled'])} | {cells} | "
                     f"{_num(run['first_chunk_s'], 2)} |")  # fmt: skip
    lines += ["", f"Seconds per output second ({speed.get('unit', '')})."]
    lines += [f"Skipped: {s}." for s in speed.get("skipped", [])]
    return [*lines, ""]


def _memory(memory: dict[str, Any]) -> list[str]:
    lines = ["| version | video s | frames | chunks | peak GB |", "|---|---|---|---|---|"]
    for run in memory.get("runs", []):
        lines.append(f"| {run['version']} | {_num(run['seconds'])} | {run['frames']} | {run['chunks']} | "
                     f"{_num(run['peak_gb'])} |")  # fmt: skip
    lines += ["", f"Peak measured as {memory.get('measure', '—')}."]
    lines += [f"Skipped: {s}." for s in memory.get("skipped", [])]
    lines += ["", "| free VRAM | `auto` picks | its measured peak GB | fits |", "|---|---|---|---|"]
    for row in memory.get("auto_choice", []):
        lines.append(f"| {_num(row['budget_gb'], 0)} GB | {row['version']} | {_num(row['measured_peak_gb'])} | "
                     f"{_num(row['fits'])} |")  # fmt: skip
    return [*lines, ""]


def render(report: dict[str, Any]) -> str:
    """The Markdown for one gpu_check report: header, parity, speed, memory and the official code's row."""
    official = report.get("official", {})
    parts = []
    sections = (("parity", "Parity", _parity), ("speed", "Speed", _speed), ("memory", "Memory", _memory))
    for name, title, table in sections:
        found = report[name]
        parts += [f"**{title}**", "", *([f"Not run: {found['not_run']}.", ""] if "not_run" in found else table(found))]
    lines = [
        *_header(report), *parts,
        "**Official code side by side:** "
        + ("ran, see the JSON" if official.get("ran") else f"not run: {official.get('reason', 'no entry')}."),
    ]  # fmt: skip
    return "\n".join(lines).rstrip() + "\n"


def fill(docs: str, report: dict[str, Any]) -> str:
    """``docs`` with the text between the markers replaced by :func:`render`'s tables."""
    if START not in docs or END not in docs or docs.index(START) > docs.index(END):
        raise ValueError(f"the page has no {START} ... {END} block to fill")
    head, rest = docs.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{render(report)}{END}{tail}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("json", help="gpu_check.py's output")
    parser.add_argument("--docs", help="a Markdown page with the gpu-check markers, filled in place")
    args = parser.parse_args()
    report = json.loads(Path(args.json).read_text())
    if args.docs:
        page = Path(args.docs)
        page.write_text(fill(page.read_text(), report))
        print(f"filled the GPU tables of {page}")
    else:
        print(render(report), end="")


if __name__ == "__main__":
    main()
