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


def test_fal_delete_removes_output_and_explains_uploads(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path
) -> None:
    client = fal_client()
    result = client.run(*media, tmp_path / "out.mp4")
    assert Path(result.output_path or "").exists()
    record = client.delete_job(result.job_id)
    assert not (tmp_path / "out.mp4").exists()
    assert record.deleted == [f"local output {tmp_path / 'out.mp4'}"]
    assert len(record.not_deleted) == 2 and all("expiry set at upload" in item for item in record.not_deleted)
    journalled = client.journal.get(result.job_id)
    assert journalled is not None and journalled.deleted == record.deleted


def test_replicate_delete_finishes_what_the_run_could_not(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    rep.faults.file_delete.extend([Fault.status(500), Fault.status(500)])
    client = replicate_client()
    result = client.run(*media, tmp_path / "out.mp4")
    assert len(result.record.uploaded_uris) == 2
    assert sum("delete failed" in item for item in result.record.not_deleted) == 2
    assert len(rep.uploads) == 2

    done = run_cli("jobs", "delete", result.job_id, "--keep-output", "--json", home=hosted_env,
                   env={"REPLICATE_API_TOKEN": REPLICATE_TOKEN, "LATENTSYNC_ROUTES_REPLICATE_BASE_URL": rep.url})
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert set(record["deleted"]) == set(result.record.uploaded_uris)
    assert not any("delete failed" in item for item in record["not_deleted"])
    assert rep.uploads == []
    assert (tmp_path / "out.mp4").exists()  # --keep-output
