"""A long video split at chunk boundaries, run segment by segment and joined, equals the one-worker run.

Tiny random-weight models and a real face (MediaPipe on the astronaut). The clip is built to touch every
piece of whole-video state: the audio is longer than the video (ping-pong looping, turning frames), two
frames have no face (the alignment smoothing skips them), the last chunk is short, and the segments start
mid-way through the noise draws.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import torch

from latentsync_routes.local.faces import MediaPipeDetector
from latentsync_routes.local.pipeline import sync_video
from latentsync_routes.local.runtime import LoadedModels
from latentsync_routes.local.segments import plan_segments, run_segment, split_chunks, sync_video_segmented
from latentsync_routes.testing.tiny_local import tiny_mask, tiny_models, write_speechy_wav
from tests.local_fixtures import astronaut_frames, write_h264

RESOLUTION = 64  # the tiny models at a 64 px face crop: every stage runs, at a sixteenth of the work

pytest.importorskip("mediapipe")


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def models() -> LoadedModels:
    models = tiny_models("1.5")
    models.mask = tiny_mask(RESOLUTION)
    return models


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("segments")
    frames = astronaut_frames(12)
    frames[5:7] = 110  # two frames without a face
    return write_h264(root / "face.mp4", frames), write_speechy_wav(root / "voice.wav", seconds=1.5)


def test_split_chunks_covers_every_chunk_once() -> None:
    assert split_chunks(4, 3) == ((0, 1), (1, 3), (3, 4))
    assert split_chunks(2, 5) == ((0, 1), (1, 2))  # never an empty segment
    assert split_chunks(7, 1) == ((0, 7),)
    for chunks in range(1, 12):
        for segments in range(1, 6):
            bounds = split_chunks(chunks, segments)
            assert [c for a, b in bounds for c in range(a, b)] == list(range(chunks))
    with pytest.raises(ValueError):
        split_chunks(3, 0)


def capture_encoded(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[np.ndarray]]:
    """The frames each VideoWriter is handed, by output file name: what must match. (The encoded files are
    compared only loosely: libx264 here does not give the same bytes for the same frames twice.)"""
    from latentsync_routes.local import video_writer

    seen: dict[str, list[np.ndarray]] = {}
    original = video_writer.VideoWriter.write

    def write(self: Any, frame: np.ndarray) -> None:
        seen.setdefault(self.path.name, []).append(np.array(frame))
        original(self, frame)

    monkeypatch.setattr(video_writer.VideoWriter, "write", write)
    return seen


@pytest.mark.slow
def test_joined_segments_equal_the_one_worker_output(
    tmp_path: Path, clip: tuple[Path, Path], models: LoadedModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    video, audio = clip
    encoded = capture_encoded(monkeypatch)
    common = dict(unet=models.unet, vae=models.vae, whisper=models.whisper, mask=models.mask,
                  resolution=RESOLUTION, num_inference_steps=1, guidance_scale=1.5,
                  on_missing_face="passthrough")  # fmt: skip
    whole = sync_video(
        video,
        audio,
        tmp_path / "whole.mp4",
        detector=MediaPipeDetector(),
        generator=torch.Generator().manual_seed(7),
        **common,
    )  # type: ignore[arg-type]
    split = sync_video_segmented(
        video, audio, tmp_path / "split.mp4", detector=MediaPipeDetector(), segments=2, seed=7, **common
    )  # type: ignore[arg-type]
    assert whole.frames_written == 39 and whole.missing_faces == [5, 6]  # 1.5 s of audio, 12 video frames
    one, joined = np.stack(encoded["whole.mp4"]), np.stack(encoded["split.mp4"])
    assert joined.shape == one.shape == (39, 192, 160, 3)
    assert np.array_equal(joined, one)  # frame for frame, bit for bit
    files = decode(whole.output_path), decode(split)
    assert files[0].shape == files[1].shape and float(np.abs(files[0].astype(int) - files[1]).mean()) < 2.0
    with av.open(str(split)) as container:
        assert container.streams.audio  # the join carries the audio like the one-worker file


def test_the_plan_holds_the_whole_video_state(clip: tuple[Path, Path], models: LoadedModels) -> None:
    video, audio = clip
    plan = plan_segments(video, audio, whisper=models.whisper, detector=MediaPipeDetector(),
                         resolution=RESOLUTION, segments=2, on_missing_face="passthrough")  # fmt: skip
    assert plan.total == 39 and plan.bounds == ((0, 2), (2, 3)) and plan.frames_of(1) == (32, 39)
    assert plan.index[10:15].tolist() == [10, 11, 11, 10, 9]  # ping-pong: the turning frame repeated
    assert plan.missing_faces == (5, 6) and plan.matrices[5] is None and plan.matrices[7] is not None
    assert plan.features.shape[0] == 75  # the whole file's features, not a segment's
    last = run_segment(plan, 1, video, unet=models.unet, vae=models.vae, mask=models.mask,
                       resolution=RESOLUTION, seed=7, num_inference_steps=1)  # fmt: skip
    assert last.shape == (7, 192, 160, 3) and last.dtype == np.uint8
    with pytest.raises(ValueError, match="made for 64 px"):
        run_segment(plan, 0, video, unet=models.unet, vae=models.vae, mask=models.mask, resolution=256, seed=7)
