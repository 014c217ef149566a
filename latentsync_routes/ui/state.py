"""What the page knows and decides, without Gradio: staged inputs, the per-route assessment, the run gate.

Why it is apart from the page: the rule "the run button is enabled only when the chosen route's checklist
passes and a consent text is given for a route that uploads" is the safety promise of the UI, so it lives
in plain functions that tests call directly, and the page only renders what they return.

Inputs are *staged*: an uploaded file is copied into a fresh folder under ``settings.home/ui/uploads``,
and the job's output is written into the same folder, so deleting a job from the page removes everything
the page ever put on disk for it (see :func:`remove_staged`).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..consent import consent_problem, normalise_consent
from ..errors import LatentSyncError
from ..types import CostEstimate

if TYPE_CHECKING:
    from ..client import LipSyncClient

#: The route choice that means "the cheapest route whose checklist passes".
CHEAPEST = "cheapest"


@dataclass(frozen=True)
class Inputs:
    """One pair of inputs: each a staged local path or an https URL, and the folder the job writes into."""

    video: str
    audio: str
    folder: str
    synthetic: bool = False

    @property
    def output(self) -> Path:
        return Path(self.folder) / "output.mp4"


@dataclass(frozen=True)
class CheckRow:
    """One row of a checklist as shown: ``outcome`` is ``pass`` or ``STOP`` (or a future outcome's name)."""

    check: str
    outcome: str
    reason: str

    @property
    def stops(self) -> bool:
        return self.outcome.upper() == "STOP"


@dataclass
class RouteView:
    """One route as the page shows it: its price, its checklist, and why it cannot run (if it cannot)."""

    name: str
    uploads_to: str | None
    estimate: CostEstimate | None = None
    estimate_error: str | None = None
    checks: list[CheckRow] = field(default_factory=list)

    @property
    def stop_rows(self) -> list[CheckRow]:
        return [row for row in self.checks if row.stops]


@dataclass
class Assessment:
    """Every route's view for one pair of inputs and one consent text (what was shown is what is gated)."""

    inputs: Inputs
    consent: str | None
    routes: dict[str, RouteView]


@dataclass(frozen=True)
class Gate:
    """Whether the run button is enabled, on which route, and in words why (or why not)."""

    enabled: bool
    route: str | None
    reason: str


def uploads_root(home: Path) -> Path:
    return Path(home) / "ui" / "uploads"


def new_folder(home: Path) -> Path:
    folder = uploads_root(home) / uuid.uuid4().hex[:12]
    folder.mkdir(parents=True, exist_ok=False)
    return folder


def _is_url(value: str) -> bool:
    return value.startswith(("https://", "http://"))


def stage(home: Path, video: str, audio: str) -> Inputs:
    """Copy local files into a new folder under the home (URLs are passed on as given)."""
    folder = new_folder(home)
    staged = []
    for role, given in (("video", video), ("audio", audio)):
        if _is_url(given):
            staged.append(given)
            continue
        source = Path(given)
        target = folder / f"{role}{source.suffix.lower()}"
        shutil.copyfile(source, target)
        staged.append(str(target))
    return Inputs(video=staged[0], audio=staged[1], folder=str(folder))


def face_check_for(inputs: Inputs) -> bool | None:
    """The page's own synthetic media shows no face by design: the face check is off for it (the row says
    so); for anything uploaded, the configured policy decides."""
    return False if inputs.synthetic else None


def synthetic(home: Path, seconds: float = 2.0) -> Inputs:
    """A colour card and a tone (no face, no voice) in a new staged folder: the safe thing to try first."""
    from ..testing import write_test_audio, write_test_video

    folder = new_folder(home)
    video = write_test_video(folder / "video.mp4", seconds=seconds)
    audio = write_test_audio(folder / "audio.wav", seconds=seconds)
    return Inputs(video=str(video), audio=str(audio), folder=str(folder), synthetic=True)


def remove_staged(home: Path, folder: str | Path | None) -> bool:
    """Delete a staged folder; refuses anything that is not a folder directly under the uploads root."""
    if not folder:
        return False
    path = Path(folder).resolve()
    root = uploads_root(home).resolve()
    if path.parent != root or not path.is_dir():
        return False
    shutil.rmtree(path, ignore_errors=True)
    return True


def staged_folder_of(home: Path, paths: Iterable[str | None]) -> Path | None:
    """The staged folder holding any of ``paths`` (a job's output or inputs), if the page staged them."""
    root = uploads_root(home).resolve()
    for given in paths:
        if not given or _is_url(given):
            continue
        parent = Path(given).resolve().parent
        if parent.parent == root:
            return parent
    return None


def _problem(exc: Exception) -> str:
    if isinstance(exc, LatentSyncError):
        return f"{type(exc).__name__}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def check_rows(results: Iterable[object]) -> list[CheckRow]:
    """Whatever rows ``client.check`` returns, as shown: a row with ``passed`` false is a STOP.

    Rows are read by attribute so a row kind added later (a warning, a new check) is shown as it comes.
    """
    rows = []
    for result in results:
        outcome = getattr(result, "outcome", None)
        if not isinstance(outcome, str) or not outcome:
            outcome = "pass" if getattr(result, "passed", False) else "STOP"
        rows.append(CheckRow(str(getattr(result, "check", "?")), outcome, str(getattr(result, "reason", ""))))
    return rows


def assess(
    client: LipSyncClient,
    inputs: Inputs,
    consent: str | None,
    blocked: Mapping[str, str] | None = None,
    routes: Iterable[str] | None = None,
) -> Assessment:
    """Price and check the inputs on every route; any failure becomes a STOP row with its reason.

    ``blocked`` names routes the page will not run and why (``--fakes`` blocks the local route, which
    would load real checkpoints). Nothing is uploaded: estimates and checks only probe the inputs.
    """
    from ..routes.base import route_names

    blocked = blocked or {}
    names = list(routes) if routes is not None else route_names()
    views: dict[str, RouteView] = {}
    estimates: dict[str, CostEstimate] = {}
    shared_error: str | None = None
    try:
        estimates = {e.route: e for e in client.estimate_all(inputs.video, inputs.audio)}
    except Exception as exc:  # noqa: BLE001 - shown on the page as the reason nothing can run
        shared_error = _problem(exc)
    for name in names:
        route = client.route(name)
        info = route.info()
        view = RouteView(name, info.upload_destination if info.uploads_media else None)
        view.estimate = estimates.get(name)
        if view.estimate is None:
            view.estimate_error = shared_error or "no estimate"
        try:
            view.checks = check_rows(
                client.check(inputs.video, inputs.audio, route=name, consent=consent, face_check=face_check_for(inputs))
            )
        except Exception as exc:  # noqa: BLE001 - an input over a limit, a bad file: a STOP with its reason
            view.checks = [CheckRow("inputs", "STOP", _problem(exc))]
        why_not = blocked.get(name) or route.availability()
        if why_not:
            view.checks.append(CheckRow("availability", "STOP", why_not))
        views[name] = view
    return Assessment(inputs=inputs, consent=consent, routes=views)


def cheapest(assessment: Assessment, *, runnable: bool = True) -> str | None:
    """The route with the lowest expected price among those with no STOP row (any route, if not ``runnable``)."""
    priced = [v for v in assessment.routes.values() if v.estimate is not None and not (runnable and v.stop_rows)]
    if not runnable:  # to say why nothing can run, prefer a route the user can fix (not an unavailable one)
        fixable = [v for v in priced if all(row.check != "availability" for row in v.stop_rows)]
        priced = fixable or priced
    if not priced:
        return None
    return min(priced, key=lambda v: (v.estimate.amount if v.estimate else 0.0, v.name)).name


def gate(assessment: Assessment | None, choice: str | None, consent: str | None) -> Gate:
    """Whether running is allowed now. Enabled only when every check of the chosen route passed for *this*
    consent text, its estimate is known, and a route that uploads has a consent text."""
    if assessment is None:
        return Gate(False, None, "Add a video and an audio (or use synthetic media) to see prices and checks.")
    problem = consent_problem(consent) if consent and consent.strip() else None
    if problem is not None:  # control characters, terminal escapes, a stray key: on no route, not only uploads
        return Gate(False, None, f"Consent: {problem}.")
    if normalise_consent(consent) != normalise_consent(assessment.consent):
        return Gate(False, None, "Checking the consent text…")
    if not choice:
        return Gate(False, None, "Choose a route.")
    if choice == CHEAPEST:
        name = cheapest(assessment)
        if name is None:  # show why the cheapest-priced route cannot run
            name = cheapest(assessment, runnable=False)
            if name is None:
                return Gate(False, None, "No route has an estimate for these inputs: see the estimates.")
    else:
        name = choice
    view = assessment.routes.get(name)
    if view is None:
        return Gate(False, None, f"Unknown route {name!r}.")
    stops = view.stop_rows
    if stops:
        why = "; ".join(f"{row.check}: {row.reason}" for row in stops)
        return Gate(False, name, f"STOP on {name}: {why}")
    if view.estimate is None:
        return Gate(False, name, f"No estimate for {name}: {view.estimate_error}")
    if view.uploads_to and not normalise_consent(consent):
        return Gate(
            False,
            name,
            f"{name} uploads the face and voice to {view.uploads_to}: write the consent basis "
            "first (or 'synthetic' for synthetic media).",
        )
    price = view.estimate
    return Gate(True, name, f"Ready on {name}: expected ${price.amount:.4f} (${price.low:.4f}-${price.high:.4f}).")
