"""A process killed while waiting must not cost a second provider job: the journal resumes it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from latentsync_routes.journal import Journal
from latentsync_routes.testing import FakeFal, write_test_audio, write_test_video
from tests.cli_helpers import clean_env, console_script

KEY = "resume-test-key-9f8e7d"


def _env(home: Path, fal_url: str) -> dict[str, str]:
    return clean_env(
        home, {"LATENTSYNC_ROUTES_FAL_BASE_URL": fal_url, "LATENTSYNC_ROUTES_POLL_INTERVAL": "0.05", "FAL_KEY": KEY}
    )


def _wait_for_submitted(journal_path: Path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if journal_path.exists():
            for record in Journal(journal_path).list():
                if record.state == "submitted" and record.provider_request_id:
                    return record.provider_request_id
        time.sleep(0.05)
    raise AssertionError("the job never reached 'submitted' in the journal")


@pytest.mark.parametrize("how", ["run-again", "jobs-resume"])
def test_sigkill_while_waiting_then_resume(tmp_path: Path, how: str) -> None:
    video = write_test_video(tmp_path / "clip.mp4", 1.0)
    audio = write_test_audio(tmp_path / "voice.wav", 1.5)
    output = tmp_path / "out.mp4"
    home = tmp_path / "home"
    exe = console_script()
    command = [exe, "run", str(video), str(audio), "-o", str(output), "--route", "fal", "--consent", "test", "--json"]
    with FakeFal(expected_key=KEY, queue_polls=10**9) as fal:
        env = _env(home, fal.url)
        first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            request_id = _wait_for_submitted(home / "jobs.sqlite3")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        assert first.returncode == -signal.SIGKILL
        assert list(fal.jobs) == [request_id]
        assert not output.exists()

        fal.complete(request_id)
        if how == "run-again":
            second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        else:
            (record,) = Journal(home / "jobs.sqlite3").list()
            second = subprocess.run(
                [exe, "jobs", "resume", record.job_id, "--json"], env=env, capture_output=True, text=True, timeout=120
            )
        assert second.returncode == 0, second.stderr
        result = json.loads(second.stdout)
        assert result["provider_request_id"] == request_id
        assert len(fal.jobs) == 1, "resuming must never submit a second provider job"
        assert len(fal.requests_for("submit")) == 1
        assert output.exists() and output.stat().st_size > 0
        (record,) = Journal(home / "jobs.sqlite3").list()
        assert record.state == "fetched" and record.output_path == str(output)
        assert KEY not in second.stdout + second.stderr
