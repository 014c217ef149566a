"""The fakes deliver signed webhooks as the fact sheets say, retrying a failed delivery, and a receiver built
on ``handle_webhook`` (keys and secrets fetched from the fake, not injected) fetches each output once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from latentsync_routes import LipSyncClient
from latentsync_routes.errors import LatentSyncError, WebhookReplayed
from latentsync_routes.testing import FakeWaveSpeed
from tests.hosted_fixtures import FAL_KEY, REPLICATE_TOKEN, fal, hosted_env, media, rep  # noqa: F401 - fixtures

WAVESPEED_KEY = "ws-test-key"


class Receiver:
    """A loopback callback: answers 500 to the first ``fail_first`` deliveries, then hands each to the client."""

    def __init__(self, client: LipSyncClient, route: str, fail_first: int = 1) -> None:
        self.client, self.route, self.fail_first = client, route, fail_first
        self.answers: list[tuple[int, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, why = receiver.handle(dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.answers.append((status, why))

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{route}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, str]:
        if self.fail_first > 0:
            self.fail_first -= 1
            return 500, "failing on purpose"
        try:
            return 200, self.client.handle_webhook(self.route, headers, body).state
        except WebhookReplayed:
            return 200, "replayed"
        except LatentSyncError as exc:
            return 400, f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def wavespeed(hosted_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeWaveSpeed]:
    with FakeWaveSpeed(expected_key=WAVESPEED_KEY) as server:
        monkeypatch.setenv("LATENTSYNC_ROUTES_WAVESPEED_BASE_URL", server.url)
        yield server


@pytest.mark.parametrize("route", ["fal", "replicate", "wavespeed"])
def test_the_fake_delivers_signed_and_retries_and_the_output_is_fetched_once(
    route: str, request: pytest.FixtureRequest, media: tuple[Path, Path], tmp_path: Path
) -> None:
    fake = request.getfixturevalue({"fal": "fal", "replicate": "rep", "wavespeed": "wavespeed"}[route])
    key = {"fal": FAL_KEY, "replicate": REPLICATE_TOKEN, "wavespeed": WAVESPEED_KEY}[route]
    client = LipSyncClient(route=route, consent="test", credentials={route: key})
    receiver = Receiver(client, route, fail_first=1)
    try:
        video, audio = media
        job = client.submit(video, audio, output=tmp_path / "out.mp4", webhook_url=receiver.url)
        fake.complete(job.record.provider_request_id)
        fake.wait_for_webhooks(60)
    finally:
        receiver.close()
    statuses = [a.status for a in fake.webhook_attempts]
    assert statuses == [500, 200], (statuses, receiver.answers)
    assert len({a.delivery_id for a in fake.webhook_attempts}) == 1, "a retry is the same delivery"
    assert receiver.answers[-1] == (200, "fetched")
    assert job.state == "fetched" and job.record.cost.actual is not None
    assert (tmp_path / "out.mp4").stat().st_size > 0
    assert len(fake.jobs) == 1
    assert len(fake.requests_for("webhook_keys")) == 1, "the keys are fetched once and cached"
    downloads = (
        [r for r in fake.requests if r.method == "GET" and r.path.endswith(".mp4")]
        if route != "fal"
        else fake.requests_for("file_download")
    )
    assert len(downloads) == 1


@pytest.mark.parametrize(("route", "ended"), [("fal", "ERROR"), ("replicate", "canceled")])
def test_fact_webhook_on_cancel_fal_and_replicate_deliver_a_cancel_that_changes_nothing(
    route: str, ended: str, request: pytest.FixtureRequest, media: tuple[Path, Path], tmp_path: Path
) -> None:
    """Replicate: ``completed`` events include canceled (documented). fal: a cancelled request has ended,
    so it is delivered as ERROR (our reading: fal's webhook page is silent on cancels; facts.py)."""
    import json

    fake = request.getfixturevalue({"fal": "fal", "replicate": "rep"}[route])
    key = {"fal": FAL_KEY, "replicate": REPLICATE_TOKEN}[route]
    client = LipSyncClient(route=route, consent="test", credentials={route: key})
    receiver = Receiver(client, route, fail_first=0)
    try:
        fake.hold_jobs()
        video, audio = media
        job = client.submit(video, audio, output=tmp_path / "out.mp4", webhook_url=receiver.url)
        job.cancel()
        before = client.journal.get(job.id)
        fake.wait_for_webhooks(60)
    finally:
        receiver.close()
    (attempt,) = fake.webhook_attempts
    assert attempt.status == 200 and json.loads(attempt.body)["status"] == ended
    assert receiver.answers == [(200, "cancelled")]
    after = client.journal.get(job.id)
    assert before is not None and after is not None and before.state == after.state == "cancelled"
    assert after.cost == before.cost and not (tmp_path / "out.mp4").exists()
