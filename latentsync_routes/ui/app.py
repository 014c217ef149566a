"""The page itself (Gradio Blocks): inputs, routes with prices and checklists, run, result, history.

The page only wires events to :mod:`.state` (what may run), :mod:`.runner` (the running job),
:mod:`.history` (the journal) and :mod:`.render` (HTML). Everything it does goes through the public
``LipSyncClient``: ``estimate_all``, ``check``, ``run``, ``resume``, ``cancel``, ``delete_job`` and
``journal.list``. Nothing it renders holds a credential: it never reads one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr  # this module is imported only when a page is built (the `ui` extra)

from ..errors import LatentSyncError
from ..routes.base import route_names
from . import history, render, state
from .inputs import new_served_folder, page_url, served_copy, uploaded_file
from .runner import Runs

if TYPE_CHECKING:
    from ..client import LipSyncClient

FAKES_NOTE = (
    "FAKES: every hosted route runs on the built-in loopback fakes; nothing is paid and no media leaves this machine."
)
REAL_NOTE = (
    "REAL providers: a run on a hosted route uploads the face and voice to the provider and is billed. "
    "Try synthetic media first."
)
POLL_S = 0.3


def _problem(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc.message if isinstance(exc, LatentSyncError) else exc}"


class Page:
    """The handlers, bound to one client (one journal, one home); the Blocks are built by :func:`build`."""

    def __init__(
        self, client: LipSyncClient, blocked: Mapping[str, str] | None = None, *, served: Path | None = None
    ) -> None:
        self.client = client
        self.home = Path(client.settings.home)
        #: the folder uploads land in and the only one Gradio serves (:mod:`.inputs`)
        self.served = Path(served) if served is not None else new_served_folder()
        self.blocked = dict(blocked or {})
        self.routes = route_names()
        self.runs = Runs(client)

    # -- inputs and the gate ----------------------------------------------------------------------------
    def _used_folders(self) -> set[Path]:
        found = (state.staged_folder_of(self.home, [r.output_path]) for r in self.client.journal.list(limit=10_000))
        return {folder for folder in found if folder is not None}

    def _release(self, previous: state.Inputs | None) -> None:
        """Drop the previous staged folder when no job used it (a job's inputs stay until it is deleted)."""
        if previous is not None and Path(previous.folder).resolve() not in self._used_folders():
            state.remove_staged(self.home, previous.folder)

    def prune(self) -> list[Path]:
        """At start: remove staged folders no job refers to (inputs a closed page staged but never ran)."""
        root = state.uploads_root(self.home)
        if not root.is_dir():
            return []
        used = self._used_folders()
        stale = [p for p in root.iterdir() if p.is_dir() and p.resolve() not in used]
        return [p for p in stale if state.remove_staged(self.home, p)]

    def _panels(self, assessment: state.Assessment | None, choice: str, consent: str) -> tuple[Any, ...]:
        decided = state.gate(assessment, choice, consent)
        view = assessment.routes.get(decided.route) if assessment and decided.route else None
        if view is None and assessment is not None and choice in assessment.routes:
            view = assessment.routes[choice]
        return (
            render.estimates_html(assessment, decided.route),
            render.checklist_html(view),
            render.gate_html(decided),
            gr.update(interactive=decided.enabled),
        )

    def _given(self, upload: str | None, url: str | None, role: str) -> str | None:
        """An uploaded file of this page, else an http(s) URL typed in the box; never a server path."""
        if upload:
            return str(uploaded_file(upload, self.served, role))
        typed = (url or "").strip()
        return page_url(typed, role) if typed else None

    def _refused(self, current: state.Inputs | None, choice: str, consent: str, exc: Exception) -> tuple[Any, ...]:
        estimates, checklist, _, button = self._panels(None, choice, consent)
        return (current, None, estimates, checklist, render.gate_html(state.Gate(False, None, _problem(exc))), button)

    def on_inputs(
        self,
        video: str | None,
        audio: str | None,
        video_url: str,
        audio_url: str,
        consent: str,
        choice: str,
        current: state.Inputs | None,
    ) -> tuple[Any, ...]:
        """A new pair of inputs: stage it, price and check it on every route, then gate the run button."""
        try:
            video_given = self._given(video, video_url, "video")
            audio_given = self._given(audio, audio_url, "audio")
        except LatentSyncError as exc:  # a server path, a file: URL, another scheme: refused, nothing read
            return self._refused(current, choice, consent, exc)
        if not video_given or not audio_given:
            return (current, None, *self._panels(None, choice, consent))
        try:
            inputs = state.stage(self.home, video_given, audio_given)
        except OSError as exc:  # an upload that vanished, a full disk: say so, enable nothing
            return self._refused(current, choice, consent, exc)
        self._release(current)
        assessment = state.assess(self.client, inputs, consent or None, self.blocked, self.routes)
        return (inputs, assessment, *self._panels(assessment, choice, consent))

    def on_synthetic(self, consent: str, choice: str, current: state.Inputs | None) -> tuple[Any, ...]:
        inputs = state.synthetic(self.home)
        self._release(current)
        assessment = state.assess(self.client, inputs, consent or None, self.blocked, self.routes)
        shown = (served_copy(inputs.video, self.served), served_copy(inputs.audio, self.served))
        return (*shown, inputs, assessment, *self._panels(assessment, choice, consent))

    def on_consent(self, consent: str, choice: str, inputs: state.Inputs | None) -> tuple[Any, ...]:
        """The consent text changed: the checks depend on it, so check again (prices do not change)."""
        if inputs is None:
            return (None, *self._panels(None, choice, consent))
        assessment = state.assess(self.client, inputs, consent or None, self.blocked, self.routes)
        return (assessment, *self._panels(assessment, choice, consent))

    def on_route(self, choice: str, consent: str, assessment: state.Assessment | None) -> tuple[Any, ...]:
        return self._panels(assessment, choice, consent)

    # -- running ---------------------------------------------------------------------------------------
    def on_run(
        self, choice: str, consent: str, evaluate: bool, assessment: state.Assessment | None, request: gr.Request
    ) -> Iterator[tuple[Any, ...]]:
        """Outputs: progress, output video, input video, record, scores, run button."""
        decided = state.gate(assessment, choice, consent)
        if assessment is None or not decided.enabled or decided.route is None:
            yield (render.gate_html(decided), *[gr.skip()] * 4, gr.update(interactive=False))
            return
        view = assessment.routes[decided.route]
        assert view.estimate is not None  # the gate passed: the route has an estimate
        session = request.session_hash or "default"
        try:
            handle = self.runs.start(
                session, decided.route, assessment.inputs, view.estimate, consent, evaluate=bool(evaluate)
            )
        except LatentSyncError as exc:  # a job running already, no SyncNet weights: nothing was uploaded
            yield (render.gate_html(state.Gate(False, decided.route, exc.message)), *[gr.skip()] * 5)
            return
        while not handle.done.wait(POLL_S):
            yield (render.progress_html(handle.snapshot(self.client)), *[gr.skip()] * 4, gr.update(interactive=False))
        snap = handle.snapshot(self.client)
        result = handle.result
        if result is None or not result.output_path:
            record = handle.record(self.client)
            dumped = record.model_dump(mode="json") if record is not None else None
            scores = render.scores_html(None, asked=bool(evaluate))
            yield (render.progress_html(snap), None, None, dumped, scores, gr.update(interactive=True))
            return
        shown = [
            served_copy(path, self.served) if not str(path).startswith(("https://", "http://")) else str(path)
            for path in (result.output_path, assessment.inputs.video)
        ]
        scores = render.scores_html(result.sync_scores, asked=bool(evaluate))
        yield (
            render.progress_html(snap),
            *shown,
            result.record.model_dump(mode="json"),
            scores,
            gr.update(interactive=True),
        )

    def on_cancel(self, request: gr.Request) -> str:
        if self.runs.cancel(request.session_hash or "default"):
            return "Cancelling: the route stops its provider job; the record will say what it cost."
        return "Nothing is running on this page."

    # -- history ---------------------------------------------------------------------------------------
    def on_history(self) -> tuple[Any, ...]:
        records = self.client.journal.list(limit=200)
        rows = history.history_rows(records)
        chart = history.spend_chart_svg(history.spend_by_day(records))
        return rows, gr.update(choices=[r.job_id for r in records]), chart

    def on_pick(self, evt: gr.SelectData) -> Any:
        row = evt.row_value or []
        return gr.update(value=row[0]) if row else gr.skip()

    def on_resume(self, job_id: str | None) -> str:
        if not job_id:
            return "Choose a job first."
        try:
            result = self.client.resume(job_id)
        except Exception as exc:  # noqa: BLE001 - shown on the page
            return _problem(exc)
        return f"Job {job_id}: {result.record.state}; output {result.output_path}"

    def on_job_cancel(self, job_id: str | None) -> str:
        if not job_id:
            return "Choose a job first."
        running = self.runs.running_job(job_id)
        if running is not None:  # this page runs it: stop it by its event rather than wait for the claim
            running.cancel_event.set()
            return f"Job {job_id}: cancelling."
        try:
            record = self.client.cancel(job_id, wait_seconds=10.0)
        except Exception as exc:  # noqa: BLE001 - shown on the page
            return _problem(exc)
        return f"Job {job_id}: {record.state}" + (f" ({record.failure_reason})" if record.failure_reason else "")

    def on_delete(self, job_id: str | None) -> str:
        """``delete_job`` (output, remote uploads), then what the page staged for it and Gradio's copies."""
        if not job_id:
            return "Choose a job first."
        record = self.client.journal.get(job_id)
        if record is None:
            return f"No job {job_id!r} in the journal."
        folder = state.staged_folder_of(self.home, [record.output_path, *(i.source for i in record.inputs)])
        digests = _digests(folder) if folder is not None else set()
        try:
            record = self.client.delete_job(job_id)
        except Exception as exc:  # noqa: BLE001 - shown on the page
            return _problem(exc)
        removed = list(record.deleted)
        if folder is not None and state.remove_staged(self.home, folder):
            removed.append(f"staged inputs {folder}")
        removed += [f"page copy {p.name}" for p in purge_cache(self.served, digests)]
        lines = [f"deleted: {item}" for item in removed] + [f"not deleted: {item}" for item in record.not_deleted]
        return "\n".join(lines) or "nothing to delete"


def _enabled(on: bool) -> Callable[[], Any]:
    """An event handler that turns a button on or off."""
    return lambda: gr.update(interactive=on)


def _picked(job_id: str | None) -> tuple[Any, Any, Any]:
    """The history's job buttons act on the picked job: on with one, off without."""
    update = gr.update(interactive=bool(job_id))
    return update, update, update


def _digests(folder: Path) -> set[str]:
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if p.is_file()}


