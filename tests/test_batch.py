"""Batch runs: manifests refused whole, budgets before any request, per-route limits, stop, resume by re-run,
route choice and fallback; against the loopback fakes through the real provider clients."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from latentsync_routes import LipSyncClient
from latentsync_routes.batch import BatchItem, ManifestError, StopSignal, ThreadExecutor, read_manifest
from latentsync_routes.errors import BudgetExceeded, JobFailed, LatentSyncError
from latentsync_routes.testing import Fault
from tests.hosted_fixtures import FAL_KEY, REPLICATE_TOKEN, fal, hosted_env, media, rep  # noqa: F401

ALL_ENDPOINTS = ("cdn_upload", "submit", "status", "result", "file_download", "cancel")


def _client(**kwargs: Any) -> LipSyncClient:
    return LipSyncClient(
        route="fal", credentials={"fal": FAL_KEY, "replicate": REPLICATE_TOKEN}, consent="test", **kwargs
    )


def _csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns = sorted(
        {key for row in rows for key in row},
        key=lambda c: ("video", "audio", "output").index(c) if c in ("video", "audio", "output") else 10,
    )
    lines = [",".join(columns)] + [",".join(str(row.get(c, "")) for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


# -- manifests ---------------------------------------------------------------------------------------------
def test_csv_and_jsonl_manifests_resolve_paths_against_their_folder(tmp_path: Path) -> None:
    folder = tmp_path / "cat"
    folder.mkdir()
    _csv(folder / "m.csv", [{"video": "a.mp4", "audio": "a.wav", "output": "out/a.mp4", "seed": "7"}])
    (folder / "m.jsonl").write_text(
        json.dumps(
            {"video": "https://example.com/v.mp4", "audio": "/abs/a.wav", "output": "b.mp4", "guidance_scale": 2.0}
        )
        + "\n"
    )
    (csv_job,) = read_manifest(folder / "m.csv")
    (jsonl_job,) = read_manifest(folder / "m.jsonl")
    assert csv_job.video == str(folder / "a.mp4") and csv_job.output == str(folder / "out/a.mp4")
    assert csv_job.seed == 7 and csv_job.line == 2
    assert jsonl_job.video == "https://example.com/v.mp4" and jsonl_job.audio == "/abs/a.wav"
    assert jsonl_job.output == str(folder / "b.mp4") and jsonl_job.guidance_scale == 2.0


def test_a_manifest_with_bad_rows_is_refused_whole_naming_each_line(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text(
        "video,audio,output,seed,colour\n"
        "a.mp4,a.wav,a.mp4,1,\n"
        "b.mp4,b.wav,,2,\n"
        "c.mp4,c.wav,c.mp4,x,\n"
        "d.mp4,d.wav,d.mp4,4,red\n"
    )
    with pytest.raises(ManifestError) as caught:
        read_manifest(path)
    lines = [line for line, _ in caught.value.problems]
    assert lines == [1, 3, 4]
    assert "colour" in caught.value.problems[0][1]
    assert "output" in caught.value.problems[1][1] and "seed" in caught.value.problems[2][1]
    assert caught.value.exit_code == 2


def test_jsonl_bad_lines_are_named(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"video": "a", "audio": "b", "output": "c"}\nnot json\n[1]\n{"video": "a", "audio": "b"}\n')
    with pytest.raises(ManifestError) as caught:
        read_manifest(path)
    assert [line for line, _ in caught.value.problems] == [2, 3, 4]


# -- the thread executor -----------------------------------------------------------------------------------
class _SlowClient:
    """Stands in for LipSyncClient.run to observe the executor's concurrency and stop handling."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.running: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.lock = threading.Lock()
        self.cancelled: list[str] = []

    def run(self, video: str, audio: str, output: Path, *, route: str, cancel_event: threading.Event, **_: Any) -> Any:
        with self.lock:
            self.running[route] = self.running.get(route, 0) + 1
            self.peak[route] = max(self.peak.get(route, 0), self.running[route])
        try:
            if cancel_event.wait(self.seconds):
                self.cancelled.append(video)
                raise LatentSyncError("cancelled")
            return LatentSyncError("fine")  # any object: the executor passes it through
        finally:
            with self.lock:
                self.running[route] -= 1


