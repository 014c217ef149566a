"""The loopback provider fakes, driven by the real fal-client and replicate packages over real HTTP.

These tests pin the fidelity the rest of the SDK's offline tests rely on: the
payload shapes, status codes and headers each client parses; the retries each
client performs (counted on the server); and that every fault knob produces the
failure it names.
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import pytest

from latentsync_routes.pricing import estimate_replicate
from latentsync_routes.testing import (
    LATENTSYNC_VERSION_2025_01,
    LATENTSYNC_VERSION_CURRENT,
    FakeFal,
    FakeReplicate,
    Fault,
)

fal_client = pytest.importorskip("fal_client")
replicate = pytest.importorskip("replicate")
from fal_client.client import (  # noqa: E402
    Completed,
    FalClientHTTPError,
    InProgress,
    Queued,
    StorageSettings,
    SyncClient,
)
from replicate.exceptions import ModelError, ReplicateError  # noqa: E402
from replicate.helpers import FileOutput  # noqa: E402

APP = "fal-ai/latentsync"
#: FakeReplicate's default predict time for inputs it cannot decode: the price book's run-time model
#: (mid band) on its 0.4 s stand-in output, as the estimator would give
RULE_TIME = float(estimate_replicate(0.4).expected_wall_seconds or 0)


def probe(data: bytes) -> dict[str, float]:
    """Stream kinds -> duration (s) of an mp4, read with PyAV like the SDK's probe would."""
    with av.open(io.BytesIO(data)) as container:
        return {s.type: float(s.duration * s.time_base) for s in container.streams if s.duration}


@pytest.fixture
def fal() -> Iterator[FakeFal]:
    with FakeFal(expected_key="test-key") as server, server.patch_fal_client():
        yield server


@pytest.fixture
def client() -> SyncClient:
    return SyncClient(key="test-key")


@pytest.fixture
def media(tmp_path: Path) -> tuple[Path, Path]:
    video = tmp_path / "face.mp4"
    video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"v" * 4000)
    audio = tmp_path / "voice.wav"
    audio.write_bytes(b"RIFF" + b"a" * 2000)
    return video, audio


@pytest.fixture
def rep() -> Iterator[FakeReplicate]:
    with FakeReplicate(expected_token="r8_test") as server:
        yield server


@pytest.fixture
def rclient(rep: FakeReplicate) -> replicate.Client:
    c = replicate.Client(api_token="r8_test", base_url=rep.url)
    c.poll_interval = 0.01
    return c


# ----------------------------------------------------------------------------- fal


def test_fal_upload_submit_status_result_and_billing(fal: FakeFal, client: SyncClient, media: tuple) -> None:
    video, audio = media
    video_url = client.upload_file(video, lifecycle=StorageSettings(expires_in="1d"))
    audio_url = client.upload_file(audio)
    assert video_url.startswith(fal.cdn_url + "/files/") and video_url.endswith("_face.mp4")
    assert httpx.get(video_url).content == video.read_bytes()

    handle = client.submit(
        APP,
        {"video_url": video_url, "audio_url": audio_url, "guidance_scale": 1.5},
        webhook_url="https://hook.example/x",
        priority="low",
        hint="h1",
    )
    assert handle.status_url == f"{fal.queue_url}{APP}/requests/{handle.request_id}/status"
    events = list(handle.iter_events(with_logs=True, interval=0.01))
    assert [type(e) for e in events] == [Queued, InProgress, Completed]
    assert events[0].position == 0
    assert events[1].logs and events[1].logs[0]["level"] == "INFO"
    assert events[2].metrics == {"inference_time": 2.5} and events[2].error is None
    assert [r.status for r in fal.requests_for("status")] == [202, 202, 200]
    assert fal.requests_for("status")[0].param("logs") == "true"
    assert isinstance(client.status(APP, handle.request_id), Completed)  # by id: logs=false
    assert client.status(APP, handle.request_id).logs is None

    response = handle.client.get(handle.response_url)  # the only way to see billing headers
    assert response.headers["x-fal-billable-units"] == "40"  # the rule's minimum (these inputs don't decode)
    assert response.headers["x-fal-request-id"] == handle.request_id
    out = response.json()["video"]
    assert out["content_type"] == "video/mp4" and out["file_name"] == "output.mp4"
    data = httpx.get(out["url"]).content
    assert len(data) == out["file_size"] and set(probe(data)) == {"video", "audio"}

    (job,) = fal.jobs.values()
    assert job.arguments["guidance_scale"] == 1.5 and job.webhook_url == "https://hook.example/x"
    assert job.headers["X-Fal-Queue-Priority"] == "low" and job.headers["X-Fal-Runner-Hint"] == "h1"
    submit = fal.requests_for("submit")[0]
    assert submit.headers["authorization"] == "Key test-key" and "test-key" not in repr(submit)
    assert submit.json()["video_url"] == video_url
    upload = fal.requests_for("cdn_upload")[0]
    assert upload.headers["Authorization"].startswith("Bearer fake-cdn-")
    assert upload.headers["X-Fal-File-Name"] == "face.mp4" and upload.body_size == video.stat().st_size
    assert [u.name for u in fal.uploads] == ["face.mp4", "voice.wav"]
    assert fal.uploads[0].lifecycle == {"expiration_duration_seconds": 86400}
    assert len(fal.requests_for("cdn_token")) == 1  # token cached by the client