def purge_cache(root: Path, digests: set[str]) -> list[Path]:
    """Remove Gradio's cached copies of the given files (found by content: the cache renames folders)."""
    removed: list[Path] = []
    if not digests or not root.is_dir():
        return removed
    for path in [p for p in root.rglob("*") if p.is_file()]:
        if hashlib.sha256(path.read_bytes()).hexdigest() in digests:
            path.unlink()
            removed.append(path)
            if path.parent != root and not any(path.parent.iterdir()):
                path.parent.rmdir()
    return removed


def build(page: Page, *, fakes: bool) -> gr.Blocks:
    """The Blocks for ``page``; element ids (``ls-*``) are what the browser test and docs refer to."""
    with gr.Blocks(title="LatentSync routes", analytics_enabled=False) as demo:
        gr.Markdown("## LatentSync lip-sync: see the price, the checklist and the consent question first")
        gr.Markdown(FAKES_NOTE if fakes else REAL_NOTE, elem_id="ls-mode")
        parts = {"inputs_state": gr.State(None), "assessment_state": gr.State(None)}
        parts |= _inputs_section(page)
        parts |= _run_section()
        parts |= _history_section()
        _wire_inputs(page, parts)
        _wire_run(page, parts)
        demo.load(page.on_history, None, [parts["table"], parts["job"], parts["chart"]])
    blocks: gr.Blocks = demo
    return blocks