class _Events:
    def __init__(self) -> None:
        self.begun: list[int] = []
        self.ended: list[int] = []

    def started(self, item: BatchItem) -> None:
        self.begun.append(item.index)

    def progress(self, item: BatchItem, message: str, fraction: float | None) -> None: ...

    def finished(self, item: BatchItem, outcome: Any) -> None:
        self.ended.append(item.index)


def _items(count: int, route: str = "fal") -> list[BatchItem]:
    return [
        BatchItem(index=i, line=i + 2, video=f"v{i}", audio="a", output=Path(f"o{i}.mp4"), route=route)
        for i in range(count)
    ]


def test_thread_executor_keeps_each_route_under_its_limit() -> None:
    client = _SlowClient(0.05)
    items = _items(8, "fal") + [
        BatchItem(index=8 + i, line=0, video=f"r{i}", audio="a", output=Path(f"r{i}"), route="replicate")
        for i in range(6)
    ]
    events = _Events()
    outcomes = ThreadExecutor().run(
        client,
        items,
        limits={"fal": 3, "replicate": 2},  # type: ignore[arg-type]
        events=events,
        stop=StopSignal(),
    )
    assert sorted(outcomes) == list(range(14))
    assert client.peak == {"fal": 3, "replicate": 2}
    assert sorted(events.begun) == sorted(events.ended) == list(range(14))


def test_stop_with_cancel_cancels_running_jobs_and_starts_no_new_one() -> None:
    client = _SlowClient(10.0)
    stop = StopSignal()
    threading.Timer(0.3, lambda: stop.stop(cancel_running=True)).start()
    began = time.monotonic()
    outcomes = ThreadExecutor().run(
        client,
        _items(5),
        limits={"fal": 2},  # type: ignore[arg-type]
        events=_Events(),
        stop=stop,
    )
    assert time.monotonic() - began < 5
    assert sorted(client.cancelled) == ["v0", "v1"]
    assert [type(outcomes[i]).__name__ for i in range(5)] == ["LatentSyncError"] * 2 + ["NotStarted"] * 3


# -- batches on the fakes ----------------------------------------------------------------------------------
def _manifest(tmp_path: Path, media: tuple[Path, Path], count: int, route_of: Any) -> Path:
    video, audio = media
    rows = [
        {"video": str(video), "audio": str(audio), "output": f"out/{i}.mp4", "route": route_of(i)} for i in range(count)
    ]
    return _csv(tmp_path / "manifest.csv", rows)


@pytest.mark.slow
def test_fifty_jobs_with_faults_end_once_each_and_a_rerun_asks_nothing_more(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: Any,
    rep: Any,  # noqa: F811
) -> None:
    manifest = _manifest(tmp_path, media, 50, lambda i: "fal" if i % 2 else "replicate")
    fal.faults.status.extend([Fault.status(503)] * 3)
    rep.faults.get.extend([Fault.status(502)] * 2)
    fal.fail_job(status_code=500)
    rep.fail_job()
    client = _client()
    report = client.run_many(manifest, concurrency={"fal": 6, "replicate": 6}, report=tmp_path / "report")
    states = [job.state for job in report.jobs]
    assert states.count("failed") == 2 and states.count("fetched") == 48
    assert len(fal.jobs) == 25 and len(rep.predictions) == 25  # one provider job per row, none twice
    for job in report.jobs:
        if job.state == "fetched":
            assert job.output_path and Path(job.output_path).stat().st_size > 0
        else:
            assert job.error and job.error["type"] in ("JobFailed", "ProviderError") and job.job_id
    written = json.loads((tmp_path / "report.json").read_text())
    assert len(written["jobs"]) == 50 and written["totals"]["states"] == {"fetched": 48, "failed": 2}
    assert (tmp_path / "report.csv").read_text().count("\n") == 51
    before = len(fal.requests) + len(rep.requests)
    again = _client().run_many(manifest)
    assert [j.state for j in again.jobs] == states
    assert len(fal.requests) + len(rep.requests) == before  # finished and failed jobs ask the providers nothing


def test_a_batch_over_budget_is_refused_before_any_request(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: Any,
    rep: Any,  # noqa: F811
) -> None:
    manifest = _manifest(tmp_path, media, 4, lambda i: "fal")
    with pytest.raises(BudgetExceeded) as caught:
        _client().run_many(manifest, budget=0.10)
    assert caught.value.exit_code == 5 and "nothing was run" in str(caught.value)
    assert fal.requests == [] and rep.requests == []


