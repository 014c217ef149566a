"""What is journalled: nothing for a job refused before its claim; everything that happens after it.

A refusal before payment (bad input, an output that is someone else's, a policy or budget stop) leaves
no row, and leaves an earlier row of the same job as it was. Recorded input paths are absolute, and a
hosted output gets the mode the user's umask gives a new file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from latentsync_routes import InputError, LipSyncClient, load_settings
from latentsync_routes.testing import FakeFal, write_test_audio, write_test_video

KEY = "journal-rule-key"


@pytest.fixture
def media(tmp_path: Path) -> tuple[Path, Path, Path]:
    return (
        write_test_video(tmp_path / "clip.mp4", 1.0),
        write_test_audio(tmp_path / "one.wav", 1.0),
        write_test_audio(tmp_path / "two.wav", 1.0, hz=523),
    )


def _client(tmp_path: Path, fal: FakeFal) -> LipSyncClient:
    settings = load_settings(home=tmp_path / "home", route_settings={"fal": {"base_url": fal.url}}, poll_interval=0.01)
    return LipSyncClient(route="fal", credentials={"fal": KEY}, consent="test", settings=settings)


def test_an_output_that_is_another_job_s_is_refused_before_the_claim(
    tmp_path: Path, media: tuple[Path, Path, Path]
) -> None:
    video, one, two = media
    out = tmp_path / "out.mp4"
    with FakeFal(expected_key=KEY, billable_units=40) as fal:
        client = _client(tmp_path, fal)
        first = client.run(video, one, out)
        with pytest.raises(InputError, match="already exists"):
            client.run(video, two, out)
        assert len(fal.jobs) == 1
    assert [r.job_id for r in client.journal.list()] == [first.job_id]  # no row for the refusal


def test_a_failed_job_rerun_onto_someone_else_s_file_is_refused_and_its_row_kept(
    tmp_path: Path, media: tuple[Path, Path, Path]
) -> None:
    video, one, _ = media
    out = tmp_path / "out.mp4"
    with FakeFal(expected_key=KEY) as fal:
        client = _client(tmp_path, fal)
        fal.fail_job(status_code=500)
        with pytest.raises(Exception):  # noqa: B017, PT011 - the provider job failed; which error is another test's
            client.run(video, one, out)
        (failed,) = client.journal.list()
        assert failed.state == "failed" and not out.exists()
        out.write_bytes(b"someone else's file")
        with pytest.raises(InputError, match="already exists"):
            client.run(video, one, out, retry_failed=True)
        assert len(fal.jobs) == 1  # no second paid job
    (after,) = client.journal.list()
    assert after.model_dump() == failed.model_dump() and out.read_bytes() == b"someone else's file"


def test_input_paths_are_recorded_absolute(
    tmp_path: Path, media: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with FakeFal(expected_key=KEY, billable_units=40) as fal:
        result = _client(tmp_path, fal).run("clip.mp4", "one.wav", "out.mp4")
    sources = [entry.source for entry in result.record.inputs]
    assert sources == [str(tmp_path / "clip.mp4"), str(tmp_path / "one.wav")]
    assert isinstance(result.output_path, Path) and result.output_path == tmp_path / "out.mp4"


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_hosted_outputs_honour_the_umask(tmp_path: Path, media: tuple[Path, Path, Path], umask: int, mode: int) -> None:
    video, one, _ = media
    previous = os.umask(umask)
    try:
        with FakeFal(expected_key=KEY, billable_units=40) as fal:
            result = _client(tmp_path, fal).run(video, one, tmp_path / "out.mp4")
    finally:
        os.umask(previous)
    assert result.output_path is not None
    assert stat.S_IMODE(result.output_path.stat().st_mode) == mode