def _inputs_section(page: Page) -> dict[str, Any]:
    """The media, the route, the consent, and the panels that price and check them."""
    with gr.Row():
        with gr.Column():
            video = gr.Video(label="video (face)", sources=["upload"], height=260, elem_id="ls-video")
            video_url = gr.Textbox(label="or a video URL (https)", elem_id="ls-video-url")
        with gr.Column():
            audio = gr.Audio(label="audio (voice)", sources=["upload"], type="filepath", elem_id="ls-audio")
            audio_url = gr.Textbox(label="or an audio URL (https)", elem_id="ls-audio-url")
    synthetic = gr.Button("use synthetic media (no face, no voice)", elem_id="ls-synthetic")
    with gr.Row():
        route = gr.Radio([state.CHEAPEST, *page.routes], value=state.CHEAPEST, label="route", elem_id="ls-route")
        consent = gr.Textbox(
            label="consent basis (who agreed, how; 'synthetic' for synthetic media)", elem_id="ls-consent"
        )
    estimates = gr.HTML(render.estimates_html(None), elem_id="ls-estimates")
    checklist = gr.HTML(render.checklist_html(None), elem_id="ls-checklist")
    gate = gr.HTML(render.gate_html(state.gate(None, state.CHEAPEST, "")), elem_id="ls-gate")
    return dict(
        video=video, video_url=video_url, audio=audio, audio_url=audio_url, synthetic=synthetic, route=route,
        consent=consent, estimates=estimates, checklist=checklist, gate=gate,
    )  # fmt: skip


