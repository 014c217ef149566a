"""WaveSpeed's money and ambiguity rules through the public client, against FakeWaveSpeed over loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from latentsync_routes import AmbiguousSubmit, DeadlineExceeded, LipSyncClient
from latentsync_routes.errors import JobFailed
from latentsync_routes.journal import Journal
from latentsync_routes.testing import FakeWaveSpeed, Fault
from tests import hosted_fixtures

hosted_env = hosted_fixtures.hosted_env
media = hosted_fixtures.media
KEY = "ws-route-test-key"


@pytest.fixture
def ws(hosted_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWaveSpeed]:
    with FakeWaveSpeed(expected_key=KEY) as server:
        monkeypatch.setenv("LATENTSYNC_ROUTES_WAVESPEED_BASE_URL", server.url)
        yield server


def run(tmp_path: Path, media: tuple[Path, Path], **kwargs: object):  # type: ignore[no-untyped-def]
    client = LipSyncClient(route="wavespeed", credentials={"wavespeed": KEY}, consent="test")
    return client.run(*media, tmp_path / "out.mp4", **kwargs)  # type: ignore[arg-type]


def record(home: Path):  # type: ignore[no-untyped-def]
    (only,) = Journal(home / "jobs.sqlite3").list(limit=5)
    return only


def test_fact_refunds_an_invalid_parameter_failure_is_billed(
    ws: FakeWaveSpeed, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    ws.fail_job(error="invalid audio", code=1401)
    with pytest.raises(JobFailed, match="not refunded"):
        run(tmp_path, media)
    (prediction,) = ws.predictions.values()
    assert record(hosted_env).cost.billed_failures == pytest.approx(prediction.cost_usd) == pytest.approx(0.15)


def test_fact_refunds_a_system_failure_is_refunded(
    ws: FakeWaveSpeed, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    ws.fail_job(error="internal error", code=5000)
    with pytest.raises(JobFailed, match="refunded"):
        run(tmp_path, media)
    job = record(hosted_env)
    assert job.cost.billed_failures == 0 and job.cost.billed_unknown == 0


def test_fact_runs_on_a_job_completing_after_its_deadline_is_billed_and_fetched_on_resume(
    ws: FakeWaveSpeed, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    ws.hold_jobs()
    with pytest.raises(DeadlineExceeded, match="nothing is paid again"):
        run(tmp_path, media, deadline_seconds=3)
    job = record(hosted_env)
    assert job.state in ("submitted", "completed") and job.interrupted  # resumable, not cancelled
    assert job.cost.billed_unknown == pytest.approx(0.15)  # runs on, billed when it completes: worst case
    ws.release_jobs()
    result = run(tmp_path, media)  # the same command: the known prediction is fetched, nothing paid again
    assert len(ws.predictions) == 1 and result.provider_request_id in ws.predictions
    assert result.record.state == "fetched" and result.cost.billed_unknown == 0
    assert result.cost.actual == pytest.approx(0.15)


def test_fact_listing_a_dropped_accepted_submit_is_adopted_by_time(
    ws: FakeWaveSpeed, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    ws.faults.submit.append(Fault.drop_after_accept())
    result = run(tmp_path, media)
    assert len(ws.predictions) == 1 and result.provider_request_id in ws.predictions
    assert result.record.state == "fetched"


def test_fact_listing_bound_a_submit_that_created_nothing_stays_ambiguous_at_its_worst_case(
    ws: FakeWaveSpeed, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    ws.faults.submit.append(Fault.drop())
    with pytest.raises(AmbiguousSubmit, match="force-resubmit"):
        run(tmp_path, media)
    assert len(ws.predictions) == 0 and record(hosted_env).cost.billed_unknown == pytest.approx(0.15)


def test_fact_upload_no_delete_an_unanswered_upload_is_listed_as_possibly_left(
    ws: FakeWaveSpeed, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    """The PUT stored the video and the connection dropped before the answer: the retry uploads again, and
    the record lists the file the first try may have left (WaveSpeed has no upload listing or delete)."""
    ws.faults.upload_put.append(Fault.drop_after_accept())
    result = run(tmp_path, media)
    assert result.record.state == "fetched" and result.record.upload_intents == []
    assert len(result.record.uploaded_uris) == 2 and len(ws.uploads) == 3  # the first try's file is there
    (left,) = [line for line in result.record.not_deleted if "never answered" in line]
    assert "may have left at WaveSpeed" in left and "after 7 days" in left
    assert record(hosted_env).not_deleted == result.record.not_deleted


def test_jobs_delete_lists_the_file_an_unanswered_upload_may_have_left(
    ws: FakeWaveSpeed, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    """``jobs delete`` of a job whose record still holds an unanswered upload's tag (a crash mid-upload):
    the file cannot be found or deleted at WaveSpeed, so the delete lists it as possibly left."""
    result = run(tmp_path, media)
    route = LipSyncClient(route="wavespeed", credentials={"wavespeed": KEY}, consent="test").route("wavespeed")
    crashed = result.record.model_copy(update={"upload_intents": [f"{result.record.job_id}:1765000000:ab12"]})
    deleted, kept = route.delete_remote(crashed)
    assert deleted == [f"prediction {result.record.provider_request_id}"]
    (left,) = [line for line in kept if "never answered" in line]
    assert "may have left at WaveSpeed" in left and "2025-12-06" in left