def test_fal_subscribe_run_and_result_from_uploaded_input(client: SyncClient, media: tuple) -> None:
    video, audio = media
    with (
        FakeFal(result_video=lambda job: job.input_bytes("video_url") or b"", queue_polls=2) as fal,
        fal.patch_fal_client(),
    ):
        args = {"video_url": client.upload_file(video), "audio_url": fal_client.encode_file(audio)}
        updates: list[object] = []
        result = client.subscribe(APP, args, interval=0.01, on_queue_update=updates.append)
        assert [type(u).__name__ for u in updates] == ["Queued", "Queued", "InProgress", "Completed"]
        assert [u.position for u in updates[:2]] == [1, 0]
        assert httpx.get(result["video"]["url"]).content == video.read_bytes()
        assert "video" in client.run(APP, args)  # sync fal.run endpoint: finished in one call
        assert len(fal.jobs) == 2 and len(fal.requests_for("run")) == 1


def test_fal_cancel_outcomes(fal: FakeFal, client: SyncClient) -> None:
    handle = client.submit(APP, {"video_url": "data:,v", "audio_url": "data:,a"})
    client.cancel(APP, handle.request_id)
    status = handle.status()
    assert isinstance(status, Completed) and status.error_type == "client_cancelled"
    with pytest.raises(FalClientHTTPError) as already:
        handle.cancel()
    assert already.value.status_code == 400
    with pytest.raises(FalClientHTTPError) as missing:
        client.cancel(APP, "00000000-0000-0000-0000-000000000000")
    assert missing.value.status_code == 404
    assert [c.outcome for c in fal.cancellations] == ["CANCELLATION_REQUESTED", "ALREADY_COMPLETED", "NOT_FOUND"]
    with pytest.raises(FalClientHTTPError) as result:
        handle.get()
    assert result.value.status_code == 499


def test_fal_validation_422_from_runner_and_injected(fal: FakeFal, client: SyncClient) -> None:
    with pytest.raises(FalClientHTTPError) as bad:
        client.subscribe(APP, {"video_url": "data:,v", "audio_url": "data:,a", "guidance_scale": 5}, interval=0.01)
    assert bad.value.status_code == 422
    (err,) = bad.value.message
    assert err["loc"] == ["body", "guidance_scale"] and err["type"] == "less_than_equal"
    assert "x-fal-billable-units" not in bad.value.response_headers

    missing_upload = f"{fal.cdn_url}/files/koala/nope_face.mp4"
    with pytest.raises(FalClientHTTPError) as fetch:
        client.subscribe(APP, {"video_url": missing_upload, "audio_url": "data:,a"}, interval=0.01)
    assert fetch.value.message[0]["type"] == "file_download_error"

    detail = [{"loc": ["body", "video_url"], "msg": "Field required", "type": "missing"}]
    fal.faults.submit.append(Fault.status(422, json={"detail": detail}))
    with pytest.raises(FalClientHTTPError) as injected:
        client.submit(APP, {})
    assert injected.value.status_code == 422 and injected.value.message == detail
    assert len(fal.jobs) == 2 and len(fal.requests_for("submit")) == 3  # 422 is not retried


