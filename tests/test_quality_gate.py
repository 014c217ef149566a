"""``evaluate=True`` and the ``min_sync_confidence`` gate, end to end on the loopback fakes.

Random SyncNet weights (written here) score real talking-face clips that the fakes return as their
output; the gate is set just above or below the score the scorer computes for that clip, so each test
knows which side of the gate the job must land on. Scores are computed once per process for the same
bytes and weights (sync_gate.py), so the two clips are scored once each.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mediapipe")

from latentsync_routes import (  # noqa: E402
    LipSyncClient,
    SyncQualityFailed,
    SyncWeightsMissing,
    money,
)
from latentsync_routes.quality import SyncNet  # noqa: E402
from latentsync_routes.sync_gate import SyncGate, load_weights  # noqa: E402
from latentsync_routes.sync_record import SyncQuality  # noqa: E402
from latentsync_routes.testing import FakeFal, FakeReplicate  # noqa: E402
from tests.hosted_fixtures import FAL_KEY, REPLICATE_TOKEN, fal, hosted_env, rep  # noqa: E402, F401
from tests.quality_media import face_frames, frame_energy, speech_like, talking_clip, write_clip, write_wav  # noqa: E402

pytestmark = pytest.mark.slow  # each clip is decoded, tracked and scored once (2.2 s of 448 px video)

SECONDS = 2.2  # a face track needs more than 50 frames


class Clips:
    """Two outputs a fake can return: one whose mouth follows its audio, one whose mouth follows other audio."""

    def __init__(self, root: Path) -> None:
        self.synced, audio = talking_clip(root / "synced.mp4", SECONDS, seed=1)
        other = speech_like(SECONDS, seed=7)
        frames = face_frames(frame_energy(other, int(round(SECONDS * 25))), seed=1)
        self.unsynced = write_clip(root / "unsynced.mp4", frames, audio)
        self.voice = write_wav(root / "voice.wav", audio)
        torch.manual_seed(5)
        self.weights = root / "syncnet_random.model"
        torch.save(SyncNet().state_dict(), self.weights)
        gate = SyncGate(*load_weights(self.weights))
        self.scores = {name: gate.score_output(getattr(self, name)) for name in ("synced", "unsynced")}
        low, high = sorted(self.scores, key=lambda name: self.scores[name].lse_c or 0.0)
        self.low, self.high = getattr(self, low), getattr(self, high)
        self.low_c, self.high_c = self.scores[low].lse_c, self.scores[high].lse_c
        assert self.low_c is not None and self.high_c is not None and self.low_c < self.high_c


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Clips:
    return Clips(tmp_path_factory.mktemp("gate-clips"))


def client(**kwargs: Any) -> LipSyncClient:
    return LipSyncClient(
        route="fal", credentials={"fal": FAL_KEY, "replicate": REPLICATE_TOKEN}, consent="test", **kwargs
    )


def run(clips: Clips, out: Path, **options: Any) -> Any:
    return client().run(clips.synced, clips.voice, out, syncnet_weights=clips.weights, **options)


def test_the_scores_are_computed_end_to_end_and_deterministic(clips: Clips) -> None:
    for scores in clips.scores.values():
        assert scores.error is None and scores.tracks and scores.lse_c is not None and scores.lse_d is not None
        assert math.isfinite(scores.lse_c) and scores.lse_d > 0
    again = SyncGate(*load_weights(clips.weights))
    from latentsync_routes import sync_gate

    sync_gate._scores.clear()  # a fresh scoring of the same bytes gives the same numbers
    fresh = again.score_output(clips.low)
    assert fresh.lse_c == pytest.approx(clips.low_c, abs=1e-6)


def test_evaluate_puts_the_scores_in_the_result_and_the_record(clips: Clips, fal: FakeFal, tmp_path: Path) -> None:
    fal.result_video = clips.low.read_bytes()
    result = run(clips, tmp_path / "out.mp4", evaluate=True)
    scores = result.sync_scores
    assert scores is not None and scores.gate == "not gated" and scores.min_sync_confidence is None
    assert scores.lse_c == pytest.approx(clips.low_c) and scores.tracks[0]["windows"] > 0
    assert scores.weights_sha256 and scores.weights_pin == "user-supplied (not pinned)"
    stored = client().journal.get(result.job_id)
    assert stored is not None and stored.sync_scores == scores and stored.state == "fetched"
    assert json.loads(stored.model_dump_json())["sync_scores"]["lse_c"] == pytest.approx(clips.low_c)


def test_a_job_under_the_gate_is_failed_quality_and_keeps_its_output_and_cost(
    clips: Clips, fal: FakeFal, tmp_path: Path
) -> None:
    fal.result_video = clips.low.read_bytes()
    gate = clips.low_c + 0.5
    with pytest.raises(SyncQualityFailed) as caught:
        run(clips, tmp_path / "out.mp4", min_sync_confidence=gate)
    failed = caught.value
    assert failed.exit_code == 4 and "failed-quality" in failed.message and f"{gate:g}" in failed.message
    assert failed.result.output_path is not None and failed.result.output_path.is_file()
    record = client().journal.get(failed.job_id or "")
    assert record is not None and record.state == "fetched"
    assert record.sync_scores is not None and record.sync_scores.gate == "failed-quality"
    assert record.sync_scores.min_sync_confidence == gate and record.cost.actual and record.cost.actual > 0
    assert failed.to_dict()["sync_scores"]["gate"] == "failed-quality"
    jobs = len(fal.jobs)
    with pytest.raises(SyncQualityFailed):  # asked again: judged from the record, never paid twice
        run(clips, tmp_path / "out.mp4", min_sync_confidence=gate)
    assert len(fal.jobs) == jobs
    (row,) = client().journal.spend()
    assert row.accepted == 0 and row.per_accepted_job is None and row.actual == record.cost.actual
    passed = run(clips, tmp_path / "out.mp4", min_sync_confidence=clips.low_c - 0.5)  # a lower gate: same job
    assert passed.sync_scores is not None and passed.sync_scores.gate == "passed" and len(fal.jobs) == jobs
    (row,) = client().journal.spend()
    assert row.accepted == 1 and row.per_accepted_job == record.cost.actual


def test_a_job_over_the_gate_passes(clips: Clips, fal: FakeFal, tmp_path: Path) -> None:
    fal.result_video = clips.high.read_bytes()
    result = run(clips, tmp_path / "out.mp4", min_sync_confidence=clips.high_c - 0.01)
    assert result.sync_scores is not None and result.sync_scores.gate == "passed"


def test_no_weights_is_refused_before_any_upload(fal: FakeFal, hosted_env: Path, tmp_path: Path, clips: Clips) -> None:
    for options in ({"evaluate": True}, {"min_sync_confidence": 2.0}):
        with pytest.raises(SyncWeightsMissing) as caught:
            client().run(clips.synced, clips.voice, tmp_path / "out.mp4", **options)
        assert "latentsync-routes download --syncnet" in caught.value.message and caught.value.exit_code == 2
    with pytest.raises(SyncWeightsMissing):
        client().submit(clips.synced, clips.voice, tmp_path / "out.mp4", evaluate=True)
    assert fal.uploads == [] and fal.jobs == {}
    assert client().journal.list() == []


def test_the_setting_is_honoured_and_known(
    clips: Clips, fal: FakeFal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from latentsync_routes.config import known_names
    from latentsync_routes.env_check import unknown

    monkeypatch.setenv("LATENTSYNC_ROUTES_MIN_SYNC_CONFIDENCE", str(clips.low_c + 0.5))
    monkeypatch.setenv("LATENTSYNC_ROUTES_SYNCNET_WEIGHTS", str(clips.weights))
    assert unknown(dict.fromkeys(("LATENTSYNC_ROUTES_MIN_SYNC_CONFIDENCE", "LATENTSYNC_ROUTES_SYNCNET_WEIGHTS"), ""),
                   known_names()) == []  # fmt: skip
    fal.result_video = clips.low.read_bytes()
    with pytest.raises(SyncQualityFailed):
        client().run(clips.synced, clips.voice, tmp_path / "out.mp4")
    job = client().submit(clips.synced, clips.voice, tmp_path / "other.mp4")  # Job.wait judges it too
    with pytest.raises(SyncQualityFailed):
        job.wait()
    monkeypatch.setenv("LATENTSYNC_ROUTES_MIN_SYNC_CONFIDENCE", "nan")
    with pytest.raises(ValueError, match="MIN_SYNC_CONFIDENCE"):
        client()


def test_fallback_after_failed_quality_only_when_allowed(
    clips: Clips, fal: FakeFal, rep: FakeReplicate, tmp_path: Path
) -> None:
    fal.result_video, rep.result_video = clips.low.read_bytes(), clips.high.read_bytes()
    gate = (clips.low_c + clips.high_c) / 2
    routes = {"routes": ["fal", "replicate"], "fallback": True, "min_sync_confidence": gate}
    with pytest.raises(SyncQualityFailed) as caught:
        run(clips, tmp_path / "a.mp4", **routes)
    assert caught.value.route == "fal" and rep.jobs == {}  # not allowed: the next route is never tried
    result = run(clips, tmp_path / "a.mp4", fallback_on_quality=True, **routes)
    assert result.route == "replicate" and result.sync_scores is not None and result.sync_scores.gate == "passed"
    assert result.output_path == tmp_path / "a.mp4" and result.output_path.read_bytes() == clips.high.read_bytes()
    (earlier,) = result.record.fallback_from
    assert earlier["route"] == "fal" and earlier["error"]["type"] == "SyncQualityFailed"
    assert earlier["error"]["sync_scores"]["gate"] == "failed-quality" and len(rep.jobs) == 1
    first = client().journal.get(earlier["job_id"])
    assert first is not None and first.output_path and Path(first.output_path).read_bytes() == clips.low.read_bytes()
    assert len(fal.jobs) == 1  # the fal job of the first call is judged again from its record, not paid again
    records = client().journal.list()
    paid = [money.micros(r.cost.actual) for r in records]
    assert len(records) == 2 and all(paid)
    rows = client().journal.spend()
    spent = sum(money.micros(r.spent) for r in rows)
    assert spent == sum(paid)  # the budget's spend counts both routes' jobs
    accepted = sum(r.accepted for r in rows)
    assert accepted == 1


def test_sync_quality_record_round_trips() -> None:
    scores = SyncQuality(lse_c=1.5, lse_d=8.0, av_offset=2, weights_sha256="ab", weights_pin="p", gate="passed")
    assert SyncQuality.model_validate_json(scores.model_dump_json()) == scores and not scores.failed


def test_a_batch_reports_the_scores_and_the_gate(clips: Clips, fal: FakeFal, tmp_path: Path) -> None:
    fal.result_video = clips.low.read_bytes()
    rows = [
        {"video": str(clips.synced), "audio": str(clips.voice), "output": str(tmp_path / "a.mp4")},
        {"video": str(clips.synced), "audio": str(clips.voice), "output": str(tmp_path / "b.mp4"),
         "min_sync_confidence": clips.low_c + 0.5},
    ]  # fmt: skip
    report = client().run_many(rows, route="fal", evaluate=True, syncnet_weights=clips.weights, report=tmp_path / "r")
    scored, gated = report.jobs
    assert scored.state == "fetched" and scored.sync is not None and scored.sync["gate"] == "not gated"
    assert gated.state == "failed-quality" and gated.sync is not None and gated.sync["gate"] == "failed-quality"
    assert gated.actual and gated.output_path and Path(gated.output_path).is_file() and not report.ok
    assert gated.error is not None and gated.error["type"] == "SyncQualityFailed"
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["jobs"][1]["sync"]["lse_c"] == pytest.approx(clips.low_c)
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0].endswith("lse_c,lse_d,av_offset,sync_gate") and lines[2].endswith(",failed-quality")


def test_a_batch_moves_on_after_failed_quality_only_when_allowed(
    clips: Clips, fal: FakeFal, rep: FakeReplicate, tmp_path: Path
) -> None:
    """``cheapest`` rows with ``fallback``: a job under the gate stays failed-quality (the next route is never
    tried) unless ``fallback_on_quality``; then the next route runs, and the plan's worst case counts both."""
    from latentsync_routes.batch import plan_batch
    from latentsync_routes.batch.plan import FallbackRule
    from latentsync_routes.batch.runner import load_jobs

    fal.result_video = rep.result_video = clips.low.read_bytes()
    gate = (clips.low_c + clips.high_c) / 2
    options: dict[str, Any] = {"route": "cheapest", "among": ["fal", "replicate"], "fallback": True}
    options.update(min_sync_confidence=gate, syncnet_weights=clips.weights)

    def rows(name: str) -> list[dict[str, str]]:
        return [{"video": str(clips.synced), "audio": str(clips.voice), "output": str(tmp_path / name)}]

    (stopped,) = client().run_many(rows("a.mp4"), **options).jobs
    assert stopped.state == "failed-quality" and len(fal.jobs) + len(rep.predictions) == 1  # one route only
    first, second = stopped.route, ({"fal", "replicate"} - {stopped.route}).pop()
    (rep if second == "replicate" else fal).result_video = clips.high.read_bytes()
    (moved,) = client().run_many(rows("b.mp4"), fallback_on_quality=True, **options).jobs
    assert moved.state == "fetched" and moved.route == second and moved.sync is not None
    made = {"fal": len(fal.jobs), "replicate": len(rep.predictions)}
    assert moved.sync["gate"] == "passed" and made == {first: 2, second: 1}  # a new output: a new first job
    assert moved.result is not None and moved.result.record.fallback_from[0]["route"] == first
    planned = load_jobs(rows("c.mp4"))  # the plans' worst case: the dearest route, then both routes paid
    one = plan_batch(client(), planned, route="cheapest", among=["fal", "replicate"], fallback=FallbackRule(True))
    both = plan_batch(
        client(), planned, route="cheapest", among=["fal", "replicate"], fallback=FallbackRule(True, on_quality=True)
    )
    estimates = [client().estimate(clips.synced, clips.voice, route=r) for r in ("fal", "replicate")]
    highs = sorted(money.micros(e.high) for e in estimates)
    assert money.micros(one.high) == highs[-1] and money.micros(both.high) == sum(highs)


