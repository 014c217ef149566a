"""Verified provider webhooks: each scheme as its provider documents it, and ``handle_webhook`` end to end.

The signing side here uses the same helpers the fakes use; the keys and secrets are injected into the
client's cache, as a service that keeps them elsewhere would.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from latentsync_routes import LipSyncClient
from latentsync_routes.errors import (
    InvalidParameter,
    LatentSyncError,
    WebhookRejected,
    WebhookReplayed,
    WebhookSignatureInvalid,
    WebhookStale,
)
from latentsync_routes.testing import FakeFal, FakeReplicate
from latentsync_routes.webhooks.base import Cached
from latentsync_routes.webhooks.providers import verify_fal, verify_replicate, verify_wavespeed
from latentsync_routes.webhooks.signing import (
    fal_message,
    jwks_keys,
    replicate_key,
    sign_replicate,
    sign_wavespeed,
    wavespeed_key,
)
from tests.hosted_fixtures import FAL_KEY, REPLICATE_TOKEN, fal, hosted_env, media, rep  # noqa: F401 - fixtures

HOOK = "http://127.0.0.1:9/hooks/provider"
PRIVATE = Ed25519PrivateKey.generate()
PUBLIC = PRIVATE.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
REPLICATE_SECRET = "whsec_" + base64.b64encode(b"replicate-test-signing-key-32-by").decode()
WAVESPEED_SECRET = "whsec_wavespeed-test-secret"


def fal_delivery(
    request_id: str, body: bytes, *, at: float | None = None, key: Ed25519PrivateKey = PRIVATE
) -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    signature = key.sign(fal_message(request_id, "user-1", stamp, body)).hex()
    return {
        "X-Fal-Webhook-Request-Id": request_id,
        "X-Fal-Webhook-User-Id": "user-1",
        "X-Fal-Webhook-Timestamp": stamp,
        "X-Fal-Webhook-Signature": signature,
    }


def hmac_delivery(
    sign: object, key: bytes, delivery_id: str, body: bytes, *, at: float | None = None
) -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": stamp,
        "webhook-signature": sign(key, delivery_id, stamp, body),
    }  # type: ignore[operator]


def cached(value: object) -> Cached[object]:
    keys: Cached[object] = Cached(lambda: value, 60.0)
    keys.set(value)
    return keys


# -- the schemes, one provider at a time --------------------------------------------------------------------
def test_fal_scheme_accepts_its_signature_and_refuses_the_rest() -> None:
    body = json.dumps({"request_id": "req-1", "status": "OK", "payload": {}}).encode()
    now = time.time()
    delivery = verify_fal(fal_delivery("req-1", body), body, cached([PUBLIC]), now)  # type: ignore[arg-type]
    assert (delivery.request_id, delivery.state) == ("req-1", "succeeded")
    with pytest.raises(WebhookSignatureInvalid):  # tampered body
        verify_fal(fal_delivery("req-1", body), body.replace(b"OK", b"ERROR"), cached([PUBLIC]), now)  # type: ignore[arg-type]
    with pytest.raises(WebhookSignatureInvalid):  # signed by another key
        verify_fal(fal_delivery("req-1", body, key=Ed25519PrivateKey.generate()), body, cached([PUBLIC]), now)  # type: ignore[arg-type]
    with pytest.raises(WebhookStale):
        verify_fal(fal_delivery("req-1", body, at=now - 301), body, cached([PUBLIC]), now)  # type: ignore[arg-type]
    with pytest.raises(WebhookSignatureInvalid, match="X-Fal-Webhook-Signature"):
        headers = fal_delivery("req-1", body)
        del headers["X-Fal-Webhook-Signature"]
        verify_fal(headers, body, cached([PUBLIC]), now)  # type: ignore[arg-type]


def test_fal_keys_come_from_a_jwks_document() -> None:
    x = base64.urlsafe_b64encode(PUBLIC).decode().rstrip("=")
    assert jwks_keys({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x}, {"kty": "RSA", "crv": "P-256"}]}) == [PUBLIC]


def test_a_signature_no_cached_key_verifies_fetches_the_keys_again_once() -> None:
    loads: list[int] = []
    keys: Cached[list[bytes]] = Cached(lambda: loads.append(1) or [PUBLIC], 3600.0)  # type: ignore[func-returns-value]
    rotated = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    keys.set([rotated], ttl=3600.0)  # fetched earlier; fal has rotated its keys since
    body = b'{"request_id": "req-2", "status": "OK"}'
    assert verify_fal(fal_delivery("req-2", body), body, keys, time.time()).request_id == "req-2"
    assert loads == [1]


@pytest.mark.parametrize(
    ("verify", "sign", "key", "body"),
    [
        (verify_replicate, sign_replicate, replicate_key(REPLICATE_SECRET), b'{"id": "p1", "status": "succeeded"}'),
        (verify_wavespeed, sign_wavespeed, wavespeed_key(WAVESPEED_SECRET), b'{"id": "p1", "status": "completed"}'),
    ],
)
def test_hmac_schemes_accept_their_signature_and_refuse_the_rest(verify, sign, key, body) -> None:  # type: ignore[no-untyped-def]
    secret = cached(REPLICATE_SECRET if verify is verify_replicate else WAVESPEED_SECRET)
    now = time.time()
    delivery = verify(hmac_delivery(sign, key, "msg_1", body), body, secret, now)
    assert (delivery.delivery_id, delivery.request_id, delivery.state) == ("msg_1", "p1", "succeeded")
    with pytest.raises(WebhookSignatureInvalid):
        verify(hmac_delivery(sign, key, "msg_1", body), body + b" ", secret, now)
    with pytest.raises(WebhookSignatureInvalid):
        verify(hmac_delivery(sign, b"another key", "msg_1", body), body, secret, now)
    with pytest.raises(WebhookSignatureInvalid):  # the id is signed too
        headers = hmac_delivery(sign, key, "msg_1", body)
        headers["webhook-id"] = "msg_2"
        verify(headers, body, secret, now)
    with pytest.raises(WebhookStale):
        verify(hmac_delivery(sign, key, "msg_1", body, at=now + 400), body, secret, now)


def test_replicate_signature_header_may_list_several_signatures() -> None:
    key = replicate_key(REPLICATE_SECRET)
    body = b'{"id": "p9", "status": "failed"}'
    headers = hmac_delivery(sign_replicate, key, "msg_9", body)
    headers["webhook-signature"] = "v1,bm90LWl0 " + headers["webhook-signature"]
    assert verify_replicate(headers, body, cached(REPLICATE_SECRET), time.time()).state == "failed"  # type: ignore[arg-type]


# -- handle_webhook against the fakes ------------------------------------------------------------------------
def _fal_client() -> LipSyncClient:
    client = LipSyncClient(route="fal", consent="test", credentials={"fal": FAL_KEY})
    client.webhook_keys.set("fal", [PUBLIC])
    return client


def _fal_done(request_id: str) -> bytes:
    return json.dumps(
        {
            "request_id": request_id,
            "gateway_request_id": request_id,
            "status": "OK",
            "payload": {"video": {"url": "ignored: the output is fetched from fal's result"}},
        }
    ).encode()


def test_submit_passes_the_callback_field_and_refuses_a_plain_http_host(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path
) -> None:
    video, audio = media
    fal.hold_jobs()
    job = _fal_client().submit(video, audio, output=tmp_path / "out.mp4", webhook_url=HOOK)
    assert fal.jobs[job.record.provider_request_id or ""].webhook_url == HOOK
    with pytest.raises(InvalidParameter, match="webhook_url"):
        _fal_client().submit(video, audio, output=tmp_path / "b.mp4", webhook_url="http://example.com/hook")
    assert len(fal.requests_for("submit")) == 1


def test_a_job_resumed_before_its_submit_was_sent_still_calls_back_and_the_token_is_never_shown(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from latentsync_routes.job_runner import RunControls
    from latentsync_routes.testing import Fault

    video, audio = media
    hook = HOOK + "?token=s3cret-hook-token"
    client = _fal_client()
    fal.faults.cdn_upload.extend([Fault.status(403)] * 4)  # the upload is refused (both of fal-client's ways):
    fal.faults.storage_initiate.extend([Fault.status(403)] * 4)  # nothing reaches the queue
    with pytest.raises(LatentSyncError) as caught:
        client.submit(video, audio, output=tmp_path / "out.mp4", webhook_url=hook)
    job_id = caught.value.job_id or ""
    assert job_id and fal.requests_for("submit") == []
    fal.faults.cdn_upload.clear()
    fal.faults.storage_initiate.clear()
    with caplog.at_level(logging.INFO, logger="httpx"):
        client.resume(job_id)  # another call, no webhook_url given: the journal has it
    (submitted,) = fal.jobs.values()
    assert submitted.webhook_url == hook
    record = client.journal.get(job_id)
    assert record is not None and "s3cret" not in record.model_dump_json()  # the record is printed and exported
    assert "s3cret" not in caplog.text and "latentsync?<redacted>" in caplog.text  # httpx logged the submit
    assert "s3cret" not in repr(RunControls(webhook_url=hook))


def test_a_verified_delivery_fetches_once_and_a_bad_one_records_nothing(
    fal: FakeFal, media: tuple[Path, Path], tmp_path: Path
) -> None:
    video, audio = media
    fal.hold_jobs()
    client = _fal_client()
    job = client.submit(video, audio, output=tmp_path / "out.mp4", webhook_url=HOOK)
    request_id = job.record.provider_request_id or ""
    fal.release_jobs()
    body = _fal_done(request_id)
    before = job.record.model_dump_json()

    forged = fal_delivery(request_id, body, key=Ed25519PrivateKey.generate())
    stale = fal_delivery(request_id, body, at=time.time() - 3600)
    for headers, payload, error in (
        (forged, body, WebhookSignatureInvalid),
        (stale, body, WebhookStale),
        (fal_delivery(request_id, body), body[:-1] + b" }", WebhookSignatureInvalid),
    ):
        with pytest.raises(error):
            client.handle_webhook("fal", headers, payload)
    assert job.record.model_dump_json() == before, "a refused delivery records nothing"
    assert fal.requests_for("status", "result") == [] and not (tmp_path / "out.mp4").exists()

    headers = fal_delivery(request_id, body)
    handled = client.handle_webhook("fal", headers, body)
    assert handled.id == job.id and handled.state == "fetched"
    record = handled.record
    assert record.cost.actual is not None and (tmp_path / "out.mp4").stat().st_size > 0
    assert len(fal.requests_for("file_download")) == 1

    with pytest.raises(WebhookReplayed):
        client.handle_webhook("fal", headers, body)
    retried = client.handle_webhook("fal", fal_delivery(request_id, body, at=time.time() + 1), body)  # a new try
    assert retried.state == "fetched" and handled.record.model_dump_json() == record.model_dump_json()
    assert len(fal.requests_for("file_download")) == 1 and len(fal.jobs) == 1
    with pytest.raises(WebhookRejected, match="no job"):
        other = _fal_done("not-ours")
        client.handle_webhook("fal", fal_delivery("not-ours", other), other)


def test_a_delivery_racing_a_wait_fetches_once(fal: FakeFal, media: tuple[Path, Path], tmp_path: Path) -> None:
    video, audio = media
    fal.hold_jobs()
    client = _fal_client()
    job = client.submit(video, audio, output=tmp_path / "out.mp4", webhook_url=HOOK)
    request_id = job.record.provider_request_id or ""
    results = []
    waiter = threading.Thread(
        target=lambda: results.append(LipSyncClient(route="fal", credentials={"fal": FAL_KEY}).job(job.id).wait())
    )
    waiter.start()
    time.sleep(0.2)
    fal.release_jobs()
    body = _fal_done(request_id)
    client.handle_webhook("fal", fal_delivery(request_id, body), body)
    waiter.join(60)
    assert results and results[0].record.state == "fetched"
    assert len(fal.requests_for("file_download")) == 1 and job.state == "fetched"


def test_replicate_delivery_is_verified_with_its_secret_and_fetches_once(
    rep: FakeReplicate, media: tuple[Path, Path], tmp_path: Path
) -> None:
    video, audio = media
    client = LipSyncClient(route="replicate", consent="test", credentials={"replicate": REPLICATE_TOKEN})
    client.webhook_keys.set("replicate", REPLICATE_SECRET)
    job = client.submit(video, audio, output=tmp_path / "out.mp4", webhook_url=HOOK)
    prediction = rep.jobs[job.record.provider_request_id or ""]
    assert prediction.webhook == HOOK
    rep.complete(prediction.id)
    body = json.dumps({"id": prediction.id, "status": "succeeded"}).encode()
    with pytest.raises(WebhookSignatureInvalid):
        client.handle_webhook("replicate", hmac_delivery(sign_replicate, b"wrong", "msg_1", body), body)
    assert job.state == "submitted"
    headers = hmac_delivery(sign_replicate, replicate_key(REPLICATE_SECRET), "msg_1", body)
    assert client.handle_webhook("replicate", headers, body).state == "fetched"
    assert job.record.cost.actual is not None
    with pytest.raises(WebhookReplayed):
        client.handle_webhook("replicate", headers, body)


def test_the_async_client_handles_a_delivery(fal: FakeFal, media: tuple[Path, Path], tmp_path: Path) -> None:
    import asyncio

    from latentsync_routes import AsyncLipSyncClient

    video, audio = media

    async def main() -> str:
        async with AsyncLipSyncClient(route="fal", consent="test", credentials={"fal": FAL_KEY}) as client:
            client.sync.webhook_keys.set("fal", [PUBLIC])
            job = await client.submit(video, audio, output=tmp_path / "out.mp4", webhook_url=HOOK)
            request_id = job.record.provider_request_id or ""
            fal.complete(request_id)
            body = _fal_done(request_id)
            handled = await client.handle_webhook("fal", fal_delivery(request_id, body), body)
            return handled.state

    assert asyncio.run(main()) == "fetched"
    assert len(fal.requests_for("file_download")) == 1
