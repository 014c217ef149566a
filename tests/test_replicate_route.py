"""The Replicate route's fault matrix, through the public client, against FakeReplicate over loopback HTTP.

Each test asserts the outcome, the attempts and billing recorded, the server-side prediction count, and
what happened to the uploaded files.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from latentsync_routes import (
    AmbiguousSubmit,
    AuthenticationError,
    DeadlineExceeded,
    DownloadError,
    InvalidParameter,
    JobCancelled,
    JobFailed,
    ProviderInputRejected,
    UnsupportedParameter,
)
from latentsync_routes.pricing import estimate_replicate, replicate_cost_for_predict_time
from latentsync_routes.routes.replicate import route as replicate_route
from latentsync_routes.testing import (
    LATENTSYNC_INPUT_SCHEMA_2025_01,
    LATENTSYNC_VERSION_CURRENT,
    FakeReplicate,
    Fault,
    ReplicateVersion,
)
from tests import hosted_fixtures
from tests.hosted_fixtures import REPLICATE_TOKEN, assert_no_secrets, replicate_client, steps

# fixtures shared with the other hosted-route tests
hosted_env = hosted_fixtures.hosted_env
media = hosted_fixtures.media
rep = hosted_fixtures.rep


def cost(seconds: float) -> float:
    return replicate_cost_for_predict_time(seconds)


#: The fake's predict time for the 1 s test clip: the price book's run-time model (mid band), as estimated
RULE_SECONDS = float(estimate_replicate(1.0).expected_wall_seconds or 0)


def run(tmp_path: Path, media: tuple[Path, Path], **kwargs: Any) -> Any:
    return replicate_client().run(*media, tmp_path / "out.mp4", **kwargs)


def journal(home: Path) -> dict[str, Any]:
    from latentsync_routes.journal import Journal

    (record,) = Journal(home / "jobs.sqlite3").list(limit=5)
    return record.model_dump(mode="json")


def test_success_bills_predict_time_and_deletes_uploads(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    events: list[tuple[str, float | None]] = []
    result = run(tmp_path, media, guidance_scale=1.5, seed=3, progress=lambda m, f: events.append((m, f)))
    (prediction,) = rep.predictions.values()
    assert result.provider_request_id == prediction.id and prediction.status == "succeeded"
    assert prediction.version == replicate_route.PINNED_VERSION
    assert prediction.input["guidance_scale"] == 1.5 and prediction.input["seed"] == 3
    assert "Prefer" not in prediction.headers  # wait=False: no Prefer: wait
    assert Path(result.output_path).read_bytes() == prediction.output_file.read_bytes()  # type: ignore[union-attr]
    assert result.cost.actual == pytest.approx(cost(RULE_SECONDS))
    assert f"predict_time {RULE_SECONDS:.2f} s" in result.cost.basis
    assert result.cost.actual == pytest.approx(result.cost.estimated)  # the fake bills what the estimate says
    assert steps(result) == [
        ("upload", "ok", None),
        ("upload", "ok", None),
        ("submit", "ok", None),
        ("fetch", "ok", None),
    ]
    assert sorted(result.record.deleted) == sorted(result.record.uploaded_uris) and len(result.record.deleted) == 2
    assert rep.uploads == [] and len(rep.requests_for("file_delete")) == 2
    assert any(f is not None and 0 < f < 1 for _, f in events)  # progress parsed from the model's tqdm logs
    client = replicate_client()
    assert_no_secrets(result.model_dump_json(), caplog.text, repr(client), repr(client.route()), home=hosted_env)


def test_version_schema_is_fetched_once_per_process(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path
) -> None:
    client = replicate_client()
    client.run(*media, tmp_path / "a.mp4")
    client.run(*media, tmp_path / "b.mp4")
    replicate_client().run(*media, tmp_path / "c.mp4")
    assert len(rep.requests_for("version")) == 1 and len(rep.predictions) == 3


def test_schema_refuses_out_of_range_before_any_upload(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LATENTSYNC_ROUTES_REPLICATE_VERSION", LATENTSYNC_VERSION_CURRENT)  # guidance 1-3
    with pytest.raises(InvalidParameter, match="above the maximum 3") as info:
        run(tmp_path, media, guidance_scale=5.0)
    assert info.value.parameter == "guidance_scale"
    assert rep.requests_for("file_create") == [] and rep.predictions == {}


def test_a_version_override_takes_its_own_schema_s_parameters(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LATENTSYNC_ROUTES_REPLICATE_VERSION", LATENTSYNC_VERSION_CURRENT)  # steps 20-50
    with pytest.raises(InvalidParameter, match="inference_steps"):
        run(tmp_path, media, inference_steps=10)
    assert rep.requests_for("file_create") == [] and rep.predictions == {}
    result = run(tmp_path, media, inference_steps=30, guidance_scale=2.5)
    (prediction,) = rep.predictions.values()
    assert prediction.input["inference_steps"] == 30 and prediction.input["guidance_scale"] == 2.5
    assert result.record.model_version == LATENTSYNC_VERSION_CURRENT
    with pytest.raises(UnsupportedParameter, match="loop_mode"):
        run(tmp_path, media, loop_mode="loop")


def test_the_pinned_version_refuses_inference_steps_by_name(
    media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    with pytest.raises(UnsupportedParameter, match="inference_steps"):
        run(tmp_path, media, inference_steps=30)


def test_schema_refuses_unknown_parameters_before_any_upload(
    media: tuple[Path, Path], tmp_path: Path, hosted_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = json.loads(json.dumps(LATENTSYNC_INPUT_SCHEMA_2025_01))
    del schema["properties"]["seed"]
    version = ReplicateVersion("f" * 64, "bytedance/latentsync", schema)
    with FakeReplicate(expected_token=REPLICATE_TOKEN, versions={version.id: version}) as server:
        monkeypatch.setenv("LATENTSYNC_ROUTES_REPLICATE_BASE_URL", server.url)
        monkeypatch.setenv("LATENTSYNC_ROUTES_REPLICATE_VERSION", version.id)
        with pytest.raises(UnsupportedParameter, match="'seed'.*takes: guidance_scale"):
            run(tmp_path, media, seed=4)
        assert server.requests_for("file_create") == [] and server.predictions == {}


def test_429_with_retry_after_on_create_and_on_poll(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path
) -> None:
    rep.faults.create.append(Fault.status(429, retry_after=0))
    rep.faults.create.append(Fault.status(429))  # Replicate's own "not now": it created nothing, so retry
    rep.faults.get.append(Fault.status(429, retry_after=0.2))
    rep.faults.get.append(Fault.status(503))
    result = run(tmp_path, media)
    assert len(rep.predictions) == 1 and len(rep.requests_for("create")) == 3
    errors = [(a.step, a.http_status, a.retryable) for a in result.attempts if a.status == "error"]
    assert errors == [("submit", 429, True), ("submit", 429, True), ("wait", 429, True), ("wait", 503, True)]
    gets = rep.requests_for("get")
    assert gets[1].started_at - gets[0].started_at >= 0.2  # our loop honoured Retry-After (the SDK's is off)


def test_ambiguous_create_is_found_by_lookup(rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path) -> None:
    rep.faults.create.append(Fault.drop_after_accept())
    result = run(tmp_path, media)
    (prediction,) = rep.predictions.values()
    assert result.provider_request_id == prediction.id and len(rep.requests_for("create")) == 1
    assert len(rep.requests_for("list_predictions")) == 1
    assert [(a.step, a.status, a.error_type) for a in result.attempts][2:4] == [
        ("submit", "error", "AmbiguousSubmit"),
        ("submit", "ok", None),
    ]


def test_5xx_on_create_after_accepting_is_found_by_lookup(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path
) -> None:
    rep.faults.create.append(Fault.drop_after_accept())
    rep.faults.list_predictions.append(Fault.status(503))  # the lookup itself is retried
    result = run(tmp_path, media)
    (prediction,) = rep.predictions.values()
    assert result.provider_request_id == prediction.id and len(rep.requests_for("create")) == 1


def test_ambiguous_create_not_found_raises_and_keeps_inputs(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    rep.faults.create.append(Fault.drop())  # request read, connection closed, nothing created
    with pytest.raises(AmbiguousSubmit, match="no request sent in the submit's window is listed"):
        run(tmp_path, media)
    assert rep.predictions == {} and len(rep.requests_for("create")) == 1
    record = journal(hosted_env)
    assert record["cost"]["billed_unknown"] > 0  # type: ignore[index]  # no bound: undecided, worst case counted
    assert record["deleted"] == [] and len(record["not_deleted"]) == 2 and len(rep.uploads) == 2


def test_reset_during_upload_is_retried(rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path) -> None:
    rep.faults.file_create.append(Fault.reset_during_upload())
    result = run(tmp_path, media)
    assert len(rep.predictions) == 1 and len(rep.requests_for("file_create")) == 3
    assert [(a.step, a.status) for a in result.attempts][:3] == [
        ("upload", "error"),
        ("upload", "ok"),
        ("upload", "ok"),
    ]


def test_poll_timeouts_are_retried(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("latentsync_routes.routes.replicate.api.REQUEST_TIMEOUT_S", 0.3)
    rep.faults.get.append(Fault.delay(1.0))
    result = run(tmp_path, media)
    failed = [(a.step, a.error_message) for a in result.attempts if a.status == "error"]
    # the delayed poll timed out and was retried; on a loaded machine another poll may time out too (0.3 s),
    # and it is retried the same way: every failed try is a poll timeout, and nothing was created twice
    assert failed and set(failed) == {("wait", "Replicate status poll failed: ReadTimeout")}
    assert len(rep.predictions) == 1 and result.output_path is not None and result.output_path.is_file()


def test_failed_prediction_records_the_billed_predict_time(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    rep.fail_job(error="CUDA out of memory")
    with pytest.raises(JobFailed, match="CUDA out of memory") as info:
        run(tmp_path, media)
    (prediction,) = rep.predictions.values()
    assert info.value.request_id == prediction.id
    record = journal(hosted_env)
    failing = record["attempts"][-1]
    assert failing["step"] == "wait" and failing["billed_amount"] == pytest.approx(cost(RULE_SECONDS))
    assert record["cost"]["billed_failures"] == pytest.approx(cost(RULE_SECONDS)) and record["state"] == "failed"
    assert "replicate.com/docs/topics/predictions/lifecycle, checked 2026-12-02" in failing["error_message"]
    assert len(record["deleted"]) == 2 and rep.uploads == []  # inputs deleted after a failure too


def test_canceled_prediction_is_billed_for_what_it_ran(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    rep.processing_polls = 50

    def cancel_elsewhere(message: str, fraction: float | None) -> None:
        if message.startswith("replicate: running, processing"):
            (pid,) = rep.predictions
            httpx.post(f"{rep.url}/v1/predictions/{pid}/cancel", headers={"Authorization": f"Bearer {REPLICATE_TOKEN}"})

    with pytest.raises(JobCancelled, match="ended canceled at the provider") as info:
        run(tmp_path, media, progress=cancel_elsewhere)
    (prediction,) = rep.predictions.values()
    assert prediction.status == "canceled" and info.value.request_id == prediction.id
    billed = journal(hosted_env)["attempts"][-1]["billed_amount"]
    assert billed == pytest.approx(cost(prediction.predict_time or 0)) and billed > 0


def test_aborted_prediction_is_cancelled_and_free(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    aborted = {
        "id": "p1",
        "model": "bytedance/latentsync",
        "version": "v",
        "status": "aborted",
        "input": {},
        "output": None,
        "error": None,
        "logs": "",
        "metrics": {},
    }
    rep.faults.get.append(Fault.status(200, json=aborted))
    with pytest.raises(JobCancelled, match="ended aborted at the provider; not billed"):
        run(tmp_path, media)
    assert journal(hosted_env)["cost"]["billed_failures"] == 0


def test_deadline_cancels_and_records_the_billed_time(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    rep.processing_polls = 10_000
    # the deadline must pass while the prediction runs, so it must leave time for the uploads and the
    # create even on a loaded machine (0.6 s did not always)
    with pytest.raises(DeadlineExceeded, match="it was cancelled") as info:
        run(tmp_path, media, deadline_seconds=5)
    (prediction,) = rep.predictions.values()
    assert prediction.status == "canceled" and info.value.request_id == prediction.id
    assert len(rep.requests_for("cancel")) == 1
    record = journal(hosted_env)
    assert record["state"] == "cancelled"
    assert record["cost"]["billed_failures"] == pytest.approx(cost(prediction.predict_time or 0))
    assert ("cancel", "ok") in [(a["step"], a["status"]) for a in record["attempts"]]


def test_output_404_is_a_download_error_without_resubmit(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path
) -> None:
    rep.faults.output_download.append(Fault.status(404))
    with pytest.raises(DownloadError, match="HTTP 404"):
        run(tmp_path, media)
    assert len(rep.predictions) == 1 and len(rep.requests_for("output_download")) == 1
    assert len(rep.requests_for("create")) == 1


def test_truncated_download_is_retried_never_resubmitted(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path
) -> None:
    rep.faults.output_download.append(Fault.truncate(300))
    result = run(tmp_path, media)
    assert len(rep.predictions) == 1 and len(rep.requests_for("output_download")) == 2
    assert steps(result)[-2:] == [("fetch", "error", None), ("fetch", "ok", None)]


def test_422_on_create_names_the_fields(rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path) -> None:
    problem = {
        "title": "Input validation failed",
        "status": 422,
        "detail": "- input.video: bad\n",
        "invalid_fields": [{"type": "format", "field": "input.video", "description": "bad"}],
    }
    rep.faults.create.append(Fault.status(422, json=problem, content_type="application/problem+json"))
    with pytest.raises(ProviderInputRejected, match="input.video: bad") as info:
        run(tmp_path, media)
    assert info.value.fields == ["video"] and rep.predictions == {} and len(rep.requests_for("create")) == 1


def test_401_names_the_token_and_never_its_value(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "r8_wrong_value_456"
    with pytest.raises(AuthenticationError, match="REPLICATE_API_TOKEN") as info:
        replicate_client(token=wrong).run(*media, tmp_path / "out.mp4")
    assert rep.predictions == {} and rep.requests_for("file_create") == []
    for text in (str(info.value), repr(info.value), caplog.text, json.dumps(journal(hosted_env))):
        assert wrong not in text


def test_resume_polls_and_downloads_without_creating_again(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    rep.faults.get.extend(Fault.status(500) for _ in range(5))
    client = replicate_client()
    with pytest.raises(Exception, match="gave up after 5 tries"):
        client.run(*media, tmp_path / "out.mp4")
    record = journal(hosted_env)
    assert len(rep.uploads) == 2 and all("still be running" in e for e in record["not_deleted"])  # kept for resume
    result = client.resume(record["job_id"])
    assert result.provider_request_id == record["provider_request_id"] and Path(result.output_path).exists()
    assert len(rep.requests_for("create")) == 1 and len(rep.requests_for("file_create")) == 2
    assert len(rep.predictions) == 1 and rep.uploads == [] and len(result.record.deleted) == 2
    assert [e.split(" ", 1)[1][:8] for e in result.record.not_deleted] == ["(output:"]


def test_cli_run_json(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from latentsync_routes.cli import app

    monkeypatch.setenv("REPLICATE_API_TOKEN", REPLICATE_TOKEN)
    out = tmp_path / "out.mp4"
    done = CliRunner().invoke(
        app,
        ["run", str(media[0]), str(media[1]), "-o", str(out), "--route", "replicate", "--json", "--consent", "test"],
    )
    assert done.exit_code == 0, done.output
    payload = json.loads(done.stdout)
    assert payload["route"] == "replicate" and out.exists() and payload["provider_request_id"] in rep.predictions
    assert payload["cost"]["actual"] == pytest.approx(cost(RULE_SECONDS)) and payload["record"]["deleted"]
    assert REPLICATE_TOKEN not in done.stdout


def _killed_during_an_upload(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path
) -> tuple[list[str], dict[str, str], Any]:
    """A CLI run killed (SIGKILL) while Replicate made its first upload's file but before the answer came:
    (the run's command, its environment, the file left). The record holds the upload's tag, no URL."""
    import signal
    import subprocess
    import time

    from latentsync_routes.journal import Journal
    from latentsync_routes.routes.replicate.uploads import TAG_KEY
    from tests.cli_helpers import clean_env, console_script

    home = tmp_path / "home"
    env = clean_env(
        home,
        {
            "LATENTSYNC_ROUTES_REPLICATE_BASE_URL": rep.url,
            "REPLICATE_API_TOKEN": REPLICATE_TOKEN,
            "LATENTSYNC_ROUTES_POLL_INTERVAL": "0.05",
        },
    )
    command = [console_script(), "run", *map(str, media), "-o", str(tmp_path / "out.mp4"), "--route", "replicate"]
    command += ["--consent", "test", "--json"]
    rep.faults.file_create.append(Fault.hold_reply(120))  # the file is made; its answer never arrives
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not rep.uploads and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    assert first.returncode == -signal.SIGKILL
    (left,) = rep.uploads
    (record,) = Journal(home / "jobs.sqlite3").list()
    assert record.uploaded_uris == [] and len(record.upload_intents) == 1
    assert left.metadata == {TAG_KEY: record.upload_intents[0]}
    return command, env, left


def test_fact_files_interrupted_a_kill_during_an_upload_leaves_no_file_unrecorded(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path
) -> None:
    """Facts ``files-metadata``, ``files-list``, ``files-delete`` and ``files-interrupted``: the killed run's
    upload made a file at Replicate whose answer it never read; the re-run finds it by the tag journalled
    (and sent as its metadata) before the upload left, deletes it, and lists it in the record."""
    import subprocess

    from latentsync_routes.journal import Journal

    command, env, left = _killed_during_an_upload(rep, media, tmp_path)
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stdout + second.stderr
    assert rep.uploads == [], "no upload of either run is left at Replicate"
    (record,) = Journal(tmp_path / "home" / "jobs.sqlite3").list()
    assert left.url in record.uploaded_uris and left.url in record.deleted
    assert len(record.uploaded_uris) == 3 and set(record.uploaded_uris) <= set(record.deleted)
    assert record.upload_intents == [] and record.state == "fetched" and (tmp_path / "out.mp4").stat().st_size > 0
    assert len(rep.requests_for("file_list")) == 1  # only the run that found a left-over tag looked
    assert REPLICATE_TOKEN not in second.stdout + second.stderr


def test_jobs_delete_after_a_kill_during_an_upload_deletes_the_file_it_left(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path
) -> None:
    """``jobs delete`` instead of a re-run: the file the killed upload left is found by its tag, deleted
    and listed in the record (not left for Replicate's 24 h expiry unrecorded)."""
    import subprocess

    from latentsync_routes.journal import Journal
    from tests.cli_helpers import console_script

    _, env, left = _killed_during_an_upload(rep, media, tmp_path)
    (record,) = Journal(tmp_path / "home" / "jobs.sqlite3").list()
    command = [console_script(), "jobs", "delete", record.job_id, "--json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert rep.uploads == [], "the file the killed upload left is deleted"
    (record,) = Journal(tmp_path / "home" / "jobs.sqlite3").list()
    assert left.url in record.deleted and record.upload_intents == []
    assert len(rep.requests_for("file_list")) == 1 and REPLICATE_TOKEN not in done.stdout + done.stderr


def test_jobs_delete_without_a_token_lists_what_it_cannot_delete_or_look_for(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No token at delete time: nothing is asked of Replicate; each upload, and each file an unanswered
    upload may have left, is listed as kept with why."""
    result = run(tmp_path, media)
    monkeypatch.delenv("REPLICATE_API_TOKEN", raising=False)
    route = replicate_client(token="").route("replicate")
    tag = f"{result.record.job_id}:1765000000:ab12"
    deleted, kept = route.delete_remote(result.record.model_copy(update={"upload_intents": [tag], "deleted": []}))
    assert deleted == [] and sum("no REPLICATE_API_TOKEN to delete it" in line for line in kept) == 2
    (left,) = [line for line in kept if "never answered" in line]
    assert "may have left at Replicate (no REPLICATE_API_TOKEN to look for it)" in left
