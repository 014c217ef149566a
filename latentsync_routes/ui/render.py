"""HTML for the page's panels: the estimates of every route, a route's checklist, the run's progress.

Every value is escaped: reasons quote the user's consent text and file names, which must never become
markup. Element ids and ``data-*`` attributes are stable so the browser test (and a reader's own scripts)
can find a route's row or a STOP without parsing prose.
"""

from __future__ import annotations

import re
from html import escape
from typing import TYPE_CHECKING

from .runner import Snapshot
from .state import Assessment, Gate, RouteView

if TYPE_CHECKING:
    from ..sync_record import SyncQuality


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
        f'class="{_row_class(row.outcome)}"><td>{escape(row.check)}</td>'
        f"<td><b>{escape(row.outcome)}</b></td><td>{escape(for_people(row.check, row.reason))}</td></tr>"
        for row in view.checks
    )
    return (
        f'<table id="ls-checklist-table" class="ls-table" data-route="{escape(view.name)}"><caption>checklist '
        f"for <b>{escape(view.name)}</b></caption><thead><tr><th>check</th><th>outcome</th><th>reason</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>"
    )


def _row_class(outcome: str) -> str:
    return {"STOP": "ls-stop", "skipped": "ls-skipped"}.get(outcome, "ls-pass")


_CONSENT_STOP = re.compile(
    r"route '[^']*' uploads the face and voice to (?P<where>.+?); give a consent basis "
    r"\(consent='\.\.\.', or --consent\), or declare [\w /]+ media"
)


def for_people(check: str, reason: str) -> str:
    """A checklist reason (or the gate's line quoting it) as the page says it: no Python or command-line
    words for a person who does not program. The consent STOP (``consent='...', or --consent``) becomes the
    question it is; ``check`` names the row (``gate`` for the gate's line)."""
    return _CONSENT_STOP.sub(
        lambda found: (
            f"Do the people in this video agree to their face and voice being sent to "
            f"{found.group('where')}? Write what their consent rests on in the consent box (for example 'signed "
            "release #42'), or 'synthetic' if no real person appears."
        ),
        reason,
    )


def gate_html(gate: Gate) -> str:
    kind = "ready" if gate.enabled else "blocked"
    said = escape(for_people("gate", gate.reason))
    return f'<p id="ls-gate-reason" data-gate="{kind}" class="ls-gate-{kind}">{said}</p>'


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


def scores_html(scores: SyncQuality | None, *, asked: bool) -> str:
    """The output's LSE-C / LSE-D and the gate's outcome, beside the output (when scoring was asked)."""
    if scores is None:
        said = "Scoring was asked for; no scores (the job did not finish)." if asked else "Lip-sync not scored."
        return f'<p id="ls-scores-none">{said}</p>'
    gate = escape(scores.gate)
    if scores.lse_c is None or scores.lse_d is None or scores.av_offset is None:
        body = f"not scored: {escape(scores.error or 'no face track')}"
    else:
        body = (
            f"LSE-C <b>{scores.lse_c:.3f}</b> (higher is better) · LSE-D <b>{scores.lse_d:.3f}</b> (lower is "
            f"better) · offset {scores.av_offset:+d} frames · {len(scores.tracks)} face track(s)"
        )
    minimum = "" if scores.min_sync_confidence is None else f" (min LSE-C {scores.min_sync_confidence:g})"
    kind = "ls-stop" if scores.failed else "ls-pass"
    return (
        f'<div id="ls-scores-box" data-gate="{gate}" data-lse-c="{scores.lse_c if scores.lse_c is not None else ""}">'
        f'{body}<br>gate: <span class="{kind}">{gate}</span>{minimum}'
        f"<br>{escape(scores.verdict or '')}</div>"
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
