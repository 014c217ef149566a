"""Job handles: ``submit`` returns once the provider holds the job; ``wait`` gives what ``run`` gives, once.

Against FakeFal on loopback with the real fal-client. The cross-process tests run ``client.job(prefix).wait()``
in child processes and count provider jobs and output downloads at the fake.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from latentsync_routes import LipSyncClient
from latentsync_routes.errors import ConfigurationError, InvalidParameter, WaitTimeout
from latentsync_routes.journal import Journal
from latentsync_routes.testing import FakeFal
from tests.hosted_fixtures import FAL_KEY, fal, hosted_env, media  # noqa: F401 - fixtures

DOWNLOADS = "file_download"


def _client() -> LipSyncClient:
    return LipSyncClient(route="fal", consent="test", credentials={"fal": FAL_KEY})


def test_submit_returns_with_the_provider_job_and_wait_gives_the_run_result(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path
) -> None:
    video, audio = media
    fal.hold_jobs()
    client = _client()
    job = client.submit(video, audio, output=tmp_path / "out.mp4")
    assert job.state == "submitted" and job.route == "fal"
    request_id = job.record.provider_request_id
    assert list(fal.jobs) == [request_id]
    assert not (tmp_path / "out.mp4").exists()
    assert job.status().state == "submitted"  # one poll: still running at the provider
    assert len(fal.requests_for("status")) == 1

    with pytest.raises(WaitTimeout) as timed_out:
        job.wait(timeout=0.2)
    assert timed_out.value.job_id == job.id and job.state == "submitted"  # the job keeps running

    fal.release_jobs()
    result = job.wait()
    assert result.provider_request_id == request_id and result.job_id == job.id
    assert Path(result.output_path).stat().st_size > 0
    assert result.cost.actual is not None and result.record.state == "fetched"
    again = client.job(job.id[:8]).wait()  # a second wait, from a rebuilt handle: the same result, no fetch
    assert again.already_done and not result.already_done  # the second wait paid and fetched nothing
    assert again.model_dump(exclude={"already_done"}) == result.model_dump(exclude={"already_done"})
    assert len(fal.jobs) == 1 and len(fal.requests_for("submit")) == 1
    assert len(fal.requests_for(DOWNLOADS)) == 1


def test_run_gives_what_submit_then_wait_gives(fal: FakeFal, media: tuple[Path, Path], tmp_path: Path) -> None:
    video, audio = media
    client = _client()
    ran = client.run(video, audio, tmp_path / "ran.mp4", seed=1)
    waited = client.submit(video, audio, output=tmp_path / "waited.mp4", seed=1).wait()
    skip = {"job_id", "output_path", "output_url", "provider_request_id", "record", "attempts", "timings"}
    skip.add("cost")  # its basis names the job's own provider request (fal's billing event for it)
    assert {k: v for k, v in ran.model_dump().items() if k not in skip} == {
        k: v for k, v in waited.model_dump().items() if k not in skip
    }
    own = {"basis", "provider_charge_note"}
    assert ran.cost.model_dump(exclude=own) == waited.cost.model_dump(exclude=own)
    for result in (ran, waited):
        assert f"request {result.provider_request_id}" in (result.cost.provider_charge_note or "")
    assert [a.step for a in ran.attempts] == [a.step for a in waited.attempts]
    assert ran.record.state == waited.record.state == "fetched"


def test_job_takes_a_unique_prefix_only(fal: FakeFal, media: tuple[Path, Path], tmp_path: Path) -> None:
    video, audio = media
    client = _client()
    job = client.submit(video, audio, output=tmp_path / "out.mp4")
    assert client.job(job.id[:6]).id == job.id
    assert client.job(f"  {job.id} ").id == job.id
    with pytest.raises(ConfigurationError, match="at least 6"):
        client.job(job.id[:5])
    with pytest.raises(ConfigurationError, match="no job"):
        client.job("zzzzzzzz")
    with pytest.raises(InvalidParameter, match="one route"):
        client.submit(video, audio, output=tmp_path / "x.mp4", route="cheapest")


def test_cancel_and_delete_through_the_handle(fal: FakeFal, media: tuple[Path, Path], tmp_path: Path) -> None:
    video, audio = media
    fal.hold_jobs()
    job = _client().submit(video, audio, output=tmp_path / "out.mp4")
    record = job.cancel()
    assert record.state == "cancelled" and job.state == "cancelled"
    assert len(fal.requests_for("cancel")) == 1
    deleted = job.delete()
    assert deleted.job_id == job.id


_WAITER = textwrap.dedent("""
    import json, sys
    from latentsync_routes import LipSyncClient
    result = LipSyncClient(route="fal").job(sys.argv[1]).wait()
    print(json.dumps({"output": str(result.output_path), "request": result.provider_request_id}))
