"""The local route has no provider to hold a job: its ``submit`` runs the job to the end (docs/webhooks.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from latentsync_routes import LipSyncClient
from latentsync_routes.local.runtime import LoadedModels
from tests.local_fixtures import astronaut_frames, write_h264
from tests.mediafactory import make_wav
from tests.test_local_route import cache, home, tiny  # noqa: F401 - fixtures

pytest.importorskip("mediapipe")


def test_local_submit_runs_the_job_and_wait_gives_runs_result(tmp_path: Path, home: Path, tiny: LoadedModels) -> None:  # noqa: F811
    video = write_h264(tmp_path / "face.mp4", astronaut_frames(15))
    audio = make_wav(tmp_path / "voice.wav", seconds=0.5)
    client = LipSyncClient(route="local")
    job = client.submit(video, audio, output=tmp_path / "out.mp4", inference_steps=2, seed=3)
    assert job.state == "fetched" and (tmp_path / "out.mp4").stat().st_size > 0
    result = job.wait()
    assert not result.already_done and result.job_id == job.id  # run's own result, not a re-read
    assert [(a.step, a.status) for a in result.record.attempts] == [("run", "ok")]
    again = client.job(job.id[:8]).wait()
    assert again.already_done and again.output_path == result.output_path
    assert job.status().state == "fetched"  # nothing to poll: the journal's record
