"""A process killed while waiting must not cost a second provider job: the journal resumes it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from latentsync_routes.journal import Journal
from latentsync_routes.testing import FakeFal, Fault, write_test_audio, write_test_video
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


# The fact sheet's bounds, shrunk for the test (the longest a started request runs; the clock skew): the CLI
# runs as it ships, with only these two module constants changed.
_SHRUNK = (
    "import sys; from latentsync_routes.routes import hosted_lookup; from latentsync_routes.routes.fal import "
    "route; route.LONGEST_RUN_S = 0.0; hosted_lookup.CLOCK_SKEW_S = 0.5; from latentsync_routes.cli import "
    "main; sys.argv[0] = 'latentsync-routes'; main()"
)


def _wait_for(check: object, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"never saw {what}")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["run-again", "jobs-resume"])
@pytest.mark.parametrize("created", [False, True], ids=["before-the-queue-created-it", "after-the-queue-created-it"])
def test_sigkill_during_the_fal_submit_then_resume_pays_once(tmp_path: Path, how: str, created: bool) -> None:
    """fal stores no payloads (X-Fal-Store-IO: 0) and lists only ended requests: decided by time, no flag."""
    import sys

    video = write_test_video(tmp_path / "clip.mp4", 1.0)
    audio = write_test_audio(tmp_path / "voice.wav", 1.0)
    output = tmp_path / "out.mp4"
    home = tmp_path / "home"
    args = ["run", str(video), str(audio), "-o", str(output), "--route", "fal", "--consent", "test", "--json"]
    with FakeFal(expected_key=KEY, run_seconds=1.0) as fal:
        # the reply is held (created) or the request held and then dropped (never created)
        fal.faults.submit.append(Fault.hold_reply(60) if created else Fault.delay(60, then=Fault.drop()))
        env = _env(home, fal.url)
        first = subprocess.Popen(
            [sys.executable, "-c", _SHRUNK, *args, "--deadline", "4"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            if created:
                _wait_for(lambda: len(fal.jobs) == 1, "the provider job")
            else:
                _wait_for(lambda: fal.requests_for("submit"), "the submit arrive")
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        assert first.returncode == -signal.SIGKILL
        (record,) = Journal(home / "jobs.sqlite3").list()
        assert record.state == "submitting" and record.provider_request_id is None
        again = ["jobs", "resume", record.job_id, "--json"] if how == "jobs-resume" else [*args, "--deadline", "40"]
        second = subprocess.run(
            [sys.executable, "-c", _SHRUNK, *again], env=env, capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 0, second.stdout + second.stderr
        result = json.loads(second.stdout)
        assert len(fal.jobs) == 1, f"exactly one provider job, whether or not the killed submit made one: {result}"
        assert result["provider_request_id"] in fal.jobs
        assert output.exists() and output.stat().st_size > 0
        (record,) = Journal(home / "jobs.sqlite3").list()
        assert record.state == "fetched" and record.cost.billed_unknown == 0
        assert KEY not in second.stdout + second.stderr
