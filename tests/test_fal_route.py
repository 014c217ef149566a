"""The fal route's fault matrix, through the public client, against FakeFal over loopback HTTP.

Each test asserts the outcome (typed error or success), the attempts recorded, the billing recorded, and
how many provider jobs the server holds: one logical job must never become two.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from latentsync_routes import (
    AmbiguousSubmit,
    AuthenticationError,
    DeadlineExceeded,
    DownloadError,
    ProviderError,
    ProviderInputRejected,
)
from latentsync_routes.errors import JobAlreadyFailed, JobFailed
from latentsync_routes.routes import hosted_lookup
from latentsync_routes.routes.fal import hosts as fal_host_override
from latentsync_routes.routes.fal import route as fal_route
from latentsync_routes.testing import FakeFal, Fault
from tests import hosted_fixtures
from tests.hosted_fixtures import FAL_KEY, assert_no_secrets, fal_client, steps

# fixtures shared with the other hosted-route tests
fal = hosted_fixtures.fal
hosted_env = hosted_fixtures.hosted_env
media = hosted_fixtures.media

GS_422 = [
    {
        "loc": ["body", "guidance_scale"],
        "msg": "Input should be less than or equal to 2",
        "type": "less_than_equal",
        "url": "https://docs.fal.ai/errors/#less_than_equal",
        "ctx": {"le": 2},
    }
]


def run(tmp_path: Path, media: tuple[Path, Path], **kwargs: object):  # type: ignore[no-untyped-def]
    return fal_client().run(*media, tmp_path / "out.mp4", **kwargs)  # type: ignore[arg-type]


def journal(home: Path) -> dict[str, object]:
    from latentsync_routes.journal import Journal

    (record,) = Journal(home / "jobs.sqlite3").list(limit=5)
    return record.model_dump(mode="json")


def test_success_uploads_submits_and_bills_from_the_result_headers(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    events: list[tuple[str, float | None]] = []
    result = run(tmp_path, media, guidance_scale=1.5, seed=7, progress=lambda m, f: events.append((m, f)))
    assert Path(result.output_path or "").read_bytes() == fal.store.by_url(result.output_url or "").read_bytes()
    (job,) = fal.jobs.values()
    assert result.provider_request_id == job.request_id
    assert job.arguments["guidance_scale"] == 1.5 and job.arguments["seed"] == 7
    assert job.arguments["video_url"].startswith(fal.cdn_url) and job.input_bytes("video_url") == media[0].read_bytes()
    assert [u.name for u in fal.uploads] == ["clip.mp4", "voice.wav"]
    assert result.record.uploaded_uris == [job.arguments["video_url"], job.arguments["audio_url"]]
    assert steps(result) == [
        ("upload", "ok", None),
        ("upload", "ok", None),
        ("submit", "ok", None),
        ("fetch", "ok", None),
        ("fetch", "ok", None),
    ]
    # the fake bills like the price book's rule (a 1 s output: 40 units); the actual is the rule's
    assert result.cost.actual == pytest.approx(0.20) and "x-fal-billable-units 40" in result.cost.basis
    assert result.cost.billable_units == 40 and result.cost.units_cost == pytest.approx(0.20)
    assert result.cost.disagreement is None and result.cost.billed_unknown == 0
    assert result.cost.billed_failures == 0 and result.record.state == "fetched"
    assert fal.requests_for("status")[0].param("logs") == "true"
    assert any("Inference step" in m for m, _ in events) and events[-1] == ("fal: done", 1.0)
    assert len(fal.requests_for("submit")) == 1
    client = fal_client()
    route = client.route()
    assert_no_secrets(
        result.model_dump_json(),
        caplog.text,
        repr(client),
        repr(route),
        repr(route._sdk()),  # type: ignore[attr-defined]
        home=hosted_env,
    )


def _lifetime(record: object) -> int:
    return int(json.loads(record.headers["X-Fal-Object-Lifecycle-Preference"])["expiration_duration_seconds"])  # type: ignore[attr-defined]


def test_a_default_run_sends_lifecycle_and_store_io_on_the_submit_and_every_upload(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path
) -> None:
    result = run(tmp_path, media, deadline_seconds=300)
    sent = [*fal.requests_for("cdn_token", "cdn_upload"), *fal.requests_for("submit")]
    assert [r.endpoint for r in sent].count("cdn_upload") == 2 and len(fal.requests_for("submit")) == 1
    for request in [*fal.requests_for("cdn_upload"), *fal.requests_for("submit")]:
        assert request.headers["X-Fal-Store-IO"] == "0"
    for request in fal.requests_for("cdn_upload"):
        assert 600 < _lifetime(request) <= 300 + 600  # the job's deadline plus the fetch margin, no more
    # the output: the job's deadline plus the resume window (jobs resume fetches it that long), no more
    assert 24 * 3600 < _lifetime(fal.requests_for("submit")[0]) <= 300 + 24 * 3600
    (job,) = fal.jobs.values()
    assert job.output is not None and job.output.lifecycle_preference == json.loads(
        job.headers["X-Fal-Object-Lifecycle-Preference"]
    )  # the output follows the submit's lifecycle
    assert result.record.retention_sent["X-Fal-Store-IO"] == "0"
    assert json.loads(result.record.retention_sent["X-Fal-Object-Lifecycle-Preference"]) == json.loads(
        fal.requests_for("submit")[0].headers["X-Fal-Object-Lifecycle-Preference"]
    )
    info = fal_client().route().info()
    assert info.retention_days == pytest.approx((1800 + 24 * 3600) / 86400) and "X-Fal-Store-IO: 0" in info.retention
    expires = result.record.output_expires_at
    assert expires is not None and result.record.completed_at is not None
    assert expires - result.record.completed_at <= timedelta(seconds=300 + 24 * 3600)  # from the submit's lifetime
    assert fal_route.INFO.retention_days == pytest.approx(info.retention_days)  # the static facts match the default


def test_a_retention_cap_below_the_job_cuts_the_lifetime_sent(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LATENTSYNC_ROUTES_POLICY__MAX_RETENTION_DAYS", "0.01")  # 864 s
    result = run(tmp_path, media)
    assert [u.lifecycle_preference for u in fal.uploads] == [{"expiration_duration_seconds": 864}] * 2
    assert _lifetime(fal.requests_for("submit")[0]) == 864
    assert next(c for c in result.record.policy_checks if c["check"] == "retention")["passed"]


def test_429_with_retry_after_on_submit_and_on_poll(fal: FakeFal, media: tuple[Path, Path], tmp_path: Path) -> None:
    fal.faults.submit.append(Fault.status(429, retry_after=0))
    fal.faults.status.append(Fault.status(429, retry_after=0.2))
    result = run(tmp_path, media)
    assert len(fal.jobs) == 1 and len(fal.requests_for("submit")) == 2
    assert steps(result)[2:5] == [("submit", "error", 429), ("submit", "ok", None), ("wait", "error", 429)]
    retried = fal.requests_for("status")[:2]
    assert retried[1].started_at - retried[0].started_at >= 0.2  # Retry-After honoured
    assert all(a.retryable for a in result.attempts if a.status == "error")
    assert result.cost.billed_failures == 0


def test_ingress_5xx_on_polls_and_results_is_retried(fal: FakeFal, media: tuple[Path, Path], tmp_path: Path) -> None:
    fal.faults.status.append(Fault.nginx_503(502))
    fal.faults.result.append(Fault.nginx_503(504))
    result = run(tmp_path, media)
    assert len(fal.jobs) == 1
    errors = [(a.step, a.http_status) for a in result.attempts if a.status == "error"]
    assert errors == [("wait", 502), ("fetch", 504)]
    assert any("ingress" in (a.error_message or "") for a in result.attempts)


@pytest.fixture
def quick_decisions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrink the bounds an ambiguous submit is decided by (the fact sheet's longest run, the clock skew)."""
    monkeypatch.setattr(fal_route, "LONGEST_RUN_S", 0.0)
    monkeypatch.setattr(hosted_lookup, "CLOCK_SKEW_S", 0.2)