def test_fal_retries_429_and_ingress_503_but_not_fal_503(fal: FakeFal, client: SyncClient) -> None:
    fal.faults.submit.extend([Fault.status(429, retry_after=0), Fault.nginx_503()])
    handle = client.submit(APP, {"video_url": "data:,v", "audio_url": "data:,a"})
    assert [r.status for r in fal.requests_for("submit")] == [429, 503, 200]
    assert len(fal.jobs) == 1

    fal.faults.status.append(Fault.status(503, json={"detail": "runner gone", "error_type": "runner_disconnected"}))
    with pytest.raises(FalClientHTTPError) as exc:
        handle.status()
    assert exc.value.status_code == 503 and exc.value.error_type == "runner_disconnected"
    assert exc.value.response_headers["x-fal-request-id"] == handle.request_id
    assert len(fal.requests_for("status")) == 1  # carries x-fal-request-id -> not retried


def test_fal_drop_after_accept_creates_a_job_the_client_never_sees(fal: FakeFal, client: SyncClient) -> None:
    fal.faults.submit.append(Fault.drop_after_accept())
    handle = client.submit(APP, {"video_url": "data:,v", "audio_url": "data:,a"})
    first, second = fal.requests_for("submit")
    assert first.status is None and first.fault == "drop_after_accept" and second.status == 200
    assert len(fal.jobs) == 2  # the dropped attempt created a (billable) job; the retry another
    orphan = next(rid for rid in fal.jobs if rid != handle.request_id)
    assert fal.jobs[orphan].arguments == fal.jobs[handle.request_id].arguments


def test_fal_auth_fail_job_and_delay(fal: FakeFal, client: SyncClient) -> None:
    with pytest.raises(FalClientHTTPError) as denied:
        SyncClient(key="wrong").submit(APP, {})
    assert denied.value.status_code == 401 and not fal.jobs

    fal.fail_job(status_code=500, detail="CUDA out of memory")
    handle = client.submit(APP, {"video_url": "data:,v", "audio_url": "data:,a"})
    done = list(handle.iter_events(interval=0.01))[-1]
    assert isinstance(done, Completed) and done.error == "CUDA out of memory"
    response = handle.client.get(handle.response_url)
    assert response.status_code == 500 and response.headers["x-fal-error-type"] == "runner_server_error"
    assert "x-fal-billable-units" not in response.headers

    fal.faults.status.append(Fault.delay(2))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        handle.client.get(handle.status_url, timeout=0.2)
    assert time.monotonic() - started < 1.5


def test_fal_upload_faults_retry_and_fallback(fal: FakeFal, client: SyncClient, media: tuple) -> None:
    video, _ = media
    fal.faults.cdn_upload.append(Fault.reset_during_upload(after_bytes=100))
    url = client.upload_file(video)
    assert [r.fault for r in fal.requests_for("cdn_upload")] == ["reset_during_upload(100)", None]
    assert len(fal.uploads) == 1 and httpx.get(url).content == video.read_bytes()

    fal.faults.cdn_upload.append(Fault.status(500))  # not retried -> client falls back to "fal" storage
    url = client.upload(b"fallback bytes", "text/plain", "note.txt")
    assert fal.uploads[-1].origin == "storage" and httpx.get(url).content == b"fallback bytes"
    assert len(fal.requests_for("storage_initiate")) == 1 and len(fal.requests_for("storage_put")) == 1


