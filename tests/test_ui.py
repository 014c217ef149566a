"""The web page's logic without a browser: the run gate, the checklist rows, history and spend, staging and
deletion, the running job, and the ``ui`` command's safe defaults. The browser flow is tests/test_ui_browser.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from latentsync_routes import load_settings
from latentsync_routes.types import Cost, CostEstimate, JobRecord
from latentsync_routes.ui import history, render, state
from latentsync_routes.ui.fakes import FAKES_BLOCKED, fake_providers


def _estimate(route: str, amount: float) -> CostEstimate:
    return CostEstimate(
        route=route,
        amount=amount,
        low=amount / 2,
        high=amount * 2,
        is_exact=False,
        basis="b",
        price_source="s",
        price_checked=date(2026, 1, 1),
        expected_wall_seconds=10.0,
    )


def _view(name: str, amount: float, *, stops: tuple[str, ...] = (), uploads: bool = True) -> state.RouteView:
    rows = [state.CheckRow("retention", "pass", "ok")] + [state.CheckRow(c, "STOP", f"{c} says no") for c in stops]
    return state.RouteView(name, "provider storage" if uploads else None, _estimate(name, amount), None, rows)


def _assessment(*views: state.RouteView, consent: str | None = None) -> state.Assessment:
    inputs = state.Inputs(video="v.mp4", audio="a.wav", folder="f")
    return state.Assessment(inputs, consent, {v.name: v for v in views})


# -- the gate ----------------------------------------------------------------------------------------------
def test_the_run_button_stays_disabled_until_inputs_are_checked() -> None:
    decided = state.gate(None, state.CHEAPEST, "signed release")
    assert not decided.enabled and "video" in decided.reason


def test_a_stop_row_keeps_the_run_disabled_and_says_why() -> None:
    assessment = _assessment(_view("fal", 0.2, stops=("consent",)))
    decided = state.gate(assessment, "fal", "")
    assert not decided.enabled
    assert decided.route == "fal" and "STOP" in decided.reason and "consent says no" in decided.reason


def test_a_hosted_route_needs_a_consent_text_even_when_the_policy_does_not_stop() -> None:
    assessment = _assessment(_view("fal", 0.2))  # no STOP row: e.g. policy.require_consent = false
    assert not state.gate(assessment, "fal", "   ").enabled
    assert "consent" in state.gate(assessment, "fal", "").reason
    with_consent = _assessment(_view("fal", 0.2), consent="release #42")
    ready = state.gate(with_consent, "fal", "release #42")
    assert ready.enabled and ready.route == "fal" and "$0.2000" in ready.reason


def test_a_route_that_uploads_nothing_needs_no_consent() -> None:
    assert state.gate(_assessment(_view("local", 0.0, uploads=False)), "local", "").enabled


def test_a_consent_text_not_yet_checked_does_not_enable_the_run() -> None:
    """The checks shown were made for another consent text: nothing runs until they are made again."""
    assessment = _assessment(_view("fal", 0.2), consent="old text")
    decided = state.gate(assessment, "fal", "new text")
    assert not decided.enabled and decided.route is None


def test_cheapest_picks_the_lowest_price_among_routes_that_pass() -> None:
    assessment = _assessment(
        _view("a", 0.01, stops=("licence",)), _view("b", 0.3), _view("c", 0.05), consent="release #7"
    )
    decided = state.gate(assessment, state.CHEAPEST, "release #7")
    assert decided.enabled and decided.route == "c"


def test_cheapest_with_nothing_runnable_explains_a_route_the_user_can_fix() -> None:
    blocked = _view("local", 0.0, stops=("availability",), uploads=False)
    assessment = _assessment(blocked, _view("fal", 0.2, stops=("consent",)), _view("w", 0.1, stops=("consent",)))
    decided = state.gate(assessment, state.CHEAPEST, "")
    assert not decided.enabled and decided.route == "w" and "consent" in decided.reason


def test_check_rows_show_whatever_check_returns() -> None:
    """Rows added later (another check, an outcome other than pass/STOP) are shown as they come."""
    rows = state.check_rows(
        [
            SimpleNamespace(check="consent", passed=False, reason="no basis"),
            SimpleNamespace(check="deadline", passed=True, reason="fits"),
            SimpleNamespace(check="face", passed=True, reason="one face, small", outcome="WARN"),
        ]
    )
    assert [(r.check, r.outcome, r.stops) for r in rows] == [
        ("consent", "STOP", True),
        ("deadline", "pass", False),
        ("face", "WARN", False),
    ]
    warned = _assessment(state.RouteView("fal", None, _estimate("fal", 0.2), None, rows[1:]))
    assert state.gate(warned, "fal", "").enabled


# -- the assessment on the built-in fakes ------------------------------------------------------------------
@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in ("FAL_KEY", "REPLICATE_API_TOKEN", "WAVESPEED_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    with fake_providers(load_settings(home=tmp_path / "home"), fast=True, poll_interval=0.05) as setup:
        yield setup


def test_every_route_is_priced_and_checked_before_anything_runs(fakes: Any) -> None:
    home = Path(fakes.client.settings.home)
    inputs = state.synthetic(home)
    without = state.assess(fakes.client, inputs, None, FAKES_BLOCKED)
    assert set(without.routes) == {"local", "fal", "replicate", "wavespeed"}
    assert all(v.estimate is not None and v.estimate.amount >= 0 for v in without.routes.values())
    for name in ("fal", "replicate", "wavespeed"):
        assert [r.check for r in without.routes[name].stop_rows] == ["consent"]
    assert [r.reason for r in without.routes["local"].stop_rows] == [FAKES_BLOCKED["local"]]
    assert not state.gate(without, "fal", "").enabled
    given = state.assess(fakes.client, inputs, "synthetic", FAKES_BLOCKED)
    assert state.gate(given, "fal", "synthetic").enabled
    assert fakes.urls["fal"].startswith("http://127.0.0.1:")
    assert fakes.client.journal.list() == []  # pricing and checking ran nothing


def test_the_pages_synthetic_media_skip_the_face_check_but_an_upload_of_the_same_clip_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    monkeypatch.setenv("LATENTSYNC_ROUTES_POLICY__FACE_CHECK", "true")  # as a user's default policy has it
    for name in ("FAL_KEY", "REPLICATE_API_TOKEN", "WAVESPEED_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    with fake_providers(load_settings(home=tmp_path / "home"), fast=True, poll_interval=0.05) as setup:
        home = Path(setup.client.settings.home)
        made = state.synthetic(home)
        ours = state.assess(setup.client, made, "synthetic", FAKES_BLOCKED, ["fal"])
        face = [r for r in ours.routes["fal"].checks if r.check == "face"]
        assert face and face[0].outcome != "STOP" and state.gate(ours, "fal", "synthetic").enabled
        uploaded = state.Inputs(
            video=str(shutil.copy(made.video, tmp_path / "v.mp4")),
            audio=str(shutil.copy(made.audio, tmp_path / "a.wav")),
            folder=made.folder,
        )
        theirs = state.assess(setup.client, uploaded, "synthetic", FAKES_BLOCKED, ["fal"])
        assert [r.check for r in theirs.routes["fal"].stop_rows] == ["face"]
        assert not state.gate(theirs, "fal", "synthetic").enabled


def test_inputs_over_a_limit_become_a_stop_row_not_an_exception(tmp_path: Path, fakes: Any) -> None:
    client = fakes.client
    client.settings = client.settings.model_copy(
        update={"policy": client.settings.policy.model_copy(update={"max_video_seconds": 0.5})}
    )
    inputs = state.synthetic(Path(client.settings.home), seconds=1.0)
    assessment = state.assess(client, inputs, "synthetic", FAKES_BLOCKED, ["fal"])
    assert assessment.routes["fal"].stop_rows
    assert not state.gate(assessment, "fal", "synthetic").enabled


# -- staging and deleting ----------------------------------------------------------------------------------
def test_staged_inputs_live_under_the_home_and_only_they_can_be_removed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    source = tmp_path / "clip.MP4"
    source.write_bytes(b"video bytes")
    inputs = state.stage(home, str(source), "https://example.com/voice.wav")
    assert Path(inputs.video).read_bytes() == b"video bytes"
    assert Path(inputs.folder).parent == state.uploads_root(home)
    assert inputs.audio == "https://example.com/voice.wav" and inputs.output.parent == Path(inputs.folder)
    assert state.staged_folder_of(home, [None, inputs.audio, inputs.video]) == Path(inputs.folder).resolve()
    for outside in (tmp_path, home, state.uploads_root(home), source):
        assert not state.remove_staged(home, outside)
    assert source.exists() and Path(inputs.folder).is_dir()
    assert state.remove_staged(home, inputs.folder) and not Path(inputs.folder).exists()


# -- history and spend ------------------------------------------------------------------------------------
def _record(
    job: str, route: str, day: int, *, state_: str = "fetched", actual: float | None = 0.2, failures: float = 0.0
) -> JobRecord:
    return JobRecord(
        job_id=job,
        idempotency_key=job,
        state=state_,
        route=route,
        route_owner="o",
        billing_owner="b",
        model="m",
        model_version="v",
        upload_destination="d",
        retention_policy="r",
        deletion_policy="d",
        cost=Cost(estimated=0.3, actual=actual, billed_failures=failures),
        library_version="0",
        created_at=datetime(2026, 12, day, 10, 0, tzinfo=timezone.utc),
    )


def test_history_rows_and_spend_per_route_per_day() -> None:
    records = [
        _record("j1", "fal", 1),
        _record("j2", "fal", 1, actual=0.1, failures=0.05),
        _record("j3", "wavespeed", 2, actual=None),
        _record("j4", "replicate", 2, state_="failed", actual=None),
        _record("j5", "replicate", 2, state_="failed", actual=None, failures=0.02),
    ]
    rows = history.history_rows(records)
    assert rows[0] == ["j1", "fal", "fetched", "$0.2000", "2026-12-01 10:00"]
    assert rows[2][3] == "$0.3000 (est.)"  # finished without a billed figure: the estimate stands in
    assert rows[3][3] == "$0.0000"  # a failure nobody billed costs nothing
    spend = history.spend_by_day(records)
    assert spend == {date(2026, 12, 1): {"fal": 0.35}, date(2026, 12, 2): {"wavespeed": 0.3, "replicate": 0.02}}
    svg = history.spend_chart_svg(spend)
    assert svg.count('class="ls-bar"') == 3 and 'data-usd="0.350000"' in svg


def test_the_spend_chart_escapes_names_and_says_when_empty() -> None:
    assert "No spend yet" in history.spend_chart_svg({})
    svg = history.spend_chart_svg({date(2026, 12, 1): {"<script>x</script>": 1.0}})
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_panels_escape_what_the_user_typed() -> None:
    typed = "<img src=x onerror=alert(1)>"
    view = state.RouteView(
        "fal",
        "cdn",
        _estimate("fal", 0.2),
        None,
        [state.CheckRow("consent", "pass", f"consent basis given: {typed!r}")],
    )
    for html in (
        render.checklist_html(view),
        render.gate_html(state.Gate(False, "fal", typed)),
        render.estimates_html(_assessment(view)),
    ):
        assert "<img" not in html
    assert "&lt;img" in render.checklist_html(view)


# -- running from the page --------------------------------------------------------------------------------
def _page(client: Any) -> Any:
    from latentsync_routes.ui.app import Page

    return Page(client, FAKES_BLOCKED)


def test_a_run_reports_progress_and_lands_in_the_journal(fakes: Any) -> None:
    page = _page(fakes.client)
    inputs = state.synthetic(page.home)
    assessment = state.assess(fakes.client, inputs, "synthetic", FAKES_BLOCKED, ["fal"])
    handle = page.runs.start("s1", "fal", inputs, assessment.routes["fal"].estimate, "synthetic")
    with pytest.raises(Exception, match="already running"):
        page.runs.start("s1", "fal", inputs, assessment.routes["fal"].estimate, "synthetic")
    assert handle.done.wait(60), "the run did not finish"
    snap = handle.snapshot(fakes.client)
    assert snap.error is None and snap.state == "fetched" and snap.cost_so_far == pytest.approx(0.2)
    assert Path(inputs.output).is_file()
    assert [r.job_id for r in fakes.client.journal.list()] == [snap.job_id]
    assert "fetched" in render.progress_html(snap)


def test_cancel_from_the_page_stops_the_provider_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    with fake_providers(load_settings(home=tmp_path / "home"), fast=True, poll_interval=0.05) as setup:
        setup.servers["fal"].hold_jobs()
        page = _page(setup.client)
        inputs = state.synthetic(page.home)
        estimate = state.assess(setup.client, inputs, "synthetic", FAKES_BLOCKED, ["fal"]).routes["fal"].estimate
        handle = page.runs.start("s1", "fal", inputs, estimate, "synthetic")
        deadline = time.monotonic() + 30
        while handle.snapshot(setup.client).queue_position is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert handle.snapshot(setup.client).queue_position is not None
        assert page.runs.cancel("s1")
        assert handle.done.wait(30)
        record = setup.client.journal.list()[0]
        assert record.state == "cancelled" and handle.error is not None and "Cancel" in handle.error
        assert not page.runs.cancel("s1")  # nothing runs any more


def test_delete_removes_output_staged_inputs_and_the_pages_copies(fakes: Any) -> None:
    page = _page(fakes.client)
    inputs = state.synthetic(page.home)
    estimate = state.assess(fakes.client, inputs, "synthetic", FAKES_BLOCKED, ["fal"]).routes["fal"].estimate
    handle = page.runs.start("s1", "fal", inputs, estimate, "synthetic")
    assert handle.done.wait(60) and handle.result is not None
    copy = page.served / "abc123" / "output.mp4"  # what Gradio keeps of what it served
    copy.parent.mkdir(parents=True)
    copy.write_bytes(Path(inputs.output).read_bytes())
    unrelated = copy.parent.parent / "other" / "keep.bin"
    unrelated.parent.mkdir()
    unrelated.write_bytes(b"not this job's")
    said = page.on_delete(handle.result.job_id)
    assert not Path(inputs.folder).exists() and not copy.exists() and unrelated.exists()
    # the core's delete_job removes the page's staged copies (docs/ui.md); the page adds Gradio's copies
    assert "staged video" in said and "staged audio" in said and "page copy" in said
    assert fakes.client.journal.get(handle.result.job_id).deleted  # the record says what went


# -- the command ---------------------------------------------------------------------------------------
def test_importing_the_package_and_the_cli_loads_no_gradio() -> None:
    code = "import sys, latentsync_routes, latentsync_routes.cli, latentsync_routes.ui; print('gradio' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False"]


def test_the_command_binds_to_loopback_and_warns_before_share(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from latentsync_routes.cli import app

    seen: dict[str, Any] = {}

    def serve(client: Any, **kwargs: Any) -> Any:
        seen.update(kwargs, client=client)
        raise KeyboardInterrupt  # stands for Ctrl+C once serving

    monkeypatch.setattr("latentsync_routes.ui.serve", serve)
    monkeypatch.setenv("LATENTSYNC_ROUTES_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    for name in ("FAL_KEY", "REPLICATE_API_TOKEN", "WAVESPEED_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    done = CliRunner().invoke(app, ["ui", "--fakes", "--share", "--auth", "ann:secret"])
    assert "--share makes this page reachable by anyone" in done.output
    assert seen["host"] == "127.0.0.1" and seen["share"] is True and seen["fakes"] is True
    assert seen["blocked"] == FAKES_BLOCKED
    assert Path(seen["client"].settings.home) == tmp_path / "home" / "ui-fakes"  # fake jobs keep to themselves
    seen.clear()
    quiet = CliRunner().invoke(app, ["ui"])
    assert "--share makes" not in quiet.output and seen["host"] == "127.0.0.1" and seen["fakes"] is False
    assert "other machines on the network" not in quiet.output
    wide = CliRunner().invoke(app, ["ui", "--host", "0.0.0.0", "--auth", "ann:secret"])
    assert "other machines on the network" in wide.output and seen["host"] == "0.0.0.0"
    assert seen["auth"] == ("ann", "secret")


def test_the_command_without_gradio_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from latentsync_routes.cli import app

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    done = CliRunner().invoke(app, ["ui"])
    assert done.exit_code == 2 and "latentsync-routes[ui]" in done.output


def test_the_page_handlers_gate_the_button_as_the_inputs_and_consent_change(tmp_path: Path, fakes: Any) -> None:
    from latentsync_routes.testing import write_test_audio, write_test_video

    page = _page(fakes.client)
    (page.served / "up").mkdir()  # where Gradio puts what the browser uploaded
    video = write_test_video(page.served / "up" / "clip.mp4", seconds=1.0)
    audio = write_test_audio(page.served / "up" / "voice.wav", seconds=1.0)
    half = page.on_inputs(str(video), None, "", "", "", "fal", None)
    assert half[0] is None and half[-1]["interactive"] is False  # one input is not enough
    inputs, assessment, estimates, checklist, gate, button = page.on_inputs(
        str(video), str(audio), "", "", "", "fal", None
    )
    assert Path(inputs.video).parent.parent == state.uploads_root(page.home) and Path(inputs.video).is_file()
    assert 'data-route="wavespeed"' in estimates and 'data-outcome="STOP"' in checklist
    assert button["interactive"] is False and 'data-gate="blocked"' in gate
    assessment, *_, gate, button = page.on_consent("release #7", "fal", inputs)
    assert button["interactive"] is True and "Ready on fal" in gate
    *_, gate, button = page.on_route("local", "release #7", assessment)
    assert button["interactive"] is False and "under --fakes" in gate
    again = page.on_inputs(str(video), str(audio), "", "", "", "fal", inputs)  # new inputs: the old folder goes
    assert not Path(inputs.folder).exists() and Path(again[0].folder).is_dir()
    assert page.prune() == [Path(again[0].folder)]  # never run: a restarted page clears it


def test_history_actions_on_a_finished_job(fakes: Any) -> None:
    page = _page(fakes.client)
    inputs = state.synthetic(page.home)
    estimate = state.assess(fakes.client, inputs, "synthetic", FAKES_BLOCKED, ["wavespeed"]).routes["wavespeed"]
    handle = page.runs.start("s", "wavespeed", inputs, estimate.estimate, "synthetic")
    assert handle.done.wait(60) and handle.result is not None
    job = handle.result.job_id
    rows, choices, chart = page.on_history()
    assert rows[0][:3] == [job, "wavespeed", "fetched"] and choices["choices"] == [job]
    assert 'data-route="wavespeed"' in chart
    assert "fetched" in page.on_resume(job)  # finished: resume pays nothing and returns its result
    assert page.on_job_cancel(job) == f"Job {job}: fetched"
    assert page.prune() == []  # a job's folder stays until the job is deleted
    assert "Choose a job first." == page.on_delete(None) == page.on_resume("")


def test_the_command_says_where_it_serves_in_json_and_closes_on_ctrl_c(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from latentsync_routes.cli import app

    closed: list[bool] = []
    demo = SimpleNamespace(local_url="http://127.0.0.1:7999/", share_url=None, close=lambda: closed.append(True))

    def ctrl_c() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("latentsync_routes.ui.serve", lambda client, **kwargs: demo)
    monkeypatch.setattr("latentsync_routes.cli.ui._wait_forever", ctrl_c)
    monkeypatch.setenv("LATENTSYNC_ROUTES_HOME", str(tmp_path / "home"))
    done = CliRunner().invoke(app, ["ui", "--fakes", "--json"])
    assert done.exit_code == 0, done.output
    served = json.loads(done.stdout)
    assert served == {"url": "http://127.0.0.1:7999/", "host": "127.0.0.1", "fakes": True, "share_url": None}
    assert closed == [True]


def test_an_upload_that_vanished_enables_nothing(fakes: Any, tmp_path: Path) -> None:
    page = _page(fakes.client)
    gone = page.served / "gone"
    *_, gate, button = page.on_inputs(str(gone / "v.mp4"), str(gone / "a.wav"), "", "", "x", "fal", None)
    assert "FileNotFoundError" in gate and button["interactive"] is False
