"""Output download: streamed to a temp file, capped, probed, atomically moved, retried as a download only."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from latentsync_routes.download import download_output, ensure_writable
from latentsync_routes.errors import DownloadError, InputError
from latentsync_routes.testing import FakeFal, Fault
from tests import hosted_fixtures
from tests.hosted_fixtures import make_job

# fixtures shared with the other hosted-route tests
hosted_env = hosted_fixtures.hosted_env
media = hosted_fixtures.media

pytestmark = pytest.mark.usefixtures("hosted_env")


@pytest.fixture
def cdn() -> Iterator[FakeFal]:
    with FakeFal() as server:
        yield server


def serve(cdn: FakeFal, data: bytes, name: str = "output.mp4") -> str:
    url = f"{cdn.cdn_url}/files/test/{len(cdn.store.all())}_{name}"
    cdn.store.save_bytes(
        data, file_id=str(len(cdn.store.all())), name=name, content_type="video/mp4", url=url, origin="output"
    )
    return url


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_downloads_probes_and_moves_into_place(tmp_path: Path, cdn: FakeFal, media: tuple[Path, Path]) -> None:
    job = make_job(tmp_path)
    url = serve(cdn, media[0].read_bytes())
    path = download_output(job, url, route="test", request_id="r1")
    assert path == tmp_path / "out.mp4" and path.read_bytes() == media[0].read_bytes()
    assert leftovers(tmp_path) == []
    assert [(a.step, a.status) for a in job.record.attempts] == [("fetch", "ok")]


def test_truncated_download_is_retried_as_a_download(tmp_path: Path, cdn: FakeFal, media: tuple[Path, Path]) -> None:
    job = make_job(tmp_path)
    url = serve(cdn, media[0].read_bytes())
    cdn.faults.file_download.append(Fault.truncate(100))
    path = download_output(job, url, route="test", request_id="r1")
    assert path.read_bytes() == media[0].read_bytes()
    assert len(cdn.requests_for("file_download")) == 2
    assert [(a.step, a.status, a.retryable) for a in job.record.attempts] == [
        ("fetch", "error", True),
        ("fetch", "ok", False),
    ]
    assert leftovers(tmp_path) == []


def test_missing_output_is_not_retried(tmp_path: Path, cdn: FakeFal) -> None:
    job = make_job(tmp_path)
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        download_output(job, f"{cdn.cdn_url}/files/test/gone.mp4", route="test", request_id="r1")
    assert info.value.request_id == "r1" and len(cdn.requests_for("file_download")) == 1
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def test_size_cap(tmp_path: Path, cdn: FakeFal, media: tuple[Path, Path]) -> None:
    job = make_job(tmp_path, max_output_bytes=1000)
    url = serve(cdn, media[0].read_bytes())
    with pytest.raises(DownloadError, match="max_output_bytes=1000"):
        download_output(job, url, route="test", request_id=None)
    assert len(cdn.requests_for("file_download")) == 1
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def test_a_file_that_is_not_a_video_is_never_accepted(tmp_path: Path, cdn: FakeFal) -> None:
    job = make_job(tmp_path)
    url = serve(cdn, b"<html>not a video</html>" * 20)
    with pytest.raises(DownloadError, match="not a playable video"):
        download_output(job, url, route="test", request_id=None)
    assert len(cdn.requests_for("file_download")) == 1  # complete body per Content-Length: final
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


def test_no_overwrite_unless_allowed(tmp_path: Path, cdn: FakeFal, media: tuple[Path, Path]) -> None:
    (tmp_path / "out.mp4").write_bytes(b"precious")
    job = make_job(tmp_path)
    with pytest.raises(InputError, match="already exists"):
        ensure_writable(job, "test")
    url = serve(cdn, media[0].read_bytes())
    with pytest.raises(DownloadError, match="already exists"):
        download_output(job, url, route="test", request_id=None)
    assert (tmp_path / "out.mp4").read_bytes() == b"precious"
    job = make_job(tmp_path, overwrite=True)
    ensure_writable(job, "test")
    assert download_output(job, url, route="test", request_id=None).read_bytes() == media[0].read_bytes()


def test_provider_file_names_are_sanitised(tmp_path: Path, cdn: FakeFal, media: tuple[Path, Path]) -> None:
    folder = tmp_path / "outputs"
    folder.mkdir()
    job = make_job(tmp_path)
    job.output_path = folder
    url = serve(cdn, media[0].read_bytes())
    path = download_output(job, url, route="test", request_id=None, file_name="../../.evil name.mp4")
    assert path == folder / "evil_name.mp4" and path.exists()


def test_data_uri_output(tmp_path: Path, media: tuple[Path, Path]) -> None:
    job = make_job(tmp_path)
    uri = "data:video/mp4;base64," + base64.b64encode(media[0].read_bytes()).decode()
    assert download_output(job, uri, route="test", request_id=None).read_bytes() == media[0].read_bytes()


# -- the job's deadline bounds the download (issue 21: a 40 s stall ran past --deadline 3) -------------------
def test_a_stalled_body_ends_at_the_job_deadline_with_nothing_at_the_destination(
    tmp_path: Path, cdn: FakeFal, media: tuple[Path, Path]
) -> None:
    import time

    from latentsync_routes.deadlines import deadline_scope
    from latentsync_routes.errors import DeadlineExceeded

    job = make_job(tmp_path, deadline_s=2.0)
    url = serve(cdn, media[0].read_bytes())
    cdn.faults.file_download.append(Fault.stall(120.0, after_bytes=256))
    started = time.monotonic()
    with deadline_scope(job.deadline), pytest.raises(DeadlineExceeded) as caught:
        download_output(job, url, route="test", request_id="r1")
    assert time.monotonic() - started < 60.0  # bounded by the deadline, not the 120 s stall (generous: loaded CI)
    assert "jobs resume job1" in caught.value.message and caught.value.request_id == "r1"
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []
    assert len(cdn.requests_for("file_download")) == 1  # no retry after the deadline


def test_a_download_stopped_by_the_deadline_leaves_the_paid_job_resumable(
    tmp_path: Path, media: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from latentsync_routes.errors import DeadlineExceeded

    key = hosted_fixtures.FAL_KEY
    with FakeFal(expected_key=key, queue_polls=1, progress_polls=1) as fal:
        monkeypatch.setenv("LATENTSYNC_ROUTES_FAL_BASE_URL", fal.url)
        client = hosted_fixtures.fal_client()
        output = tmp_path / "out.mp4"
        job = client.submit(*media, output=output)  # the provider holds it; the download alone meets the deadline
        fal.complete(job.record.provider_request_id or "")
        fal.faults.file_download.append(Fault.stall(120.0, after_bytes=256))
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as caught:
            client.resume(job.id, deadline_seconds=4.0)
        assert time.monotonic() - started < 60.0, caught.value
        record = client.journal.get(job.id)
        assert record is not None and record.state == "completed" and record.interrupted  # paid, resumable
        assert not output.exists() and leftovers(tmp_path) == []
        result = client.resume(job.id)  # a later resume downloads the paid output: no new provider job
        assert result.output_path == output and output.is_file() and len(fal.jobs) == 1