def test_5xx_on_submit_is_ambiguous_until_no_request_can_exist_then_submitted_once(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path, quick_decisions: None
) -> None:
    fal.faults.submit.append(Fault.nginx_503())  # nothing created, but a gateway 5xx cannot prove that
    with pytest.raises(
        AmbiguousSubmit,
        match=r"no request sent in the submit's window is listed yet.*run the same "
        r"command again \(or `jobs resume`\) after",
    ) as info:
        run(tmp_path, media, deadline_seconds=1.5)
    assert len(fal.jobs) == 0 and len(fal.requests_for("submit")) == 1
    assert len(fal.requests_for("list_requests")) >= 1
    assert all("expand" not in r.query for r in fal.requests_for("list_requests"))  # no payloads to match
    submit = fal.requests_for("submit")[0]
    sent_bound = float(submit.headers.get("X-Fal-Request-Timeout") or 0)
    assert 0 < sent_bound <= 2  # the time-to-start bound is the job's deadline
    record = journal(hosted_env)
    assert record["state"] == "submitting" and record["provider_request_id"] is None
    assert record["cost"]["billed_unknown"] == 0  # type: ignore[index]  # decidable by time: no worst case yet
    decidable = datetime.fromisoformat(str(record["submit_settles_at"])) + timedelta(seconds=hosted_lookup.CLOCK_SKEW_S)
    assert decidable.strftime("%H:%M:%S") in info.value.message
    time.sleep(max(0.0, (decidable - datetime.now(timezone.utc)).total_seconds() + 0.2))
    result = run(tmp_path, media)  # no flag: no request sent in the window can exist any more
    assert len(fal.jobs) == 1 and result.provider_request_id in fal.jobs
    assert len(fal.requests_for("submit")) == 2 and result.record.state == "fetched"


def test_one_500_on_the_result_is_retried_and_the_result_kept(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path
) -> None:
    fal.faults.result.append(Fault.status(500))
    result = run(tmp_path, media)
    assert len(fal.jobs) == 1 and len(fal.requests_for("result")) == 2
    assert Path(result.output_path or "").is_file()