""")


def _child_env(home: Path, fal_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LATENTSYNC_ROUTES_", "FAL_", "REPLICATE_"))}
    env.update(
        {
            "LATENTSYNC_ROUTES_HOME": str(home),
            "LATENTSYNC_ROUTES_FAL_BASE_URL": fal_url,
            "FAL_KEY": FAL_KEY,
            "LATENTSYNC_ROUTES_POLL_INTERVAL": "0.02",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }
    )
    return env


def _waiter(job_id: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WAITER, job_id], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_two_processes_waiting_on_one_job_fetch_it_once(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    video, audio = media
    fal.hold_jobs()
    job = _client().submit(video, audio, output=tmp_path / "out.mp4")
    env = _child_env(hosted_env, fal.url)
    waiters = [_waiter(job.id[:8], env) for _ in range(2)]
    time.sleep(0.5)  # both are waiting (one polls, one waits for its claim) before the provider finishes
    fal.release_jobs()
    outputs = []
    for waiter in waiters:
        out, err = waiter.communicate(timeout=120)
        assert waiter.returncode == 0, err
        outputs.append(out)
    assert outputs[0] == outputs[1]
    assert len(fal.jobs) == 1 and len(fal.requests_for("submit")) == 1
    assert len(fal.requests_for(DOWNLOADS)) == 1, "two waits must fetch the output once"
    assert job.state == "fetched"


def test_a_wait_after_a_killed_wait_carries_the_same_provider_job_on(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, hosted_env: Path
) -> None:
    video, audio = media
    fal.hold_jobs()
    job = _client().submit(video, audio, output=tmp_path / "out.mp4")
    env = _child_env(hosted_env, fal.url)
    first = _waiter(job.id, env)
    give_up = time.monotonic() + 60
    while Journal(hosted_env / "jobs.sqlite3").owner_of(job.record.idempotency_key) is None:
        assert time.monotonic() < give_up, "the first waiter never claimed the job"
        time.sleep(0.02)
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    fal.release_jobs()
    second = _waiter(job.id, env)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 0, err
    assert job.record.provider_request_id in out
    assert len(fal.jobs) == 1 and len(fal.requests_for("submit")) == 1
    assert len(fal.requests_for(DOWNLOADS)) == 1
    assert job.state == "fetched" and (tmp_path / "out.mp4").stat().st_size > 0


def test_the_async_client_mirrors_submit_and_wait(fal: FakeFal, media: tuple[Path, Path], tmp_path: Path) -> None:
    import asyncio

    from latentsync_routes import AsyncLipSyncClient

    video, audio = media

    async def main() -> tuple[str, str, str]:
        async with AsyncLipSyncClient(route="fal", consent="test", credentials={"fal": FAL_KEY}) as client:
            job = await client.submit(video, audio, output=tmp_path / "out.mp4")
            again = await client.job(job.id[:8])
            result = await again.wait()
            return job.id, result.job_id, (await job.status()).state

    submitted, waited, state = asyncio.run(main())
    assert submitted == waited and state == "fetched"
    assert len(fal.requests_for(DOWNLOADS)) == 1