def test_a_policy_stop_or_an_output_clash_refuses_the_whole_batch(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: Any,  # noqa: F811
) -> None:
    video, audio = media
    rows = [
        {"video": str(video), "audio": str(audio), "output": "a.mp4"},
        {"video": str(video), "audio": str(audio), "output": "a.mp4", "seed": 3},
    ]
    with pytest.raises(ManifestError) as clash:
        _client().run_many(_csv(tmp_path / "clash.csv", rows))
    assert [line for line, _ in clash.value.problems] == [2, 3] and clash.value.exit_code == 2
    no_consent = LipSyncClient(route="fal", credentials={"fal": FAL_KEY})
    with pytest.raises(ManifestError) as stop:
        no_consent.run_many(_csv(tmp_path / "m.csv", rows[:1]))
    assert stop.value.exit_code == 3 and "consent" in str(stop.value)
    assert fal.requests == []


def test_cheapest_chooses_per_job_and_says_why(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: Any,
    rep: Any,  # noqa: F811
) -> None:
    client = _client()
    expected = {e.route: e.amount for e in client.estimate_all(*media) if e.route in ("fal", "replicate")}
    cheapest = min(expected, key=lambda r: expected[r])
    result = client.run(*media, tmp_path / "out.mp4", route="cheapest", routes=["cheapest", "fal", "replicate"])
    assert result.route == cheapest
    assert result.record.route_choice and result.record.route_choice.startswith("cheapest of 2 usable route(s)")
    stored = client.journal.get(result.job_id)
    assert stored is not None and stored.route_choice == result.record.route_choice


def test_fallback_moves_on_after_a_failed_provider_job_and_keeps_both_in_one_record(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: Any,
    rep: Any,  # noqa: F811
) -> None:
    fal.fail_job(status_code=500)
    result = _client().run(*media, tmp_path / "out.mp4", routes=["fal", "replicate"], fallback=True)
    assert result.route == "replicate" and len(fal.jobs) == 1 and len(rep.predictions) == 1
    (first,) = result.record.fallback_from
    assert first["route"] == "fal" and first["state"] == "failed" and first["error"]["type"] == "JobFailed"
    assert "cost" in first
    assert "cost nothing" in first["fallback"]  # fal never bills a server error: moving on pays once


def test_fallback_stops_after_a_billed_failure_and_says_why(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: Any,
    rep: Any,  # noqa: F811
) -> None:
    rep.fail_job()  # a failed prediction is billed for its run time (replicate facts.py: failed-billing)
    client = _client()
    with pytest.raises(JobFailed) as caught:
        client.run(*media, tmp_path / "out.mp4", routes=["replicate", "fal"], fallback=True)
    assert len(rep.predictions) == 1 and len(fal.jobs) == 0  # one output was asked for: not paid on two routes
    assert "no fallback" in caught.value.message and "--fallback-after-billed-failure" in caught.value.message
    record = client.journal.get(caught.value.job_id or "")
    assert record is not None and record.cost.worst_case() > 0
    assert record.fallback_note is not None and "is billed" in record.fallback_note


def test_fallback_after_a_billed_failure_only_when_allowed(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: Any,
    rep: Any,  # noqa: F811
) -> None:
    rep.fail_job()
    result = _client().run(
        *media, tmp_path / "out.mp4", routes=["replicate", "fal"], fallback=True, fallback_after_billed_failure=True
    )
    assert result.route == "fal" and len(rep.predictions) == 1 and len(fal.jobs) == 1
    (first,) = result.record.fallback_from
    assert first["route"] == "replicate" and "fallback_after_billed_failure" in first["fallback"]
    assert first["cost"]["billed_failures"] > 0