def test_a_batch_without_weights_is_refused_before_anything_runs(fal: FakeFal, clips: Clips, tmp_path: Path) -> None:
    rows = [{"video": str(clips.synced), "audio": str(clips.voice), "output": str(tmp_path / "a.mp4"),
             "min_sync_confidence": 1}]  # fmt: skip
    with pytest.raises(SyncWeightsMissing):
        client().run_many(rows, route="fal")
    assert fal.uploads == [] and fal.jobs == {}


def test_the_cli_gate_exits_4_with_the_scores(clips: Clips, fal: FakeFal, tmp_path: Path) -> None:
    from tests.cli_helpers import run_cli

    fal.result_video = clips.low.read_bytes()
    checks_off = {f"LATENTSYNC_ROUTES_POLICY__{name}_CHECK": "false" for name in ("FACE", "DEADLINE")}
    env = {"LATENTSYNC_ROUTES_FAL_BASE_URL": fal.url, "FAL_KEY": FAL_KEY, **checks_off}
    out = tmp_path / "out.mp4"
    args = ("run", str(clips.synced), str(clips.voice), "-o", str(out), "--route", "fal", "--consent", "test")
    done = run_cli(*args, "--min-sync-confidence", f"{clips.low_c + 0.5}", "--syncnet-weights", str(clips.weights),
                   "--json", home=tmp_path / "home", env=env)  # fmt: skip
    assert done.returncode == 4, done.stderr
    error = json.loads(done.stdout)["error"]
    assert error["type"] == "SyncQualityFailed" and error["sync_scores"]["gate"] == "failed-quality"
    assert error["output_path"] == str(out) and out.is_file()
    refused = run_cli(*args, "--evaluate", "--json", home=tmp_path / "other", env=env)
    assert refused.returncode == 2 and "download --syncnet" in json.loads(refused.stdout)["error"]["message"]


