"""The face row: a STOP before paying when the sampled frames show no face, a pass when they do.

The package's synthetic clips show no face (so the rest of the suite turns the check off, conftest.py);
here it is on. A real face comes from scikit-image's public-domain astronaut photo, encoded as a clip.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from latentsync_routes import LipSyncClient, PolicyViolation, load_settings
from latentsync_routes.face_check import SAMPLE_FRAMES, sample_frames
from latentsync_routes.testing import FakeFal, write_test_audio, write_test_video
from latentsync_routes.types import MediaSource
from tests.conftest import FACE_CHECK_ENV

pytest.importorskip("mediapipe.python.solutions.face_detection", reason="the faces extra (mediapipe)")


def _face_clip(path: Path, seconds: float = 1.0) -> Path:
    """A clip of the astronaut photo (a real face), drifting a little so frames differ."""
    import av

    photo = np.ascontiguousarray(pytest.importorskip("skimage.data").astronaut()[:384, 64:448])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 384, 384, "yuv420p"
        for i in range(int(seconds * 25)):
            frame = av.VideoFrame.from_ndarray(np.roll(photo, i % 8, axis=1), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("faces")
    return {
        "face": _face_clip(root / "face.mp4"),
        "synthetic": write_test_video(root / "synthetic.mp4", 1.0),
        "voice": write_test_audio(root / "voice.wav", 1.0),
    }


@pytest.fixture
def face_check_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FACE_CHECK_ENV, "true")


def _face_row(client: LipSyncClient, video: Path, audio: Path, **kwargs: object) -> tuple[bool, str]:
    row = {r.check: r for r in client.check(video, audio, **kwargs)}["face"]  # type: ignore[arg-type]
    return row.passed, row.reason


def test_frames_are_sampled_across_the_video(clips: dict[str, Path]) -> None:
    frames = sample_frames(MediaSource.of(clips["face"]), SAMPLE_FRAMES)
    assert len(frames) == SAMPLE_FRAMES and frames[0].shape == (384, 384, 3)
    assert not np.array_equal(frames[0], frames[1])  # different moments, not one frame five times
    from_bytes = sample_frames(MediaSource.of(clips["face"].read_bytes()), SAMPLE_FRAMES)
    assert len(from_bytes) == SAMPLE_FRAMES


def test_a_real_face_passes_quickly(clips: dict[str, Path], tmp_path: Path, face_check_on: None) -> None:
    client = LipSyncClient(route="fal", consent="test", settings=load_settings(home=tmp_path))
    _face_row(client, clips["face"], clips["voice"])  # MediaPipe's one-off import
    fresh = tmp_path / "fresh.mp4"  # other content: a video already checked would be remembered
    fresh.write_bytes(clips["face"].read_bytes() + b"\0")
    started = time.perf_counter()
    passed, reason = _face_row(client, fresh, clips["voice"])
    elapsed = time.perf_counter() - started
    assert passed, reason
    assert f"a face in {SAMPLE_FRAMES} of {SAMPLE_FRAMES} sampled frames" in reason
    assert elapsed < 5.0, f"the face check took {elapsed:.2f} s"


def test_no_face_is_a_stop_before_anything_is_uploaded(
    clips: dict[str, Path], tmp_path: Path, face_check_on: None
) -> None:
    with FakeFal(expected_key="k") as fal:
        settings = load_settings(home=tmp_path, route_settings={"fal": {"base_url": fal.url}}, poll_interval=0.01)
        client = LipSyncClient(route="fal", credentials={"fal": "k"}, consent="test", settings=settings)
        passed, reason = _face_row(client, clips["synthetic"], clips["voice"])
        assert not passed and f"a face in 0 of {SAMPLE_FRAMES} sampled frames" in reason
        with pytest.raises(PolicyViolation, match="face: a face in 0 of") as stop:
            client.run(clips["synthetic"], clips["voice"], tmp_path / "out.mp4")
        assert stop.value.exit_code == 3
        assert fal.requests == [] and client.journal.list() == []


def test_turning_it_off_is_said_in_the_row(clips: dict[str, Path], tmp_path: Path, face_check_on: None) -> None:
    client = LipSyncClient(route="fal", consent="test", settings=load_settings(home=tmp_path))
    passed, reason = _face_row(client, clips["synthetic"], clips["voice"], face_check=False)
    assert passed and reason.startswith("skipped (face_check=False for this job)")
    off = LipSyncClient(
        route="fal", consent="test", settings=load_settings(home=tmp_path, policy={"face_check": False})
    )
    passed, reason = _face_row(off, clips["synthetic"], clips["voice"])
    assert passed and reason.startswith("skipped (policy.face_check = false)")
    passed, reason = _face_row(off, clips["synthetic"], clips["voice"], face_check=True)  # the job's word wins
    assert not passed


def test_the_local_route_and_url_videos_are_not_sampled(
    clips: dict[str, Path], tmp_path: Path, face_check_on: None
) -> None:
    local = LipSyncClient(route="local", consent="test", settings=load_settings(home=tmp_path))
    passed, reason = _face_row(local, clips["synthetic"], clips["voice"])
    assert passed and reason.startswith("not needed: nothing is uploaded")
    from latentsync_routes.config import PolicySettings
    from latentsync_routes.face_check import face_row
    from latentsync_routes.routes.fal import route as fal

    row = face_row(fal.INFO, PolicySettings(), MediaSource.of("https://example.com/clip.mp4"))
    assert row.passed and "the video is a URL" in row.reason


def test_each_video_is_detected_once_however_many_routes_weigh_it(
    clips: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from latentsync_routes import face_check
    from latentsync_routes.routes.fal import route as fal
    from latentsync_routes.routes.replicate import route as replicate
    from latentsync_routes.routes.wavespeed import route as wavespeed

    counted: list[int] = []
    real = face_check.count_faces
    monkeypatch.setattr(face_check, "count_faces", lambda frames: counted.append(len(frames)) or real(frames))
    policy = load_settings().policy
    video = tmp_path / "clip.mp4"
    video.write_bytes(clips["face"].read_bytes())
    rows = [face_check.face_row(module.INFO, policy, MediaSource.of(video), enabled=True)
            for module in (fal, replicate, wavespeed)]  # fmt: skip
    assert counted == [SAMPLE_FRAMES] and all(r.passed for r in rows) and len({r.reason for r in rows}) == 1
    video.write_bytes(clips["synthetic"].read_bytes())  # new content at the same path: detected afresh
    row = face_check.face_row(fal.INFO, policy, MediaSource.of(video), enabled=True)
    assert counted == [SAMPLE_FRAMES, SAMPLE_FRAMES] and not row.passed
