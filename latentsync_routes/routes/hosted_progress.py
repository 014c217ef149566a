"""What a hosted job's progress callback is told while it waits: state, queue position, time, provider progress.

A hosted job used to sit at 0 % until done. Providers say little while a job runs, so the template reports
what it does know on every poll: the provider's state, the queue position when queued, the time elapsed
against the estimate's expected time, and the provider's own progress where its logs carry one (a tqdm
bar, ``step 3/20``, ``45%``). The fraction passed to ``progress(message, fraction)`` is the provider's own
when it has one; otherwise, while running, the elapsed share of the expected time (at most 0.95, and the
message says it is time-based); ``None`` while queued.

Its own module so the template stays one screen of state machine; importing it imports nothing heavy.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: A time-based fraction never claims more than this: only the provider's "done" is 100 %.
TIME_FRACTION_CAP = 0.95

_TQDM = re.compile(r"(\d{1,3})%\|")
_RATIO = re.compile(r"(?:step|steps|frame|frames|batch|iteration|it)?\s*(\d+)\s*/\s*(\d+)", re.IGNORECASE)
_PERCENT = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d+)?)\s*%")


def progress_from_logs(lines: Sequence[str]) -> float | None:
    """The provider's own progress in its latest log line that carries one (0..1), else ``None``.

    Reads, newest line first: a tqdm bar (``45%|####``), a ratio (``Inference step 3/20``, ``12/50``), or a
    bare percentage. A ratio whose total is 0 or whose count exceeds it is ignored.
    """
    for line in reversed(lines):
        found = _TQDM.search(line)
        if found:
            return min(1.0, int(found.group(1)) / 100)
        ratios = [(int(a), int(b)) for a, b in _RATIO.findall(line) if 0 < int(b) and int(a) <= int(b)]
        if ratios:
            done, total = ratios[-1]
            return done / total
        found = _PERCENT.search(line)
        if found and float(found.group(1)) <= 100:
            return float(found.group(1)) / 100
    return None


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value < 120 else f"{value / 60:.1f} min"


def wait_message(
    route: str,
    state: str,
    *,
    elapsed: float,
    expected: float | None,
    queue_position: int | None = None,
    provider_fraction: float | None = None,
    detail: str = "",
) -> tuple[str, float | None]:
    """One poll's progress line and fraction (see the module docstring for the rule)."""
    parts = [state]
    if state == "queued" and queue_position is not None:
        parts[0] = f"queued (position {queue_position})"
    if detail and detail not in parts[0]:
        parts.append(detail)
    timing = f"{_seconds(elapsed)} elapsed"
    if expected:
        timing += f" of ~{_seconds(expected)} expected"
    parts.append(timing)
    fraction: float | None = None
    if provider_fraction is not None:
        fraction = max(0.0, min(1.0, provider_fraction))
        parts.append(f"provider progress {fraction:.0%}")
    elif state == "running" and expected:
        fraction = min(TIME_FRACTION_CAP, elapsed / expected)
        parts.append(f"~{fraction:.0%} by time")
    return f"{route}: " + ", ".join(parts), fraction
