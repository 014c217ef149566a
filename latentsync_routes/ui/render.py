"""HTML for the page's panels: the estimates of every route, a route's checklist, the run's progress.

Every value is escaped: reasons quote the user's consent text and file names, which must never become
markup. Element ids and ``data-*`` attributes are stable so the browser test (and a reader's own scripts)
can find a route's row or a STOP without parsing prose.
"""

from __future__ import annotations

from html import escape

from .runner import Snapshot
from .state import Assessment, Gate, RouteView


def _money(value: float) -> str:
    return f"${value:.4f}"


def estimates_html(assessment: Assessment | None, chosen: str | None = None) -> str:
    """One row per route: expected price, low-high, basis, price source and date, and its checklist verdict."""
    if assessment is None:
        return '<p id="ls-estimates-empty">No inputs yet.</p>'
    rows = []
    for view in assessment.routes.values():
        verdict = "pass" if not view.stop_rows else f"STOP ({len(view.stop_rows)})"
        mark = ' class="ls-chosen"' if view.name == chosen else ""
        if view.estimate is not None:
            e = view.estimate
            price = (
                f"<td>{_money(e.amount)}</td><td>{_money(e.low)}-{_money(e.high)}</td><td>{escape(e.basis)}</td>"
                f"<td>{escape(e.price_source)} ({e.price_checked.isoformat()})</td>"
            )
        else:
            price = f'<td colspan="4">{escape(view.estimate_error or "no estimate")}</td>'
        rows.append(
            f'<tr data-route="{escape(view.name)}" data-verdict="{escape(verdict)}"{mark}>'
            f"<td><b>{escape(view.name)}</b></td>{price}<td>{escape(verdict)}</td></tr>"
        )
    return (
        '<table id="ls-estimates-table" class="ls-table"><thead><tr><th>route</th><th>expected</th>'
        "<th>low-high</th><th>basis</th><th>price source (checked)</th><th>checklist</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def checklist_html(view: RouteView | None) -> str:
    """Every row ``check`` returned for the route, STOP rows marked, in the order given."""
    if view is None:
        return '<p id="ls-checklist-empty">The checklist appears once inputs are given.</p>'
    rows = "".join(
        f'<tr data-check="{escape(row.check)}" data-outcome="{escape(row.outcome)}" '
        f'class="{"ls-stop" if row.stops else "ls-pass"}"><td>{escape(row.check)}</td>'
        f"<td><b>{escape(row.outcome)}</b></td><td>{escape(row.reason)}</td></tr>"
        for row in view.checks
    )
    return (
        f'<table id="ls-checklist-table" class="ls-table" data-route="{escape(view.name)}"><caption>checklist '
        f"for <b>{escape(view.name)}</b></caption><thead><tr><th>check</th><th>outcome</th><th>reason</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
    )


def gate_html(gate: Gate) -> str:
    kind = "ready" if gate.enabled else "blocked"
    return f'<p id="ls-gate-reason" data-gate="{kind}" class="ls-gate-{kind}">{escape(gate.reason)}</p>'


def progress_html(snap: Snapshot | None) -> str:
    """State, queue position, elapsed against expected, cost so far (and the error, when it ended badly)."""
    if snap is None:
        return '<p id="ls-progress-idle">Nothing running.</p>'
    expected = f" of about {snap.expected_s:.0f} s expected" if snap.expected_s else ""
    position = "" if snap.queue_position is None else f" · queue position {snap.queue_position}"
    bar = ""
    if snap.fraction is not None:
        bar = f'<progress max="1" value="{max(0.0, min(1.0, snap.fraction)):.3f}"></progress> '
    ended = ""
    if snap.done:
        ended = (
            f'<br><span class="ls-stop">{escape(snap.error)}</span>'
            if snap.error
            else '<br><span class="ls-pass">done</span>'
        )
    job = f" · job {escape(snap.job_id)}" if snap.job_id else ""
    return (
        f'<div id="ls-progress-box" data-state="{escape(snap.state)}" data-done="{str(snap.done).lower()}">'
        f"{bar}<b>{escape(snap.route)}</b>: {escape(snap.state)}{position}{job}<br>"
        f"{escape(snap.message)}<br>elapsed {snap.elapsed_s:.1f} s{expected} · cost so far "
        f"{_money(snap.cost_so_far)} (estimate {_money(snap.estimate)}){ended}</div>"
    )


CSS = """
.ls-table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
.ls-table td, .ls-table th { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
.ls-table caption { text-align: left; padding: 4px 0; }
tr.ls-chosen { background: #eef6ff; }
tr.ls-stop td, span.ls-stop, .ls-gate-blocked { color: #a40000; }
span.ls-pass, .ls-gate-ready { color: #006400; }
#ls-mode { font-weight: bold; }
"""

#: Synced playback: playing, pausing or seeking the output plays, pauses or seeks the input beside it.
HEAD = """
<script>
(() => {
  const pair = () => [document.querySelector("#ls-output video"), document.querySelector("#ls-input-side video")];
  const follow = (event) => {
    const [out, side] = pair();
    if (!out || !side || event.target !== out) return;
    if (Math.abs(side.currentTime - out.currentTime) > 0.05) side.currentTime = out.currentTime;
    if (event.type === "play") side.play().catch(() => {});
    if (event.type === "pause") side.pause();
  };
  for (const type of ["play", "pause", "seeked"]) document.addEventListener(type, follow, true);
})();
</script>
"""