def test_jobs_spend_per_accepted_job_is_exact(tmp_path: Path) -> None:
    from latentsync_routes.journal import Journal
    from tests.cli_helpers import run_cli
    from tests.test_journal import record

    journal = Journal(tmp_path / "jobs.sqlite3")
    for job_id, actual, gate in (("a", 0.1, "passed"), ("b", 0.2, None), ("c", 0.05, "failed-quality"),
                                 ("d", 0.000001, "passed")):  # fmt: skip
        r = record(job_id, key=job_id, state="fetched")
        r.cost.actual = actual
        if gate is not None:
            r.sync_scores = SyncQuality(lse_c=1.0, weights_sha256="w", weights_pin="p", gate=gate)  # type: ignore[arg-type]
        journal.save(r)
    (row,) = journal.spend()
    assert row.accepted == 3 and row.spent == 0.350001
    assert money.micros(row.per_accepted_job) == 116667  # 350001 / 3 = 116667 exactly
    done = run_cli("jobs", "spend", "--json", home=tmp_path)
    assert done.returncode == 0, done.stderr
    (shown,) = json.loads(done.stdout)
    assert shown["accepted"] == 3 and shown["per_accepted_job"] == 0.116667
    human = run_cli("jobs", "spend", home=tmp_path).stdout
    assert "per accepted job" in human and "$0.1167 over 3 accepted jobs" in human
    listed = run_cli("jobs", "list", home=tmp_path, env={"COLUMNS": "200"}).stdout
    assert listed.count("failed-quality") == 1, listed
    pytest.importorskip("gradio")
    from latentsync_routes.ui.history import history_rows

    assert [row[2] for row in history_rows(journal.list())].count("fetched (failed-quality)") == 1
    from latentsync_routes.spend import per_accepted_job

    assert per_accepted_job(0.1, 3) == 0.033333 and per_accepted_job(0.000005, 2) == 0.000002  # half-even
    assert per_accepted_job(1.0, 0) is None


