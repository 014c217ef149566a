"""The crop step's rules (tracks, scenes, smoothing, crop geometry) on boxes and frames made here."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")

from latentsync_routes.quality.crop import (  # noqa: E402
    CropSettings,
    FaceTrack,
    SceneCuts,
    build_tracks,
    crop_frame,
    iou,
    smooth_track,
)

BOX = [100.0, 100.0, 220.0, 240.0]  # 120 x 140 px: over the 100 px minimum


def frames_with(box: list[float] | None, count: int) -> list[list[list[float]]]:
    return [[list(box)] if box is not None else [] for _ in range(count)]


def test_iou() -> None:
    assert iou(BOX, BOX) == pytest.approx(1.0)
    assert iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert iou([0, 0, 10, 10], [20, 20, 30, 30]) == 0.0


def test_a_track_needs_more_than_min_track_detections() -> None:
    assert build_tracks(frames_with(BOX, 50), [(0, 50)]) == []  # 50 detections: not more than 50
    tracks = build_tracks(frames_with(BOX, 51), [(0, 51)])
    assert [(t.first, t.frames, t.detections) for t in tracks] == [(0, 51, 51)]


def test_missed_frames_are_interpolated_and_a_long_gap_ends_the_track() -> None:
    moving = [[[100.0 + k, 100.0, 220.0 + k, 240.0]] for k in range(80)]
    for k in range(30, 40):
        moving[k] = []  # 10 missed frames: within the 25 allowed
    (track,) = build_tracks(moving, [(0, 80)])
    assert track.frames == 80 and track.detections == 70
    np.testing.assert_allclose(track.boxes[35], [135.0, 100.0, 255.0, 240.0])  # linear between 29 and 40
    gapped = frames_with(BOX, 60) + frames_with(None, 26) + frames_with(BOX, 60)
    tracks = build_tracks(gapped, [(0, len(gapped))])
    assert [(t.first, t.frames) for t in tracks] == [(0, 60), (86, 60)]


def test_two_faces_make_two_tracks_and_small_faces_none() -> None:
    other = [400.0, 120.0, 520.0, 250.0]
    both = [[list(BOX), list(other)] for _ in range(60)]
    tracks = build_tracks(both, [(0, 60)])
    assert sorted(float(t.boxes[0, 0]) for t in tracks) == [100.0, 400.0]
    small = [10.0, 10.0, 90.0, 99.0]  # 80 x 89 px
    assert build_tracks(frames_with(small, 60), [(0, 60)]) == []


def test_tracks_stay_inside_scenes_and_short_scenes_are_skipped() -> None:
    dets = frames_with(BOX, 130)
    tracks = build_tracks(dets, [(0, 70), (70, 110), (110, 130)])
    assert [(t.first, t.frames) for t in tracks] == [(0, 70)]  # 40- and 20-frame scenes are under 50


def test_scene_cuts_find_a_hard_cut_only() -> None:
    rng = np.random.default_rng(0)
    first = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    second = 255 - first
    cuts = SceneCuts(CropSettings())
    for k in range(60):
        frame = first if k < 30 else second
        noise = rng.integers(-2, 3, frame.shape)
        cuts.add(np.clip(frame.astype(np.int16) + noise, 0, 255).astype(np.uint8))
    assert cuts.scenes(60) == [(0, 30), (30, 60)]


def test_smoothing_is_scipy_medfilt_of_size_and_centre() -> None:
    signal = pytest.importorskip("scipy.signal")
    rng = np.random.default_rng(1)
    boxes = np.cumsum(rng.normal(0, 3, (40, 4)), axis=0) + [100, 100, 220, 240]
    smoothed = smooth_track(FaceTrack(first=0, boxes=boxes, detections=40))
    size = np.maximum(boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]) / 2
    np.testing.assert_allclose(smoothed[:, 0], signal.medfilt(size, kernel_size=13))
    np.testing.assert_allclose(smoothed[:, 1], signal.medfilt((boxes[:, 0] + boxes[:, 2]) / 2, kernel_size=13))
    np.testing.assert_allclose(smoothed[:, 2], signal.medfilt((boxes[:, 1] + boxes[:, 3]) / 2, kernel_size=13))


def test_crop_geometry_follows_the_official_box() -> None:
    """Rows [cy - s, cy + 1.8 s), columns [cx - 1.4 s, cx + 1.4 s), grey 110 beyond the frame."""
    frame = np.zeros((400, 400, 3), np.uint8)
    s, cx, cy = 50.0, 200.0, 150.0
    frame[100:190, 130:270] = 255  # white from the crop's top edge (cy - s) and left edge (cx - 1.4 s)
    crop = crop_frame(frame, s, cx, cy)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    assert crop[2, 2].tolist() == [255, 255, 255]  # the top-left corner is the white block
    assert crop[-2, -2].tolist() == [0, 0, 0]
    edge = crop_frame(frame, s, 10.0, 10.0)  # most of this crop lies outside the frame
    assert edge[2, 2].tolist() == [110, 110, 110]