def _run_section() -> dict[str, Any]:
    """Run and cancel, the progress, the output beside the input with its scores, and the record."""
    evaluate = gr.Checkbox(
        label="score the lip-sync (LSE-C / LSE-D with SyncNet; needs `latentsync-routes download --syncnet`)",
        value=False,
        elem_id="ls-evaluate",
    )
    with gr.Row():
        run = gr.Button("Run", variant="primary", interactive=False, elem_id="ls-run")
        # enabled only while a run of this page is under way: there is nothing to cancel otherwise
        cancel = gr.Button("Cancel", variant="secondary", interactive=False, elem_id="ls-cancel")
    progress = gr.HTML(render.progress_html(None), elem_id="ls-progress")
    cancel_note = gr.Markdown("", elem_id="ls-cancel-note")
    with gr.Row():
        output = gr.Video(label="output (lip-synced)", interactive=False, height=300, elem_id="ls-output")
        input_side = gr.Video(label="input", interactive=False, height=300, elem_id="ls-input-side")
    scores = gr.HTML(render.scores_html(None, asked=False), elem_id="ls-scores")
    with gr.Accordion("production record", open=False, elem_id="ls-record-box"):
        record = gr.JSON(elem_id="ls-record")
    return dict(
        evaluate=evaluate, run=run, cancel=cancel, progress=progress, cancel_note=cancel_note, output=output,
        input_side=input_side, scores=scores, record=record,
    )  # fmt: skip


def _history_section() -> dict[str, Any]:
    """The journal's jobs, the actions on a picked one, and the spend chart."""
    gr.Markdown("### History")
    table = gr.Dataframe(headers=history.HISTORY_HEADERS, interactive=False, elem_id="ls-history")
    with gr.Row():
        job = gr.Dropdown(label="job", choices=[], elem_id="ls-job")
        refresh = gr.Button("refresh", elem_id="ls-refresh")
        # enabled once a job is picked: without one they have nothing to act on
        resume = gr.Button("resume", interactive=False, elem_id="ls-resume")
        job_cancel = gr.Button("cancel job", interactive=False, elem_id="ls-job-cancel")
        delete = gr.Button("delete job", interactive=False, elem_id="ls-delete")
    job_note = gr.Textbox(label="history action", interactive=False, lines=3, elem_id="ls-job-note")
    chart = gr.HTML(elem_id="ls-spend")
    return dict(
        table=table, job=job, refresh=refresh, resume=resume, job_cancel=job_cancel, delete=delete,
        job_note=job_note, chart=chart,
    )  # fmt: skip


def _wire_inputs(page: Page, p: dict[str, Any]) -> None:
    """New inputs, consent or route: stage, price, check and gate again."""
    panels = [p["estimates"], p["checklist"], p["gate"], p["run"]]
    given = [p[name] for name in ("video", "audio", "video_url", "audio_url", "consent", "route", "inputs_state")]
    for trigger in (p["video"].upload, p["audio"].upload, p["video_url"].submit, p["audio_url"].submit):
        trigger(page.on_inputs, given, [p["inputs_state"], p["assessment_state"], *panels])
    p["synthetic"].click(
        page.on_synthetic,
        [p["consent"], p["route"], p["inputs_state"]],
        [p["video"], p["audio"], p["inputs_state"], p["assessment_state"], *panels],
    )
    p["consent"].change(
        page.on_consent,
        [p["consent"], p["route"], p["inputs_state"]],
        [p["assessment_state"], *panels],
        trigger_mode="always_last",
    )
    p["route"].change(page.on_route, [p["route"], p["consent"], p["assessment_state"]], panels)


def _wire_run(page: Page, p: dict[str, Any]) -> None:
    """Run, cancel, and the history's actions."""
    history_out = [p["table"], p["job"], p["chart"]]
    shown = [p[name] for name in ("progress", "output", "input_side", "record", "scores", "run")]
    p["run"].click(_enabled(True), None, p["cancel"], queue=False)
    p["run"].click(page.on_run, [p["route"], p["consent"], p["evaluate"], p["assessment_state"]], shown).then(
        _enabled(False), None, p["cancel"]
    ).then(page.on_history, None, history_out)
    p["cancel"].click(page.on_cancel, None, p["cancel_note"])
    p["job"].change(_picked, p["job"], [p["resume"], p["job_cancel"], p["delete"]])
    p["refresh"].click(page.on_history, None, history_out)
    p["table"].select(page.on_pick, None, p["job"])
    for button, handler in (
        (p["resume"], page.on_resume), (p["job_cancel"], page.on_job_cancel), (p["delete"], page.on_delete)
    ):  # fmt: skip
        button.click(handler, p["job"], p["job_note"]).then(page.on_history, None, history_out)