def test_the_page_scores_beside_the_output(clips: Clips, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gradio")
    from latentsync_routes import load_settings
    from latentsync_routes.ui import render, state
    from latentsync_routes.ui.app import Page
    from latentsync_routes.ui.fakes import FAKES_BLOCKED, fake_providers

    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    monkeypatch.setenv("LATENTSYNC_ROUTES_HOME", str(tmp_path / "home"))
    with fake_providers(load_settings(home=tmp_path / "home"), fast=True, poll_interval=0.05) as setup:
        setup.servers["fal"].result_video = clips.low.read_bytes()  # type: ignore[attr-defined]
        page = Page(setup.client, FAKES_BLOCKED)
        inputs = state.synthetic(page.home)
        estimate = state.assess(setup.client, inputs, "synthetic", FAKES_BLOCKED, ["fal"]).routes["fal"].estimate
        assert estimate is not None
        with pytest.raises(SyncWeightsMissing):  # refused before the upload: nothing in the journal
            page.runs.start("s1", "fal", inputs, estimate, "synthetic", evaluate=True)
        assert setup.client.journal.list() == []
        setup.client.settings = setup.client.settings.model_copy(update={"syncnet_weights": clips.weights})
        handle = page.runs.start("s1", "fal", inputs, estimate, "synthetic", evaluate=True)
        assert handle.done.wait(120) and handle.error is None and handle.result is not None
        shown = render.scores_html(handle.result.sync_scores, asked=True)
        assert 'data-gate="not gated"' in shown and f"{clips.low_c:.3f}" in shown
    hostile = SyncQuality(error="<script>alert(1)</script>", weights_sha256="w", weights_pin="p", gate="failed-quality")
    page_html = render.scores_html(hostile, asked=True)
    assert "<script>" not in page_html and "&lt;script&gt;" in page_html


def test_the_async_client_scores_and_gates(clips: Clips, fal: FakeFal, tmp_path: Path) -> None:
    import asyncio

    from latentsync_routes import AsyncLipSyncClient

    fal.result_video = clips.low.read_bytes()

    async def both() -> tuple[Any, BaseException | None]:
        async with AsyncLipSyncClient(route="fal", credentials={"fal": FAL_KEY}, consent="test") as aclient:
            options = {"syncnet_weights": clips.weights}
            scored = await aclient.run(clips.synced, clips.voice, tmp_path / "a.mp4", evaluate=True, **options)
            job = await aclient.submit(
                clips.synced, clips.voice, tmp_path / "b.mp4", min_sync_confidence=clips.low_c + 0.5, **options
            )
            try:
                await job.wait()
            except SyncQualityFailed as exc:
                return scored, exc
            return scored, None

    scored, failed = asyncio.run(both())
    assert scored.sync_scores is not None and scored.sync_scores.lse_c == pytest.approx(clips.low_c)
    assert isinstance(failed, SyncQualityFailed) and failed.result.sync_scores is not None


def test_a_gate_that_is_no_number_is_refused_before_anything(fal: FakeFal, clips: Clips, tmp_path: Path) -> None:
    from latentsync_routes import InvalidParameter

    for options in ({"min_sync_confidence": True}, {"min_sync_confidence": float("nan")},
                    {"min_sync_confidence": 3.0, "evaluate": False}):  # fmt: skip
        with pytest.raises(InvalidParameter, match="min_sync_confidence"):
            client().run(clips.synced, clips.voice, tmp_path / "out.mp4", syncnet_weights=clips.weights, **options)
    assert fal.uploads == [] and fal.jobs == {}