def test_cli_run_falls_back_after_a_billed_failure_only_with_the_flag(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: Any,
    rep: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from latentsync_routes.cli import app

    monkeypatch.setenv("FAL_KEY", FAL_KEY)
    monkeypatch.setenv("REPLICATE_API_TOKEN", REPLICATE_TOKEN)
    video, audio = (str(m) for m in media)
    common = [
        "run",
        video,
        audio,
        "--consent",
        "test",
        "--route",
        "replicate",
        "--among",
        "fal",
        "--fallback",
        "--json",
    ]
    rep.fail_job()
    stopped = CliRunner().invoke(app, [*common, "-o", str(tmp_path / "a.mp4")])
    assert stopped.exit_code == 4, stopped.output
    assert "no fallback" in json.loads(stopped.stdout)["error"]["message"] and len(fal.jobs) == 0
    rep.fail_job()
    moved = CliRunner().invoke(app, [*common, "-o", str(tmp_path / "b.mp4"), "--fallback-after-billed-failure"])
    assert moved.exit_code == 0, moved.output
    assert json.loads(moved.stdout)["route"] == "fal" and len(fal.jobs) == 1 and len(rep.predictions) == 2


def test_fallback_stops_after_a_billed_fal_validation_error(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: Any,
    rep: Any,  # noqa: F811
) -> None:
    fal.fail_job(status_code=422, detail=[{"loc": ["body", "seed"], "msg": "bad"}], billable_units=3)
    with pytest.raises(LatentSyncError) as caught:
        _client().run(*media, tmp_path / "out.mp4", routes=["fal", "replicate"], fallback=True)
    assert "no fallback" in caught.value.message and len(rep.predictions) == 0


def test_fallback_stops_after_a_fal_validation_error_that_may_be_billed(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: Any,
    rep: Any,  # noqa: F811
) -> None:
    """A runner's 422 with no billable units, on a key that may not read billing events, may still be
    charged (fal facts.py: invalid-input-billing): counted at its worst case, so no second route is paid."""
    fal.billing_events_refusal = 403
    fal.fail_job(status_code=422, detail=[{"loc": ["body", "seed"], "msg": "bad"}])
    with pytest.raises(LatentSyncError) as caught:
        _client().run(*media, tmp_path / "out.mp4", routes=["fal", "replicate"], fallback=True)
    assert "no fallback" in caught.value.message and "worst case" in caught.value.message
    assert len(rep.predictions) == 0


def test_without_fallback_a_failure_is_raised(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: Any,
    rep: Any,  # noqa: F811
) -> None:
    fal.fail_job(status_code=500)
    with pytest.raises(JobFailed) as caught:
        _client().run(*media, tmp_path / "out.mp4", routes=["fal", "replicate"])
    assert caught.value.job_id and len(rep.predictions) == 0


def test_fallback_never_follows_an_ambiguous_submit(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: Any,
    rep: Any,  # noqa: F811
) -> None:
    fal.faults.submit.append(Fault.drop_after_accept())
    fal.faults.list_requests.extend([Fault.status(500)] * 20)  # the lookup cannot tell whether the job exists
    with pytest.raises(LatentSyncError) as caught:
        _client().run(*media, tmp_path / "out.mp4", routes=["fal", "replicate"], fallback=True)
    assert type(caught.value).__name__ == "AmbiguousSubmit", caught.value
    assert len(rep.predictions) == 0  # the fal job may exist: never a second provider's job beside it


def test_batch_fallback_budget_counts_both_routes_only_when_billed_failures_are_followed(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: Any,
    rep: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from latentsync_routes import money
    from latentsync_routes.batch import plan_batch
    from latentsync_routes.batch.plan import FallbackRule
    from latentsync_routes.cli import app

    client = _client()
    jobs = read_manifest(_manifest(tmp_path, media, 1, lambda i: "cheapest"))
    among = ["fal", "replicate"]
    alone = plan_batch(client, jobs, among=among)
    free_only = plan_batch(client, jobs, among=among, fallback=FallbackRule(True))
    both = plan_batch(client, jobs, among=among, fallback=FallbackRule(True, after_billed_failure=True))
    highs = [client.estimate(*media, route=name).high for name in among]
    assert free_only.items[0].options["routes"] == [
        alone.items[0].route,
        *(r for r in among if r != alone.items[0].route),
    ]
    assert free_only.items[0].options["fallback_after_billed_failure"] is False
    assert money.micros(free_only.high) == max(money.micros(h) for h in highs)  # one route paid at most
    assert money.micros(both.high) == money.micros(money.total(highs)) > money.micros(alone.high)
    # over the CLI: a budget between one route's worst case and both is refused only with the flag
    monkeypatch.setenv("FAL_KEY", FAL_KEY)
    monkeypatch.setenv("REPLICATE_API_TOKEN", REPLICATE_TOKEN)
    budget = str(money.from_micros(max(money.micros(h) for h in highs) + 1))
    manifest = str(_manifest(tmp_path, media, 1, lambda i: "cheapest"))
    common = ["batch", manifest, "--consent", "test", "--among", "fal,replicate", "--budget", budget, "--fallback"]
    refused = CliRunner().invoke(app, [*common, "--fallback-after-billed-failure", "--json"])
    assert refused.exit_code == 5, refused.output
    assert json.loads(refused.stdout)["error"]["type"] == "BudgetExceeded"
    assert fal.requests == [] and rep.predictions == {}


def test_batch_fallback_after_a_billed_failure_counts_that_failure_in_the_row(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: Any,
    rep: Any,  # noqa: F811
) -> None:
    from latentsync_routes.batch import plan_batch

    client = _client()
    manifest = _manifest(tmp_path, media, 1, lambda i: "cheapest")
    among = ["fal", "replicate"]
    first = plan_batch(client, read_manifest(manifest), among=among).items[0].route
    if first == "replicate":
        rep.fail_job()  # billed for its run time
    else:
        fal.fail_job(status_code=422, detail=[{"loc": ["body", "seed"], "msg": "bad"}], billable_units=3)
    report = client.run_many(manifest, route="cheapest", among=among, fallback=True, fallback_after_billed_failure=True)
    (row,) = report.jobs
    assert row.state == "fetched" and row.route != first
    assert row.failure_billed > 0 and report.totals["failure_billed"] == row.failure_billed  # both routes paid


async def test_async_map_runs_a_batch(tmp_path: Path, media: tuple[Path, Path], fal: Any) -> None:  # noqa: F811
    from latentsync_routes import AsyncLipSyncClient

    video, audio = media
    jobs = [{"video": video, "audio": audio, "output": tmp_path / f"{i}.mp4", "seed": i} for i in range(3)]
    async with AsyncLipSyncClient(route="fal", credentials={"fal": FAL_KEY}, consent="test") as client:
        report = await client.map(jobs)
    assert [j.state for j in report.jobs] == ["fetched"] * 3 and len(fal.jobs) == 3
    assert [j.line for j in report.jobs] == [1, 2, 3]


def test_cli_batch_json_and_exit_codes(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from latentsync_routes.cli import app

    monkeypatch.setenv("FAL_KEY", FAL_KEY)
    manifest = _manifest(tmp_path, media, 3, lambda i: "fal")
    runner = CliRunner()
    over = runner.invoke(app, ["batch", str(manifest), "--consent", "test", "--budget", "0.01", "--json"])
    assert over.exit_code == 5 and json.loads(over.stdout)["error"]["type"] == "BudgetExceeded"
    assert fal.requests == []
    ok = runner.invoke(
        app,
        [
            "batch",
            str(manifest),
            "--consent",
            "test",
            "--concurrency",
            "fal=2",
            "--json",
            "--report",
            str(tmp_path / "r.json"),
        ],
    )
    assert ok.exit_code == 0, ok.output
    document = json.loads(ok.stdout)
    assert [j["state"] for j in document["jobs"]] == ["fetched"] * 3
    assert {"route", "state", "output_path", "cost", "error"} <= set(document["jobs"][0])
    assert document["totals"]["jobs"] == 3 and (tmp_path / "r.csv").exists()
    bad = runner.invoke(app, ["batch", str(manifest), "--concurrency", "fal", "--json"])
    assert bad.exit_code == 2


@pytest.mark.slow
def test_ctrl_c_waits_for_the_running_job_and_a_rerun_finishes_the_rest(
    tmp_path: Path,
    media: tuple[Path, Path],
    fal: Any,  # noqa: F811
) -> None:
    import os
    import signal
    import subprocess
    import sys

    manifest = _manifest(tmp_path, media, 3, lambda i: "fal")
    env = {**os.environ, "FAL_KEY": FAL_KEY}
    command = [
        sys.executable,
        "-m",
        "latentsync_routes.cli",
        "batch",
        str(manifest),
        "--consent",
        "test",
        "--concurrency",
        "fal=1",
        "--json",
    ]
    fal.queue_polls = 10**9  # the first job stays queued until released
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not fal.jobs and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(fal.jobs) == 1
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    fal.queue_polls = 1
    for request_id in list(fal.jobs):
        fal.complete(request_id)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "stopping" in stderr
    states = [job["state"] for job in json.loads(stdout)["jobs"]]
    assert states == ["fetched", "not_started", "not_started"]
    assert len(fal.jobs) == 1  # nothing submitted after Ctrl-C
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert [job["state"] for job in json.loads(again.stdout)["jobs"]] == ["fetched"] * 3
    assert len(fal.jobs) == 3  # the finished job was not paid again