def test_fal_multipart_upload(fal: FakeFal, client: SyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fal_client.client.MULTIPART_THRESHOLD", 1024)  # real: 100 MiB
    monkeypatch.setattr("fal_client.client.MULTIPART_CHUNK_SIZE", 1000)  # real: 10 MiB
    data = bytes(range(256)) * 14  # 3584 bytes -> 4 parts
    url = client.upload(data, "application/octet-stream", "big.bin")
    assert len(fal.requests_for("multipart_part")) == 4 and len(fal.requests_for("multipart_complete")) == 1
    assert fal.uploads[-1].origin == "multipart" and httpx.get(url).content == data


def test_fal_download_truncation_and_range(fal: FakeFal, client: SyncClient) -> None:
    url = client.upload(b"0123456789" * 50, "application/octet-stream", "blob.bin")
    fal.faults.file_download.append(Fault.truncate(100))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url)
    resumed = httpx.get(url, headers={"Range": "bytes=100-"})
    assert resumed.status_code == 206 and resumed.headers["content-range"] == "bytes 100-499/500"
    assert resumed.content == (b"0123456789" * 50)[100:]


def test_unknown_path_fails_loudly_and_patch_restores() -> None:
    import fal_client.client as module

    before = {name: getattr(module, name) for name in ("QUEUE_URL_FORMAT", "REST_URL", "CDN_URL")}
    with pytest.raises(AssertionError, match="unexpected traffic"):
        with FakeFal() as fal, fal.patch_fal_client():
            assert module.QUEUE_URL_FORMAT == fal.queue_url
            response = httpx.get(f"{fal.queue_url}{APP}/v2/requests/x/status")  # subpath in a status URL
            assert response.status_code == 404 and "no such endpoint" in response.json()["detail"]
            assert len(fal.unexpected_requests) == 1
    assert {name: getattr(module, name) for name in before} == before


