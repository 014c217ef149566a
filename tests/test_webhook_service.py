"""examples/webhook_service.py against FakeFal: jobs submitted over HTTP, the fake's signed deliveries handled
by the service, each output fetched once; and (slow) 50 jobs with the service killed and restarted half-way."""

from __future__ import annotations

import base64
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from latentsync_routes import LipSyncClient
from latentsync_routes.testing import FakeFal
from tests.hosted_fixtures import FAL_KEY, fal, hosted_env, media  # noqa: F401 - fixtures

uvicorn = pytest.importorskip("uvicorn")
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "webhook_service.py"


def _load_example() -> Any:
    spec = importlib.util.spec_from_file_location("webhook_service", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def service(fal: FakeFal, tmp_path: Path) -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    client = LipSyncClient(route="fal", consent="test", credentials={"fal": FAL_KEY})
    app = _load_example().create_app(client, public_url=url, outputs=tmp_path / "outputs")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield url
    server.should_exit = True
    thread.join(10)


def test_the_service_submits_hears_back_and_fetches_each_output_once(
    fal: FakeFal, service: str, media: tuple[Path, Path]
) -> None:
    video, audio = (base64.b64encode(p.read_bytes()).decode() for p in media)
    fal.hold_jobs()
    jobs = []
    for n in range(3):
        answer = httpx.post(
            f"{service}/jobs",
            json={
                "video": {"base64": video, "name": "clip.mp4"},
                "audio": {"base64": audio, "name": "voice.wav"},
                "idempotency_key": f"service-test-{n}",
            },
            timeout=60,
        )
        assert answer.status_code == 202, answer.text
        assert answer.json()["state"] == "submitted" and answer.json()["estimate"] > 0
        jobs.append(answer.json()["job_id"])
    assert httpx.post(f"{service}/jobs", json={"video": "/etc/passwd", "audio": "x"}).status_code == 400
    forged = httpx.post(
        f"{service}/hooks/fal",
        content=b'{"request_id": "x", "status": "OK"}',
        headers={"X-Fal-Webhook-Request-Id": "x"},
    )
    assert forged.status_code == 400
    fal.release_jobs()
    fal.wait_for_webhooks(120)
    for job_id in jobs:
        shown = httpx.get(f"{service}/jobs/{job_id[:8]}", timeout=30).json()
        assert shown["state"] == "fetched" and shown["cost"]["actual"] is not None, shown
    assert len(fal.jobs) == 3 and len(fal.requests_for("file_download")) == 3
    assert all(a.status == 200 for a in fal.webhook_attempts)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_service(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", "--factory", "webhook_service:create_app", "--app-dir",
               str(EXAMPLE.parent), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(command, env=env)
    give_up = time.monotonic() + 60
    while time.monotonic() < give_up:
        try:
            httpx.get(f"http://127.0.0.1:{port}/jobs/none-such", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise AssertionError("the service did not start")


@pytest.mark.slow
def test_fifty_jobs_with_the_service_killed_and_restarted_half_way(
    fal: FakeFal, media: tuple[Path, Path], hosted_env: Path, tmp_path: Path
) -> None:
    fal.webhook_retry_delays = (2.0,) * 10  # fal: 10 retries over 2 hours; here 20 s, longer than the outage
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LATENTSYNC_ROUTES_", "FAL_", "REPLICATE_"))}
    env.update({"LATENTSYNC_ROUTES_HOME": str(hosted_env), "LATENTSYNC_ROUTES_FAL_BASE_URL": fal.url,
                "FAL_KEY": FAL_KEY, "LATENTSYNC_ROUTES_ROUTE": "fal", "PUBLIC_URL": f"http://127.0.0.1:{port}",
                "LATENTSYNC_ROUTES_POLL_INTERVAL": "0.02", "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
                "LATENTSYNC_ROUTES_POLICY__FACE_CHECK": "false", "LATENTSYNC_ROUTES_POLICY__DEADLINE_CHECK": "false",
                "PYTHONPATH": str(EXAMPLE.parents[1])})  # fmt: skip
    video, audio = (base64.b64encode(p.read_bytes()).decode() for p in media)
    fal.hold_jobs()
    service = _start_service(port, env)
    try:
        jobs = []
        for n in range(50):
            answer = httpx.post(f"http://127.0.0.1:{port}/jobs", timeout=120, json={
                "video": {"base64": video, "name": "clip.mp4"}, "audio": {"base64": audio, "name": "voice.wav"},
                "idempotency_key": f"fifty-{n}", "consent": "test"})  # fmt: skip
            assert answer.status_code == 202, answer.text
            jobs.append(answer.json()["job_id"])
        requests = [fal.jobs[LipSyncClient(credentials={"fal": FAL_KEY}).job(j).record.provider_request_id or ""]
                    for j in jobs]  # fmt: skip
        for job in requests[:25]:
            fal.complete(job.request_id)
        time.sleep(0.5)  # some deliveries are being handled when the service is killed
        service.send_signal(signal.SIGKILL)
        service.wait(30)
        for job in requests[25:30]:
            fal.complete(job.request_id)  # delivered while the service is down: refused, retried
        service = _start_service(port, env)  # the retries reach this one
        for job in requests[30:]:
            fal.complete(job.request_id)
        fal.wait_for_webhooks(300)
        for job_id in jobs:
            shown = httpx.get(f"http://127.0.0.1:{port}/jobs/{job_id}", timeout=60).json()
            assert shown["state"] == "fetched" and shown["cost"]["actual"] is not None, shown
    finally:
        service.kill()
        service.wait(30)
    assert len(fal.jobs) == 50, "one provider job per submitted job"
    downloads = [r.path for r in fal.requests_for("file_download")]
    assert len(set(downloads)) == 50, "every output fetched"
    cut_off = [a for a in fal.webhook_attempts if a.status is None]  # refused or cut off by the kill
    # a transfer cut off by the kill is fetched again from the start; no other output is fetched twice
    assert len(downloads) - 50 <= len(cut_off), (len(downloads), len(cut_off))
    ended = {a.delivery_id for a in fal.webhook_attempts if a.status == 200}
    assert len(ended) == 50, "every delivery was answered 2xx in the end"
    assert any(a.status != 200 for a in fal.webhook_attempts), "some deliveries hit the killed service"
