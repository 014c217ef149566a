"""delete_job removes what it can, keeps the record, and says what could not be deleted."""

from __future__ import annotations

import json
from pathlib import Path

from latentsync_routes.testing import FakeFal, FakeReplicate, Fault
from tests import hosted_fixtures
from tests.cli_helpers import run_cli
from tests.hosted_fixtures import REPLICATE_TOKEN, fal_client, replicate_client

fal = hosted_fixtures.fal
hosted_env = hosted_fixtures.hosted_env
media = hosted_fixtures.media
rep = hosted_fixtures.rep


def test_fal_delete_calls_delete_request_payloads_once_and_reports_only_what_was_done(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path
) -> None:
    client = fal_client()
    result = client.run(*media, tmp_path / "out.mp4")
    assert Path(result.output_path or "").exists()
    output = fal.store.by_url(result.output_url or "")
    assert output is not None
    record = client.delete_job(result.job_id)
    assert not (tmp_path / "out.mp4").exists()
    (call,) = fal.payload_deletions
    assert call.request_id == result.provider_request_id and call.links == (result.output_url,)
    assert fal.requests_for("delete_payloads")[0].method == "DELETE"
    assert fal.store.get(output.id) is None  # fal's output file is gone
    assert record.deleted == [
        f"local output {tmp_path / 'out.mp4'}",
        f"fal request {result.provider_request_id} payloads (fal answered HTTP 200)",
        f"{result.output_url} (fal output file, deleted by fal)",
    ]
    assert len(record.not_deleted) == 2 and all("expiry set at upload" not in i for i in record.not_deleted)
    assert all("X-Fal-Object-Lifecycle-Preference" in item for item in record.not_deleted)  # what was sent
    journalled = client.journal.get(result.job_id)
    assert journalled is not None and journalled.deleted == record.deleted
    again = client.delete_job(result.job_id)  # a second delete claims nothing new and calls fal no more
    assert again.deleted == record.deleted and len(fal.payload_deletions) == 1


def test_fal_delete_records_a_refusal(fal: FakeFal, media: tuple[Path, Path], tmp_path: Path) -> None:
    client = fal_client()
    result = client.run(*media, tmp_path / "out.mp4")
    fal.faults.delete_payloads.append(Fault.status(403))
    record = client.delete_job(result.job_id, delete_output=False)
    assert record.deleted == [] and any(
        "refused the delete, HTTP 403" in i and "admin key" in i for i in record.not_deleted
    )
    record = client.delete_job(result.job_id, delete_output=False)  # not done before, so tried again
    assert any(line.startswith(f"fal request {result.provider_request_id} payloads") for line in record.deleted)


def test_replicate_delete_finishes_what_the_run_could_not(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    rep.faults.file_delete.extend([Fault.status(500), Fault.status(500)])
    client = replicate_client()
    result = client.run(*media, tmp_path / "out.mp4")
    assert len(result.record.uploaded_uris) == 2
    assert sum("delete failed" in item for item in result.record.not_deleted) == 2
    assert len(rep.uploads) == 2

    done = run_cli(
        "jobs",
        "delete",
        result.job_id,
        "--keep-output",
        "--json",
        home=hosted_env,
        env={"REPLICATE_API_TOKEN": REPLICATE_TOKEN, "LATENTSYNC_ROUTES_REPLICATE_BASE_URL": rep.url},
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert set(record["deleted"]) == set(result.record.uploaded_uris)
    assert not any("delete failed" in item for item in record["not_deleted"])
    assert rep.uploads == []
    assert (tmp_path / "out.mp4").exists()  # --keep-output


def test_delete_removes_staged_input_copies_under_home_but_never_the_users_files(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    import shutil

    staged = hosted_env / "ui" / "uploads" / "abc123"
    staged.mkdir(parents=True)
    video = Path(shutil.copy(media[0], staged / "clip.mp4"))
    client = fal_client()
    result = client.run(video, media[1], tmp_path / "out.mp4")
    record = client.delete_job(result.job_id)
    assert not video.exists() and not staged.exists()  # the page's copy and its folder are gone
    assert media[1].exists()  # the user's own audio file is untouched
    assert f"staged video {video.resolve()}" in record.deleted
    kept = client.delete_job(result.job_id, delete_output=False)
    assert not any(item.startswith("staged") for item in kept.deleted[len(record.deleted) :])
