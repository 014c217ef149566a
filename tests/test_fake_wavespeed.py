"""``FakeWaveSpeed`` driven by the unmodified official ``wavespeed`` SDK and by raw httpx, over real HTTP.

These pin what a WaveSpeed route will rely on: the envelope and statuses the SDK parses, the two upload
flows, what the SDK retries (result GETs) and what it never re-sends (the submit POST), what a failed
task looks like, and that every prediction the fake creates is counted as a billed job.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import pytest

from latentsync_routes.media import output_duration
from latentsync_routes.testing import FakeWaveSpeed, Fault, write_test_audio, write_test_video

wavespeed = pytest.importorskip("wavespeed")

KEY = "ws-test-key"
MODEL = "bytedance/latentsync"
AUTH = {"Authorization": f"Bearer {KEY}"}


def probe(data: bytes) -> dict[str, float]:
    """Stream kinds -> duration (s) of an mp4."""
    with av.open(io.BytesIO(data)) as container:
        return {s.type: float(s.duration * s.time_base) for s in container.streams if s.duration}


@pytest.fixture
def ws() -> Iterator[FakeWaveSpeed]:
    with FakeWaveSpeed(expected_key=KEY) as server:
        yield server


@pytest.fixture
def media(tmp_path: Path) -> tuple[Path, Path]:
    return write_test_video(tmp_path / "face.mp4", 1.0), write_test_audio(tmp_path / "voice.wav", 6.2)


def test_sdk_upload_submit_poll_result_download(ws: FakeWaveSpeed, media: tuple[Path, Path]) -> None:
    video, audio = media
    client = ws.client()
    video_url, audio_url = client.upload(str(video)), client.upload(str(audio))
    assert {f.name for f in ws.uploads} == {"face.mp4", "voice.wav"}
    assert ws.store.by_url(video_url).read_bytes() == video.read_bytes()  # type: ignore[union-attr]

    output = client.run(MODEL, {"video": video_url, "audio": audio_url}, poll_interval=0.01)

    (prediction,) = ws.jobs.values()
    assert prediction.status == "completed" and output == {"outputs": prediction.outputs}
    assert [r.endpoint for r in ws.requests] == [
        "upload_ticket",
        "upload_put",
        "upload_ticket",
        "upload_put",
        "submit",
        "result",
        "result",
        "result",
    ]
    puts = ws.requests_for("upload_put")
    assert all("Authorization" not in r.headers and r.headers["Content-Type"] for r in puts)
    assert ws.requests_for("submit")[0].headers["X-Client-Name"] == "wavespeed-python"
    # the output follows the inputs as LatentSync's does: as long as the audio, carrying it
    data = httpx.get(output["outputs"][0]).content
    durations = probe(data)
    assert durations["video"] == pytest.approx(output_duration(6.2), abs=0.05)
    assert durations["audio"] == pytest.approx(output_duration(6.2), abs=0.1)
    assert prediction.audio_seconds == pytest.approx(6.2) and prediction.cost_usd == pytest.approx(0.30)
    assert client.get_result(prediction.id)["data"]["timings"] == {"inference": ws.inference_ms}


def test_raw_binary_upload_statuses_list_and_delete(ws: FakeWaveSpeed, media: tuple[Path, Path]) -> None:
    video, audio = media
    with httpx.Client(base_url=ws.url, headers=AUTH) as http:
        urls = []
        for path, ctype in ((video, "video/mp4"), (audio, "audio/wav")):
            reply = http.post("/api/v3/media/upload/binary", files={"file": (path.name, path.read_bytes(), ctype)})
            assert reply.json()["code"] == 200 and reply.json()["data"]["type"] == ctype.split("/")[0]
            urls.append(reply.json()["data"]["download_url"])
        created = http.post(f"/api/v3/{MODEL}", json={"video": urls[0], "audio": urls[1]}).json()
        assert created["code"] == 200 and created["message"] == "success"
        pid, status = created["data"]["id"], created["data"]["status"]
        assert status == "created" and created["data"]["urls"]["get"] == f"{ws.url}/api/v3/predictions/{pid}/result"
        seen = [http.get(f"/api/v3/predictions/{pid}").json()["data"]["status"] for _ in range(3)]
        assert seen == ["created", "processing", "completed"]

        listed = http.post("/api/v3/predictions", json={"page": 1, "page_size": 10, "model": MODEL}).json()["data"]
        assert listed["total"] == 1 and listed["items"][0]["id"] == pid and "input" not in listed["items"][0]
        assert http.get("/api/v3/predictions", params={"status": "failed"}).json()["data"]["items"] == []

        assert http.post("/api/v3/predictions/delete", json={"ids": [pid]}).json()["data"] == {"deleted_count": 1}
        assert http.get(f"/api/v3/predictions/{pid}/result").json()["data"]["status"] == "deleted"
        assert http.post("/api/v3/predictions", json={"page": 1, "page_size": 10}).json()["data"]["total"] == 0
    assert len(ws.jobs) == 1


def test_auth_validation_and_unknown_model_create_nothing(ws: FakeWaveSpeed) -> None:
    with pytest.raises(RuntimeError, match="HTTP 401"):
        ws.client(api_key="wrong").run(MODEL, {"video": "https://x/v.mp4", "audio": "https://x/a.wav"})
    refused = httpx.post(f"{ws.url}/api/v3/{MODEL}", json={})
    assert refused.status_code == 401 and refused.json() == {
        "code": 401,
        "message": "Unauthorized: invalid or missing API key",
        "data": None,
    }
    with pytest.raises(RuntimeError, match="HTTP 400.*audio is required"):
        ws.client().run(MODEL, {"video": "https://x/v.mp4"})
    extra = {"video": "https://x/v.mp4", "audio": "https://x/a.wav", "guidance_scale": 1.5}
    reply = httpx.post(f"{ws.url}/api/v3/{MODEL}", json=extra, headers=AUTH)
    assert reply.status_code == 400 and "guidance_scale" in reply.json()["message"]
    assert httpx.post(f"{ws.url}/api/v3/fal-ai/latentsync", json=extra, headers=AUTH).status_code == 404
    assert ws.jobs == {}


def test_model_failure_is_a_200_with_failed_status_and_not_billed(ws: FakeWaveSpeed) -> None:
    inputs = {"video": "https://example.com/v.mp4", "audio": "https://example.com/a.wav"}
    ws.fail_job(error="face not detected", code=1403)
    with pytest.raises(RuntimeError, match=r"Prediction failed \(task_id: \w+\): face not detected"):
        ws.client().run(MODEL, inputs, poll_interval=0.01)
    (failed,) = ws.jobs.values()
    assert (failed.status, failed.code, failed.cost_usd) == ("failed", 1403, 0.0)
    assert all(r.status == 200 for r in ws.requests_for("result"))

    ws.result_video = lambda prediction: (_ for _ in ()).throw(RuntimeError("CUDA out of memory"))
    result = ws.client().run_no_throw(MODEL, inputs, poll_interval=0.01)
    assert result["status"] == "failed" and result["task_id"] in ws.jobs and "CUDA out of memory" in result["error"]
    assert ws.jobs[result["task_id"]].code == 5000

    ws.result_video = None
    data_uri = {"video": "data:video/mp4;base64,AAAA", "audio": "https://example.com/a.wav"}
    result = ws.client().run_no_throw(MODEL, data_uri, poll_interval=0.01)
    assert "Failed to download video" in result["error"] and ws.jobs[result["task_id"]].code == 1402
    assert len(ws.jobs) == 3


def test_faults_result_503_retried_submit_never_resent(ws: FakeWaveSpeed) -> None:
    inputs = {"video": "https://example.com/v.mp4", "audio": "https://example.com/a.wav"}
    ws.faults.result.extend([Fault.status(503), Fault.nginx_503(502)])
    output = ws.client().run(MODEL, inputs, poll_interval=0.01)
    assert output["outputs"] and [r.status for r in ws.requests_for("result")] == [503, 502, 200, 200, 200]
    assert ws.requests_for("result")[0].fault == "status(503)"

    ws.clear_requests()
    ws.faults.submit.append(Fault.status(503))
    with pytest.raises(RuntimeError, match="HTTP 503"):
        ws.client(max_retries=3).run(MODEL, inputs, poll_interval=0.01)
    assert len(ws.requests_for("submit")) == 1 and len(ws.jobs) == 1  # refused before the model ran

    ws.faults.submit.append(Fault.drop_after_accept())
    with pytest.raises(RuntimeError, match="did not return a response"):
        ws.client().run(MODEL, inputs, poll_interval=0.01)
    assert len(ws.requests_for("submit")) == 2 and len(ws.jobs) == 2  # created, never heard of, not re-sent
    orphan = httpx.post(f"{ws.url}/api/v3/predictions", json={"page": 1, "page_size": 1}, headers=AUTH)
    assert orphan.json()["data"]["items"][0]["status"] == "created"  # the listing resolves the ambiguity


def test_upload_ticket_rules_sync_mode_pricing_and_ranges(ws: FakeWaveSpeed, media: tuple[Path, Path]) -> None:
    video, audio = media
    with httpx.Client(base_url=ws.url, headers=AUTH) as http:
        ticket = http.post("/api/v3/media/uploads", json={"filename": "a.wav", "size": 3}).json()["data"]
        put = ticket["upload"]
        assert put["method"] == "PUT" and httpx.get(ticket["download_url"]).status_code == 404
        assert httpx.put(put["url"], content=b"abcd", headers=put["headers"]).status_code == 400  # wrong size
        assert httpx.put(put["url"], content=b"abc", headers=put["headers"]).status_code == 403  # single use
        too_big = http.post("/api/v3/media/uploads", json={"filename": "v.mp4", "size": ws.max_upload_bytes + 1})
        assert too_big.status_code == 413 and too_big.json()["code"] == 413

    client = ws.client()
    audio_url = client.upload(str(audio))
    quote = httpx.post(
        f"{ws.url}/api/v3/model/pricing", json={"model_id": MODEL, "inputs": {"audio": audio_url}}, headers=AUTH
    )
    assert quote.json()["data"] == {"model_id": MODEL, "unit_price": 0.3, "price": 0.3, "currency": "USD"}

    output = client.run(MODEL, {"video": client.upload(str(video)), "audio": audio_url}, enable_sync_mode=True)
    assert ws.requests_for("result") == [] and output["outputs"]
    assert ws.requests_for("submit")[0].json()["enable_sync_mode"] is True
    part = httpx.get(output["outputs"][0], headers={"Range": "bytes=0-9"})
    assert part.status_code == 206 and len(part.content) == 10