def test_a_persistent_500_on_the_result_leaves_the_job_resumable(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    fal.faults.result.extend(Fault.status(500) for _ in range(5))  # max_attempts tries, all refused
    with pytest.raises(ProviderError, match="HTTP 500 to the result fetch") as info:
        run(tmp_path, media)
    (job,) = fal.jobs.values()
    assert info.value.request_id == job.request_id and info.value.status_code == 500
    assert "fal never bills server errors" in info.value.message
    record = journal(hosted_env)
    assert record["state"] == "completed" and record["interrupted"]
    result = run(tmp_path, media)  # running it again fetches the same request's result
    assert result.provider_request_id == job.request_id
    assert len(fal.requests_for("submit")) == 1 and len(fal.jobs) == 1


def test_a_failed_request_is_final_and_not_paid_again_unless_asked(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    fal.fail_job(status_code=500)
    with pytest.raises(JobFailed, match="runner_server_error") as info:
        run(tmp_path, media)
    (job,) = fal.jobs.values()
    assert info.value.request_id == job.request_id
    assert journal(hosted_env)["state"] == "failed"
    with pytest.raises(JobAlreadyFailed, match="retry_failed"):
        run(tmp_path, media)
    assert len(fal.jobs) == 1
    result = run(tmp_path, media, retry_failed=True)
    assert len(fal.jobs) == 2 and result.record.previous_request_ids == [job.request_id]


def test_422_detail_list_names_the_fields_and_records_billing(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    fal.fail_job(status_code=422, detail=GS_422, billable_units=40)
    with pytest.raises(ProviderInputRejected, match="guidance_scale: Input should be less") as info:
        run(tmp_path, media)
    assert info.value.fields == ["guidance_scale"] and info.value.status_code == 422
    record = journal(hosted_env)
    failing = record["attempts"][-1]  # type: ignore[index]
    assert (failing["step"], failing["http_status"], failing["billed_amount"]) == ("fetch", 422, 0.2)
    assert record["cost"]["billed_failures"] == 0.2 and record["state"] == "failed"  # type: ignore[index]
    assert len(fal.jobs) == 1


def test_ambiguous_submit_is_adopted_by_time_once_its_request_has_ended(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    fal.run_seconds = 0.5  # the request runs on its own; the listing shows it once it has ended
    fal.faults.submit.append(Fault.drop_after_accept())
    result = run(tmp_path, media, deadline_seconds=30)
    (job,) = fal.jobs.values()
    assert not job.stores_payloads  # X-Fal-Store-IO: 0, so the listing has no payload to match
    assert result.provider_request_id == job.request_id and result.record.state == "fetched"
    assert len(fal.requests_for("submit")) == 1  # fal-client's own POST retry is off
    assert ("submit", "error", "AmbiguousSubmit") in [(a.step, a.status, a.error_type) for a in result.attempts]
    assert result.cost.billed_unknown == 0


def test_ambiguous_submit_not_listed_yet_stops_then_a_rerun_finds_it(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    fal.faults.submit.append(Fault.drop_after_accept())
    with pytest.raises(AmbiguousSubmit, match="listed yet"):
        run(tmp_path, media, deadline_seconds=3.0)
    (job,) = fal.jobs.values()
    record = journal(hosted_env)
    assert record["provider_request_id"] is None and record["state"] == "submitting"
    fal.complete(job.request_id)
    result = run(tmp_path, media)
    assert result.provider_request_id == job.request_id and len(fal.jobs) == 1
    assert len(fal.requests_for("submit")) == 1


def test_two_requests_in_the_window_for_one_job_stay_ambiguous_at_the_worst_case(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    import httpx

    other = httpx.post(
        f"{fal.url}/fal-ai/latentsync",
        json={"video_url": "x", "audio_url": "y"},
        headers={"Authorization": f"Key {FAL_KEY}"},
    )  # someone else's request, same key and time
    fal.complete(other.json()["request_id"])
    fal.faults.submit.append(Fault.drop_after_accept())
    fal.run_seconds = 0.0  # ours has ended too by the first look: two requests listed in the window
    with pytest.raises(AmbiguousSubmit, match=r"2 request\(s\) of 1 ambiguous job\(s\)") as info:
        run(tmp_path, media, deadline_seconds=20)
    assert all(rid in info.value.message for rid in fal.jobs) and len(fal.jobs) == 2
    record = journal(hosted_env)
    assert record["state"] == "submitting"
    assert record["cost"]["billed_unknown"] == pytest.approx(0.2)  # type: ignore[index]
    assert str(record["cost"]["billed_unknown_basis"]).startswith("ambiguous submit")  # type: ignore[index]
    with pytest.raises(AmbiguousSubmit):  # a re-run looks again, counts the worst case once
        run(tmp_path, media, deadline_seconds=5)
    assert journal(hosted_env)["cost"]["billed_unknown"] == pytest.approx(0.2)  # type: ignore[index]
    assert len(fal.requests_for("submit")) == 2 and len(fal.jobs) == 2  # the other's and our one


def test_a_request_another_job_holds_is_never_adopted(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    first = fal_client().run(*media, tmp_path / "first.mp4")  # same inputs, another output: another job
    fal.run_seconds = 0.3
    fal.faults.submit.append(Fault.drop_after_accept())
    second = fal_client().run(*media, tmp_path / "second.mp4", deadline_seconds=30)
    # the first job's request was sent inside the second's window too, but the journal says whose it is
    assert first.provider_request_id != second.provider_request_id and len(fal.jobs) == 2
    assert {first.provider_request_id, second.provider_request_id} == set(fal.jobs)
    assert len(fal.requests_for("submit")) == 2


def test_a_connection_dropped_after_sending_is_never_resubmitted_while_undecided(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path
) -> None:
    fal.faults.submit.append(Fault.drop())  # the fake read the request, then hung up: ambiguous to the client
    with pytest.raises(AmbiguousSubmit):
        run(tmp_path, media, deadline_seconds=3.0)
    assert len(fal.jobs) == 0 and len(fal.requests_for("submit")) == 1


def test_connection_refused_on_submit_is_retried_because_nothing_was_sent(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    real = fal_host_override.host_urls
    monkeypatch.setattr(fal_host_override, "host_urls", lambda base: {**real(base), "QUEUE_URL_FORMAT": f"{dead}/"})
    with pytest.raises(ProviderError, match="nothing was submitted; gave up after 5 tries") as info:
        run(tmp_path, media)
    assert info.value.retryable and len(fal.jobs) == 0


def test_reset_during_upload_is_retried(fal: FakeFal, media: tuple[Path, Path], tmp_path: Path) -> None:
    fal.faults.cdn_upload.append(Fault.reset_during_upload())
    result = run(tmp_path, media)
    assert len(fal.jobs) == 1 and result.record.state == "fetched"
    assert len(fal.requests_for("cdn_upload")) == 3 and [u.name for u in fal.uploads] == ["clip.mp4", "voice.wav"]
    assert result.record.upload_intents == [] and len(result.record.uploaded_uris) == 2


def test_fact_uploads_no_delete_a_killed_upload_is_listed_as_possibly_left(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path
) -> None:
    """kill -9 while the video's upload waits for its answer (fal stored it): the re-run lists that file as
    possibly left, as no fal call can find or delete it."""
    import signal

    from latentsync_routes.journal import Journal
    from tests.cli_helpers import clean_env, console_script

    home = tmp_path / "home"
    extra = {"LATENTSYNC_ROUTES_FAL_BASE_URL": fal.url, "FAL_KEY": FAL_KEY, "LATENTSYNC_ROUTES_POLL_INTERVAL": "0.05"}
    env = clean_env(home, extra)
    command = [console_script(), "run", *map(str, media), "-o", str(tmp_path / "out.mp4"), "--route", "fal"]
    command += ["--consent", "test", "--json"]
    fal.faults.cdn_upload.append(Fault.hold_reply(120))
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not fal.uploads and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    (record,) = Journal(home / "jobs.sqlite3").list()
    assert len(record.upload_intents) == 1 and record.uploaded_uris == []
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stdout + second.stderr
    (record,) = Journal(home / "jobs.sqlite3").list()
    assert record.state == "fetched" and record.upload_intents == [] and len(fal.uploads) == 3
    (left,) = [line for line in record.not_deleted if "never answered" in line]
    assert "may have left at fal" in left and "lifecycle" in left


def test_poll_timeouts_are_retried(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fal_route, "POLL_TIMEOUT_S", 0.3)
    fal.faults.status.append(Fault.delay(1.0))
    result = run(tmp_path, media)
    timed_out = [a for a in result.attempts if a.status == "error"]
    assert [(a.step, a.error_message) for a in timed_out] == [("wait", "fal status poll failed: ReadTimeout")]
    assert len(fal.jobs) == 1


def test_deadline_cancels_the_request_and_names_it(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    fal.queue_polls = 10_000
    with pytest.raises(DeadlineExceeded, match="cancellation was requested") as info:
        run(tmp_path, media, deadline_seconds=3)
    (job,) = fal.jobs.values()
    assert info.value.request_id == job.request_id and job.request_id in str(info.value)
    assert [c.outcome for c in fal.cancellations] == ["CANCELLATION_REQUESTED"] and job.cancelled
    record = journal(hosted_env)
    assert record["state"] == "cancelled" and record["provider_request_id"] == job.request_id
    assert ("cancel", "ok") in [(a["step"], a["status"]) for a in record["attempts"]]  # type: ignore[union-attr]
    # still queued when cancelled: fal's result says 0 billable units, so $0 is what the provider said
    cost = record["cost"]
    assert cost["billed_unknown"] == 0 and cost["billable_units"] == 0  # type: ignore[index]
    assert "x-fal-billable-units 0" in str(info.value)


def test_a_deadline_cancelled_running_request_is_never_recorded_as_free(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    fal.queue_polls, fal.progress_polls = 0, 10_000  # running when the deadline passes
    with pytest.raises(DeadlineExceeded, match="billing unknown") as info:
        run(tmp_path, media, deadline_seconds=3)
    (job,) = fal.jobs.values()
    assert job.cancelled and fal.requests_for("result")  # followed to its end, then the result's headers read
    record = journal(hosted_env)
    cost = record["cost"]
    assert cost["billed_unknown"] == pytest.approx(0.20) and cost["billed_failures"] == 0  # type: ignore[index]
    assert "worst case" in cost["billed_unknown_basis"]  # type: ignore[index]
    assert "$0.2000" in info.value.message


def test_a_cancelled_running_request_is_billed_what_its_result_headers_say(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    fal.queue_polls, fal.progress_polls, fal.cancel_billable_units = 0, 10_000, 12
    fal.billing_events_refusal = 403  # a key without the admin scope: the result's headers are what is left
    with pytest.raises(DeadlineExceeded):
        run(tmp_path, media, deadline_seconds=3)
    cost = journal(hosted_env)["cost"]
    assert cost["billed_failures"] == pytest.approx(0.06) and cost["billed_unknown"] == 0  # type: ignore[index]
    assert cost["billable_units"] == 12 and cost["provider_charge"] is None  # type: ignore[index]
    assert "refused its billing events (HTTP 403" in cost["provider_charge_note"]  # type: ignore[index]


def test_budget_counts_an_unknown_charge_at_its_worst_case(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path
) -> None:
    from latentsync_routes import BudgetExceeded

    client = fal_client(budget_total=0.35)
    fal.queue_polls, fal.progress_polls = 0, 10_000
    with pytest.raises(DeadlineExceeded):
        client.run(*media, tmp_path / "out.mp4", deadline_seconds=3)
    fal.queue_polls, fal.progress_polls = 1, 1
    with pytest.raises(BudgetExceeded):  # $0.20 unknown counts as spent: $0.15 left < the $0.20 estimate
        client.run(media[0], media[1], tmp_path / "out2.mp4", seed=3)


def test_result_url_404_is_a_download_error_without_resubmit(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path
) -> None:
    fal.faults.file_download.append(Fault.status(404))
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        run(tmp_path, media)
    assert len(fal.jobs) == 1 and len(fal.requests_for("file_download")) == 1
    assert info.value.request_id == next(iter(fal.jobs))


def test_truncated_download_is_retried_never_resubmitted(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path
) -> None:
    fal.faults.file_download.append(Fault.truncate(200))
    result = run(tmp_path, media)
    assert len(fal.jobs) == 1 and len(fal.requests_for("submit")) == 1
    assert len(fal.requests_for("file_download")) == 2
    assert steps(result)[-2:] == [("fetch", "error", None), ("fetch", "ok", None)]
    assert not list(tmp_path.glob("*.part"))


def test_401_names_fal_key_and_never_its_value(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-key-value-123"
    with pytest.raises(AuthenticationError, match="FAL_KEY") as info:
        fal_client(key=wrong).run(*media, tmp_path / "out.mp4")
    assert len(fal.jobs) == 0
    for text in (str(info.value), repr(info.value), caplog.text, json.dumps(journal(hosted_env))):
        assert wrong not in text
    assert_no_secrets(str(info.value), home=hosted_env)


def test_401_on_submit_with_url_inputs(fal: FakeFal, media: tuple[Path, Path], tmp_path: Path) -> None:
    urls = []
    for path in media:
        url = f"{fal.cdn_url}/files/in/{path.name}"
        fal.store.save_bytes(
            path.read_bytes(), file_id=path.stem, name=path.name, content_type="video/mp4", url=url, origin="output"
        )
        urls.append(url)
    with pytest.raises(AuthenticationError, match="HTTP 401") as info:
        fal_client(key="nope").run(urls[0], urls[1], tmp_path / "out.mp4")
    assert info.value.status_code == 401 and len(fal.jobs) == 0 and fal.uploads == []
    assert json.loads(fal.requests_for("submit")[0].body)["video_url"] == urls[0]  # URLs passed through


def test_resume_waits_and_fetches_without_uploading_or_submitting(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    fal.faults.status.extend(Fault.status(500) for _ in range(5))  # polls exhaust max_attempts
    client = fal_client()
    with pytest.raises(ProviderError, match="gave up after 5 tries"):
        client.run(*media, tmp_path / "out.mp4")
    record = journal(hosted_env)
    uploads, submits = len(fal.requests_for("cdn_upload")), len(fal.requests_for("submit"))
    result = client.resume(str(record["job_id"]))
    assert result.provider_request_id == record["provider_request_id"] and Path(result.output_path or "").exists()
    assert len(fal.requests_for("cdn_upload")) == uploads and len(fal.requests_for("submit")) == submits == 1
    assert len(fal.jobs) == 1


def test_host_override_stays_in_the_jobs_thread(fal: FakeFal, media: tuple[Path, Path], tmp_path: Path) -> None:
    import fal_client.client as module

    seen: dict[str, str] = {}

    def elsewhere() -> None:
        seen["queue"] = f"{module.QUEUE_URL_FORMAT}"

    with fal_host_override.fal_hosts(fal.url):
        assert f"{module.QUEUE_URL_FORMAT}" == fal.queue_url == f"{fal.url}/"
        assert module.CDN_URL + "/x" == f"{fal.url}/x" and f"{module.REST_URL}" == fal.url  # fal's paths, no prefix
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
    assert seen["queue"] == "https://queue.fal.run/" and f"{module.REST_URL}" == "https://rest.fal.ai"


def test_cli_run_json(fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from latentsync_routes.cli import app

    monkeypatch.setenv("FAL_KEY", FAL_KEY)
    out = tmp_path / "out.mp4"
    done = CliRunner().invoke(
        app, ["run", str(media[0]), str(media[1]), "-o", str(out), "--route", "fal", "--json", "--consent", "test"]
    )
    assert done.exit_code == 0, done.output
    payload = json.loads(done.stdout)
    assert payload["route"] == "fal" and payload["output_path"] == str(out) and out.exists()
    assert payload["provider_request_id"] in fal.jobs and payload["cost"]["actual"] == pytest.approx(0.20)
    assert {"estimated", "actual", "currency"} <= set(payload["cost"]) and payload["attempts"]
    assert FAL_KEY not in done.stdout


def test_large_inputs_stream_as_multipart_and_a_failed_part_retries_the_upload(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LATENTSYNC_ROUTES_POLICY__MAX_RETENTION_DAYS", "2")
    big = tmp_path / "big.mp4"
    big.write_bytes(media[0].read_bytes())
    with big.open("r+b") as handle:  # a 'free' box after the movie: still a valid mp4, 25 MiB in all
        handle.seek(0, 2)
        handle.write(struct.pack(">I4s", 25 * 2**20, b"free"))
        handle.truncate(handle.tell() + 25 * 2**20 - 8)
    fal.faults.multipart_part.append(Fault.status(500))
    result = fal_client().run(big, media[1], tmp_path / "out.mp4")
    (job,) = fal.jobs.values()
    assert job.input_bytes("video_url") == big.read_bytes()
    video = fal.store.by_url(job.arguments["video_url"])
    assert video is not None and video.origin == "multipart" and video.lifecycle is not None
    # from the upload to the job's deadline, plus the fetch margin (under the 2-day cap): the seconds the
    # job has already spent (more on a loaded machine) come off the 1800 s deadline
    assert 1800 + 600 - 120 <= video.lifecycle["expiration_duration_seconds"] <= 1800 + 600
    assert all(r.headers["X-Fal-Store-IO"] == "0" for r in fal.requests_for("multipart_create", "multipart_part"))
    assert len(fal.requests_for("multipart_create")) == 2  # the failed part failed the try; the retry restarts
    assert max(r.body_size for r in fal.requests_for("multipart_part")) == 10 * 2**20
    assert [(a.step, a.status, a.http_status) for a in result.attempts][:3] == [
        ("upload", "error", 500),
        ("upload", "ok", None),
        ("upload", "ok", None),
    ]


def test_importing_the_package_and_routes_loads_no_provider_sdk() -> None:
    code = (
        "import sys, latentsync_routes, latentsync_routes.client, latentsync_routes.routes.fal.route, "
        "latentsync_routes.routes.replicate.route, latentsync_routes.retry, latentsync_routes.download; "
        "print('fal_client' in sys.modules, 'replicate' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_every_request_uses_fals_own_paths_at_the_origins_root(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path
) -> None:
    client = fal_client()
    result = client.run(*media, tmp_path / "out.mp4")
    client.delete_job(result.job_id)
    paths = [r.path for r in fal.requests]
    assert paths and not fal.unexpected_requests
    assert all(p.startswith(("/fal-ai/latentsync", "/storage/", "/files/", "/v1/models/")) for p in paths), paths
    assert {"/storage/auth/token", "/files/upload", "/fal-ai/latentsync"} <= set(paths)
    assert fal.queue_url == f"{fal.url}/" and fal.cdn_url == fal.rest_url == fal.url


def test_prices_refresh_writes_a_dated_sourced_override_that_pricing_reads(
    fal: FakeFal, tmp_path: Path, hosted_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from latentsync_routes.cli import app
    from latentsync_routes.pricing import fal_units_cost, override_path
    from latentsync_routes.routes.fal.platform import refresh_price_book
    from latentsync_routes.routes.fal.route import ENDPOINT

    monkeypatch.setenv("FAL_KEY", FAL_KEY)
    fal.prices["fal-ai/latentsync"] = (0.0075, "second")
    sandboxed = CliRunner().invoke(app, ["prices", "refresh", "--json"])  # the fake's price is not the real one
    assert sandboxed.exit_code == 2 and "LATENTSYNC_ROUTES_FAL_BASE_URL" in sandboxed.stdout
    assert not override_path().exists() and not fal.requests_for("pricing")
    route = fal_client().route("fal")  # what the command does once no override is set
    written = refresh_price_book(route.secret(), fal.url, ENDPOINT, credential_name="FAL_KEY")  # type: ignore[attr-defined]
    assert written["billable_unit_price"] == 0.0075 and written["billable_unit"] == "second"
    assert written["source"].startswith(f"{fal.url}/v1/models/pricing?endpoint_id=fal-ai/latentsync")
    assert written["checked"] and override_path() == hosted_env / "prices.json" and override_path().is_file()
    (request,) = fal.requests_for("pricing")
    assert request.param("endpoint_id") == "fal-ai/latentsync" and request.headers["authorization"] == f"Key {FAL_KEY}"
    assert fal_units_cost(40) == pytest.approx(0.30)  # pricing reads the override from now on
    monkeypatch.delenv("LATENTSYNC_ROUTES_FAL_BASE_URL")
    monkeypatch.delenv("FAL_KEY")
    refused = CliRunner().invoke(app, ["prices", "refresh", "--json"])
    assert refused.exit_code != 0 and "FAL_KEY" in refused.stdout


def test_fake_follows_facts_listing_and_listing_no_payloads(fal: FakeFal) -> None:
    """Facts ``listing`` and ``listing-no-payloads``: only ended requests are listed; none carries json_input
    when it was sent with X-Fal-Store-IO: 0, even with expand=payloads."""
    import httpx

    auth = {"Authorization": f"Key {FAL_KEY}"}
    quiet = httpx.post(
        f"{fal.url}/fal-ai/latentsync",
        json={"video_url": "v", "audio_url": "a"},
        headers={**auth, "X-Fal-Store-IO": "0"},
    ).json()["request_id"]
    stored = httpx.post(
        f"{fal.url}/fal-ai/latentsync", json={"video_url": "v2", "audio_url": "a2"}, headers=auth
    ).json()["request_id"]
    listing = f"{fal.url}/v1/models/requests/by-endpoint"
    params = {"endpoint_id": "fal-ai/latentsync", "expand": "payloads"}
    assert httpx.get(listing, params=params, headers=auth).json()["items"] == []  # neither has ended
    fal.complete(quiet)
    fal.complete(stored)
    items = {i["request_id"]: i for i in httpx.get(listing, params=params, headers=auth).json()["items"]}
    assert set(items) == {quiet, stored}
    assert "json_input" not in items[quiet] and items[stored]["json_input"] == {"video_url": "v2", "audio_url": "a2"}
    for item in items.values():
        fields = {"request_id", "endpoint_id", "sent_at", "started_at", "ended_at", "status_code", "duration"}
        assert fields <= set(item)
        assert item["ended_at"] is not None and isinstance(item["status_code"], int)


def test_fake_follows_fact_request_timeout_504(fal: FakeFal) -> None:
    """Fact ``request-timeout-504``: a request not started within X-Fal-Request-Timeout ends with 504, never
    started, and bills nothing."""
    import httpx

    auth = {"Authorization": f"Key {FAL_KEY}"}
    fal.queue_polls = 10**6
    rid = httpx.post(
        f"{fal.url}/fal-ai/latentsync",
        json={"video_url": "v", "audio_url": "a"},
        headers={**auth, "X-Fal-Request-Timeout": "0.2"},
    ).json()["request_id"]
    time.sleep(0.3)
    status = httpx.get(f"{fal.url}/fal-ai/latentsync/requests/{rid}/status", headers=auth).json()
    assert status["status"] == "COMPLETED" and status["error_type"] == "request_timeout"
    result = httpx.get(f"{fal.url}/fal-ai/latentsync/requests/{rid}", headers=auth)
    assert result.status_code == 504 and result.headers.get("x-fal-billable-units") == "0"
    (item,) = httpx.get(
        f"{fal.url}/v1/models/requests/by-endpoint", params={"endpoint_id": "fal-ai/latentsync"}, headers=auth
    ).json()["items"]
    assert item["started_at"] is None and item["status_code"] == 504
    assert result.headers.get("X-Fal-Request-Timeout-Type") == "user"


def test_cancel_of_an_undecided_submitting_job_keeps_the_worst_case(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    """A cancelled `submitting` job may have a paid request at fal: its worst case stays in billed_unknown, and
    a failing lookup is a recorded, typed failure, not an escaping error."""
    fal.faults.submit.append(Fault.drop_after_accept())  # a request exists, not listed while it runs
    with pytest.raises(AmbiguousSubmit):
        run(tmp_path, media, deadline_seconds=3.0)
    fal.faults.list_requests.extend(Fault.status(500) for _ in range(10))
    record = fal_client().cancel(str(journal(hosted_env)["job_id"]))
    assert record.state == "cancelled" and record.provider_request_id is None
    assert record.cost.billed_unknown == pytest.approx(0.2)
    assert "looking it up failed" in record.cost.billed_unknown_basis
    assert any(a.step == "submit" and a.status == "error" and a.http_status == 500 for a in record.attempts)
    assert len(fal.jobs) == 1 and not fal.cancellations  # not found, so not cancelled there: the worst case says so


def test_cancel_of_a_submitting_job_whose_request_is_listed_cancels_it(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    fal.faults.submit.append(Fault.drop_after_accept())
    with pytest.raises(AmbiguousSubmit):
        run(tmp_path, media, deadline_seconds=3.0)
    (job,) = fal.jobs.values()
    fal.complete(job.request_id)  # ended, so listed
    record = fal_client().cancel(str(journal(hosted_env)["job_id"]))
    assert record.state == "cancelled" and record.provider_request_id == job.request_id
    assert [c.request_id for c in fal.cancellations] == [job.request_id]


def test_fact_platform_errors_are_read_from_the_error_object(fal: FakeFal) -> None:
    """Fact ``platform-errors``: the Platform API answers {"error": {"type", "message"}}; the message is kept."""
    import httpx

    from latentsync_routes.routes.fal.platform import delete_payloads, fetch_unit_price

    with httpx.Client(headers={"Authorization": f"Key {FAL_KEY}"}) as http:
        deleted, kept = delete_payloads(http, fal.url, "no-such-request", timeout=10)
        assert deleted == [] and "not_found: Request no-such-request not found" in kept[0]
        with pytest.raises(Exception) as info:
            fetch_unit_price(http, fal.url, "", timeout=10, credential_name="FAL_KEY")
    assert "endpoint_id: provide 1-50 endpoint ids" in str(getattr(info.value, "error", info.value).message)


def test_a_completed_job_records_fals_billing_event_as_its_actual(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    """fal's unit price moved to $0.006 (the packaged book says $0.005): the billing event's $0.24 is what
    was charged, not the rule's $0.20; the rule stays in the basis."""
    fal.prices["fal-ai/latentsync"] = (0.006, "second")
    result = run(tmp_path, media)
    (job,) = fal.jobs.values()
    assert result.cost.actual == 0.24 and result.cost.provider_charge == 0.24
    assert f"billing event for request {job.request_id}: $0.240000" in result.cost.basis
    assert "the rule:" in result.cost.basis and "x-fal-billable-units 40" in result.cost.basis
    (asked,) = fal.requests_for("billing_events")
    assert asked.param("request_id") == job.request_id and asked.param("endpoint_id") == "fal-ai/latentsync"
    assert asked.headers["Authorization"] == f"Key {FAL_KEY}" and asked.param("start")
    assert journal(hosted_env)["cost"]["actual"] == 0.24  # type: ignore[index]


@pytest.mark.parametrize(
    ("refusal", "pending", "said"),
    [(401, False, "HTTP 401"), (403, False, "HTTP 403"), (None, True, "no charge for request")],
)
def test_billing_events_refused_or_not_there_yet_keep_the_estimate_and_say_so(
    fal: FakeFal,
    media: tuple[Path, Path],
    tmp_path: Path,
    hosted_env: Path,
    refusal: int | None,
    pending: bool,
    said: str,
) -> None:
    fal.prices["fal-ai/latentsync"] = (0.006, "second")
    fal.billing_events_refusal, fal.billing_events_pending = refusal, pending
    result = run(tmp_path, media)
    assert result.record.state == "fetched" and result.cost.actual == pytest.approx(0.20)
    assert result.cost.provider_charge is None and said in result.cost.provider_charge_note
    assert "the charge is the price book's estimate, not fal's own figure" in result.cost.basis
    assert said in result.cost.basis and FAL_KEY not in result.model_dump_json()


def test_a_billed_422_records_fals_billing_event(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    fal.prices["fal-ai/latentsync"] = (0.006, "second")
    fal.fail_job(status_code=422, detail=GS_422, billable_units=40)
    with pytest.raises(ProviderInputRejected):
        run(tmp_path, media)
    record = journal(hosted_env)
    assert record["attempts"][-1]["billed_amount"] == 0.24  # type: ignore[index]
    assert record["cost"]["billed_failures"] == 0.24 and record["cost"]["provider_charge"] == 0.24  # type: ignore[index]


def test_a_cancelled_running_request_is_billed_what_its_billing_event_says(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    fal.queue_polls, fal.progress_polls, fal.cancel_billable_units = 0, 10_000, 12
    fal.prices["fal-ai/latentsync"] = (0.006, "second")
    with pytest.raises(DeadlineExceeded):
        run(tmp_path, media, deadline_seconds=3)
    cost = journal(hosted_env)["cost"]
    assert cost["billed_failures"] == 0.072 and cost["billed_unknown"] == 0  # type: ignore[index]
    assert cost["provider_charge"] == 0.072  # type: ignore[index]


def test_billing_event_amounts_are_read_exactly() -> None:
    from latentsync_routes.routes.fal.billing_events import event_micros

    assert event_micros({"cost_estimate_nano_usd": 1_500_000}) == 1_500  # $0.0015
    assert event_micros({"cost_estimate_nano_usd": 2_500}) == 2 and event_micros({"cost_estimate_nano_usd": 3_500}) == 4
    assert event_micros({"output_units": 2, "unit_price": 0.001, "percent_discount": 10}) == 1_800
    assert event_micros({"output_units": 3, "unit_price": 0.1}) == 300_000  # 0.30000000000000004 as floats
    assert event_micros({"output_units": float("nan"), "unit_price": 0.1}) is None and event_micros({}) is None


def test_fake_follows_facts_billing_events_and_billing_events_lag(fal: FakeFal, media: tuple[Path, Path]) -> None:
    """Fact ``billing-events``: the documented filters and answer; ``billing-events-lag``: a request
    that cost nothing (cancelled in the queue) has no event; ``billing-events-refused``: 401/403 with
    the Platform API's error object."""
    import httpx

    fal.validate_inputs = False
    with httpx.Client(base_url=fal.url, headers={"Authorization": f"Key {FAL_KEY}"}) as http:
        paid, free = (http.post("/fal-ai/latentsync", json={}).json()["request_id"] for _ in range(2))
        fal.billable_units = 40
        fal.complete(paid)
        fal.billable_units = 0
        fal.complete(free)
        answer = http.get("/v1/models/billing-events", params={"request_id": f"{paid},{free}"}).json()
        (event,) = answer["billing_events"]
        assert event["request_id"] == paid and event["cost_estimate_nano_usd"] == 200_000_000
        assert set(event) == {
            "request_id", "endpoint_id", "timestamp", "output_units", "unit_price", "percent_discount",
            "cost_estimate_nano_usd",
        }  # fmt: skip
        assert answer["has_more"] is False and answer["next_cursor"] is None
        later = datetime.now(timezone.utc) + timedelta(hours=1)
        empty = http.get("/v1/models/billing-events", params={"start": later.strftime("%Y-%m-%dT%H:%M:%SZ")})
        assert empty.json()["billing_events"] == []
        fal.billing_events_refusal = 403
        refused = http.get("/v1/models/billing-events", params={"request_id": paid})
        assert refused.status_code == 403 and set(refused.json()["error"]) == {"type", "message"}


def test_a_runners_422_without_billable_units_is_counted_at_its_worst_case(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    """Fact ``invalid-input-billing``: a runner's 422 may be charged. With no ``x-fal-billable-units`` and
    a key that may not read billing events, the cautious reading is the worst case, never $0."""
    fal.billing_events_refusal = 403
    fal.fail_job(status_code=422, detail=GS_422)
    with pytest.raises(ProviderInputRejected, match="which fal may still charge"):
        run(tmp_path, media)
    record = journal(hosted_env)
    cost = record["cost"]
    estimate = fal_client().estimate(*media)
    assert record["attempts"][-1]["billed_amount"] == 0  # type: ignore[index]
    assert cost["billed_unknown"] == estimate.high and cost["billed_unknown"] > 0  # type: ignore[index]
    assert "worst case" in cost["billed_unknown_basis"] and "403" in cost["billed_unknown_basis"]  # type: ignore[index]


def test_a_runners_422_with_zero_billable_units_is_not_counted(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    """fal's own figure, zero units, is taken as it is: the job failed unbilled."""
    fal.billing_events_refusal = 403
    fal.fail_job(status_code=422, detail=GS_422, billable_units=0)
    with pytest.raises(ProviderInputRejected, match="fal reported no billable units"):
        run(tmp_path, media)
    cost = journal(hosted_env)["cost"]
    assert cost["billed_unknown"] == 0 and cost["billed_failures"] == 0  # type: ignore[index]


def test_jobs_delete_lists_the_file_an_unanswered_upload_may_have_left(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    """``jobs delete`` of a job whose record still holds an unanswered upload's tag (a crash mid-upload):
    no fal call finds or deletes it, so the delete lists it as possibly left, with the lifecycle sent."""
    result = run(tmp_path, media)
    crashed = result.record.model_copy(update={"upload_intents": [f"{result.record.job_id}:1765000000:ab12"]})
    deleted, kept = fal_client().route("fal").delete_remote(crashed)
    (left,) = [line for line in kept if "never answered" in line]
    assert "may have left at fal" in left and "lifecycle" in left and "2025-12-06" in left
    assert any("payloads" in line for line in deleted)