def test_importing_testing_does_not_import_provider_clients() -> None:
    code = (
        "import sys, latentsync_routes.testing; "
        "print(sorted(m for m in ('fal_client', 'replicate', 'av') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ----------------------------------------------------------------------------- replicate


def test_replicate_files_create_wait_and_output(rep: FakeReplicate, rclient: replicate.Client, media: tuple) -> None:
    video, audio = media
    vfile = rclient.files.create(video, metadata={"role": "face"})
    afile = rclient.files.create(audio)
    assert vfile.urls["get"] == f"{rep.url}/v1/files/{vfile.id}" and vfile.size == video.stat().st_size
    assert rclient.files.get(vfile.id).metadata == {"role": "face"}
    assert [u.name for u in rep.uploads] == ["face.mp4", "voice.wav"]

    prediction = rclient.predictions.create(
        version=LATENTSYNC_VERSION_CURRENT,
        input={"video": vfile.urls["get"], "audio": afile.urls["get"], "guidance_scale": 1.5, "seed": 7},
    )
    assert prediction.status == "starting" and prediction.model == "bytedance/latentsync"
    assert rep.requests_for("create")[0].status == 201
    prediction.wait()
    assert prediction.status == "succeeded" and prediction.metrics["predict_time"] == pytest.approx(RULE_TIME)
    assert prediction.logs.startswith("Using seed: 7\n")
    assert isinstance(prediction.output, str)  # http:// outputs stay str in replicate 1.0.7
    data = httpx.get(prediction.output).content
    assert set(probe(data)) == {"video", "audio"}
    assert all(r.headers["Authorization"] == "Bearer r8_test" for r in rep.requests_for("create", "get"))
    assert rclient.files.delete(afile.id) is True
    with pytest.raises(ReplicateError) as gone:
        rclient.files.get(afile.id)
    assert gone.value.status == 404


def test_replicate_prefer_wait_and_run(rclient: replicate.Client) -> None:
    with FakeReplicate(expected_token="r8_test", default_wait_s=0.2) as rep:
        c = replicate.Client(api_token="r8_test", base_url=rep.url)
        c.poll_interval = 0.01
        started = time.monotonic()
        p = c.predictions.create(
            version=LATENTSYNC_VERSION_CURRENT, input={"video": "data:,v", "audio": "data:,a"}, wait=True
        )
        assert p.status == "starting" and time.monotonic() - started >= 0.2  # never "processing"
        assert rep.requests_for("create")[0].headers["Prefer"] == "wait"
        out = c.run(
            f"bytedance/latentsync:{LATENTSYNC_VERSION_2025_01}",
            input={"video": "data:,v", "audio": "data:,a", "guidance_scale": 8},
        )
        assert isinstance(out, str) and out.endswith("/video_out.mp4")
        assert len(rep.requests_for("version")) == 1  # run() fetches the pinned version

    with FakeReplicate(complete_within_wait=True, output_url_style="data") as rep:
        c = replicate.Client(api_token="any", base_url=rep.url)
        out = c.run(
            f"bytedance/latentsync:{LATENTSYNC_VERSION_CURRENT}", input={"video": "data:,v", "audio": "data:,a"}
        )
        assert isinstance(out, FileOutput) and set(probe(out.read())) == {"video", "audio"}
        assert not rep.requests_for("get")  # finished inside the Prefer: wait window


def test_replicate_failed_and_canceled_predictions_carry_predict_time(
    rep: FakeReplicate, rclient: replicate.Client
) -> None:
    rep.fail_job(error="CUDA out of memory")
    with pytest.raises(ModelError) as failed:
        rclient.run(
            f"bytedance/latentsync:{LATENTSYNC_VERSION_CURRENT}", input={"video": "data:,v", "audio": "data:,a"}
        )
    assert str(failed.value) == "CUDA out of memory"
    assert failed.value.prediction.metrics["predict_time"] == pytest.approx(RULE_TIME)

    p = rclient.predictions.create(version=LATENTSYNC_VERSION_CURRENT, input={"video": "data:,v", "audio": "data:,a"})
    p.reload()
    assert p.status == "processing"
    canceled = rclient.predictions.cancel(p.id)
    assert canceled.status == "canceled" and canceled.metrics["predict_time"] > 0
    assert len(rep.predictions) == 2


def test_replicate_429_retried_on_get_only(rep: FakeReplicate, rclient: replicate.Client) -> None:
    p = rclient.predictions.create(version=LATENTSYNC_VERSION_CURRENT, input={"video": "data:,v", "audio": "data:,a"})
    rep.faults.get.extend([Fault.status(429, retry_after=0)] * 2)
    assert rclient.predictions.get(p.id).id == p.id
    assert [r.status for r in rep.requests_for("get")] == [429, 429, 200]

    rep.faults.create.append(Fault.status(429, retry_after=0))
    with pytest.raises(ReplicateError) as throttled:
        rclient.predictions.create(version=LATENTSYNC_VERSION_CURRENT, input={"video": "data:,v"})
    assert throttled.value.status == 429 and "throttled" in (throttled.value.detail or "")
    assert len(rep.requests_for("create")) == 2 and len(rep.predictions) == 1


def test_replicate_versions_models_and_model_create_404(rep: FakeReplicate, rclient: replicate.Client) -> None:
    model = rclient.models.get("bytedance/latentsync")
    assert model.latest_version is not None and model.latest_version.id == LATENTSYNC_VERSION_CURRENT
    old = model.versions.get(LATENTSYNC_VERSION_2025_01).openapi_schema["components"]["schemas"]["Input"]
    assert {"minimum": 0, "maximum": 10, "default": 1}.items() <= old["properties"]["guidance_scale"].items()
    assert "inference_steps" not in old["properties"]
    new = rclient.models.get("bytedance/latentsync").versions.get(LATENTSYNC_VERSION_CURRENT)
    props = new.openapi_schema["components"]["schemas"]["Input"]["properties"]
    assert props["guidance_scale"]["maximum"] == 3 and props["inference_steps"]["default"] == 20

    with pytest.raises(ReplicateError) as community:
        rclient.models.predictions.create(model="bytedance/latentsync", input={"video": "data:,v"})
    assert community.value.status == 404
    with pytest.raises(ReplicateError):
        rclient.run("bytedance/latentsync", input={"video": "data:,v"})
    assert not rep.predictions


def test_replicate_validation_auth_and_ambiguous_create(rep: FakeReplicate, rclient: replicate.Client) -> None:
    with pytest.raises(ReplicateError) as invalid:
        rclient.predictions.create(version=LATENTSYNC_VERSION_CURRENT, input={"video": "data:,v", "guidance_scale": 5})
    assert invalid.value.status == 422 and "input.guidance_scale" in (invalid.value.detail or "")
    body = rep.requests_for("create")[0]
    assert body.json()["input"]["guidance_scale"] == 5
    with pytest.raises(ReplicateError) as unknown:
        rclient.predictions.create(version="0" * 64, input={})
    assert unknown.value.status == 422 and "version does not exist" in (unknown.value.detail or "")

    with pytest.raises(ReplicateError) as denied:
        replicate.Client(api_token="r8_wrong", base_url=rep.url).predictions.list()
    assert denied.value.status == 401 and denied.value.title == "Unauthenticated"

    rep.faults.create.append(Fault.drop_after_accept())
    with pytest.raises(httpx.RemoteProtocolError):  # POST is not retried by replicate
        rclient.predictions.create(version=LATENTSYNC_VERSION_CURRENT, input={"video": "data:,v", "audio": "data:,a"})
    (listed,) = rclient.predictions.list().results  # the job exists; the client can find it
    assert listed.input == {"video": "data:,v", "audio": "data:,a"} and len(rep.predictions) == 1


def test_fal_pricing_and_delete_payloads_follow_fals_platform_api(fal: FakeFal, client: SyncClient) -> None:
    headers = {"Authorization": "Key test-key"}
    prices = httpx.get(
        f"{fal.url}/v1/models/pricing", params={"endpoint_id": f"{APP},fal-ai/other"}, headers=headers
    ).json()
    assert prices == {
        "prices": [{"endpoint_id": APP, "unit_price": 0.005, "unit": "second", "currency": "USD"}],
        "next_cursor": None,
        "has_more": False,
    }
    assert httpx.get(f"{fal.url}/v1/models/pricing", headers=headers).status_code == 422
    assert httpx.get(f"{fal.url}/v1/models/pricing", params={"endpoint_id": APP}).status_code == 401
    handle = client.submit(APP, {"video_url": "data:video/mp4;base64,AAAA", "audio_url": "data:audio/wav;base64,AA"})
    fal.validate_inputs = False
    output = fal.complete(handle.request_id).output
    assert output is not None
    gone = httpx.delete(f"{fal.url}/v1/models/requests/{handle.request_id}/payloads", headers=headers)
    assert gone.json() == {"cdn_delete_results": [{"link": output.url, "exception": None}]}
    assert httpx.get(output.url).status_code == 404  # the output file is deleted with the payloads
    again = httpx.delete(f"{fal.url}/v1/models/requests/{handle.request_id}/payloads", headers=headers)
    assert again.json() == {"cdn_delete_results": []}
    assert httpx.delete(f"{fal.url}/v1/models/requests/nope/payloads", headers=headers).status_code == 404
    assert [(d.request_id, d.status_code) for d in fal.payload_deletions] == [
        (handle.request_id, 200),
        (handle.request_id, 200),
        ("nope", 404),
    ]


def test_the_demo_says_its_output_is_not_lip_synced_and_it_follows_the_audio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    from latentsync_routes.cli import app
    from latentsync_routes.media import output_duration

    monkeypatch.setenv("LATENTSYNC_ROUTES_HOME", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    done = CliRunner().invoke(app, ["demo", "--keep", "--json"])  # kept: the test reads its output
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["lip_synced"] is False and "NOT lip-synced" in summary["note"]
    seconds = probe(Path(summary["result"]["output_path"]).read_bytes())
    assert seconds["video"] == pytest.approx(output_duration(3.0), abs=0.05)  # the demo's 3 s voice, not 2 s
    assert summary["result"]["cost"]["actual"] == pytest.approx(summary["estimate"]["amount"])
    human = CliRunner().invoke(app, ["demo"])
    assert human.exit_code == 0 and "NOT lip-synced" in human.stdout
