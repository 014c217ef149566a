"""Parity of the face alignment, restore and mask with the official goldens (``align/``), plus the
properties the restore shortcut relies on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from latentsync_routes.local import align as A
from latentsync_routes.local.align import FaceAligner, crop_size, load_mask, mask_to_float
from tests.conftest import goldens_path

RESOLUTIONS = (256, 512)
# README tolerances: 2x2 part of the matrices, translations, and uint8 images.
LINEAR_ATOL = 1e-5
TRANSLATION_ATOL = 2e-3
MAX_LSB = 1
MAX_FRAC_DIFFERING = 0.01


def assert_u8_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == np.uint8
    diff = np.abs(actual.astype(np.int16) - expected.astype(np.int16))
    frac = float((diff > 0).mean())
    assert diff.max() <= MAX_LSB, f"{what}: max abs diff {diff.max()}"
    assert frac <= MAX_FRAC_DIFFERING, f"{what}: {frac:.4%} of values differ"


@pytest.fixture(scope="module")
def align_dir() -> Path:
    return goldens_path("align")


@pytest.fixture(scope="module")
def frames(align_dir: Path) -> np.ndarray:
    return load_file(str(align_dir / "frames.safetensors"))["frames"]


@pytest.fixture(scope="module")
def points(align_dir: Path) -> np.ndarray:
    return np.asarray(json.loads((align_dir / "points.json").read_text())["points_rounded"], dtype=np.float64)


def expected(align_dir: Path, res: int) -> dict[str, np.ndarray]:
    return load_file(str(align_dir / f"expected_{res}.safetensors"))


def run_sequence(frames: np.ndarray, points: np.ndarray, res: int) -> tuple[list[np.ndarray], np.ndarray]:
    """All frames through one fresh aligner, in order (the smoothing is stateful)."""
    aligner = FaceAligner(resolution=res)
    faces, mats = [], []
    for frame, pts in zip(frames, points, strict=True):
        face, matrix = aligner.align(frame, pts)
        faces.append(face)
        mats.append(matrix)
    return faces, np.stack(mats)


def assert_matrices_close(actual: np.ndarray, wanted: np.ndarray) -> None:
    np.testing.assert_allclose(actual[..., :2], wanted[..., :2], rtol=0, atol=LINEAR_ATOL)
    np.testing.assert_allclose(actual[..., 2], wanted[..., 2], rtol=0, atol=TRANSLATION_ATOL)


@pytest.mark.parametrize("res", RESOLUTIONS)
def test_smoothed_matrices_match(align_dir: Path, frames: np.ndarray, points: np.ndarray, res: int) -> None:
    exp = expected(align_dir, res)
    _, mats = run_sequence(frames, points, res)
    assert mats.shape == exp["affine"].shape and mats.dtype == np.float32
    assert_matrices_close(mats, exp["affine"])


@pytest.mark.parametrize("res", RESOLUTIONS)
def test_unsmoothed_fit_and_bias_match(align_dir: Path, points: np.ndarray, res: int) -> None:
    exp = expected(align_dir, res)
    aligner = FaceAligner(resolution=res)
    plain = np.stack([FaceAligner(resolution=res).transform(p, smooth=False) for p in points])
    assert_matrices_close(plain, exp["affine_unsmoothed"])
    for k, pts in enumerate(points):
        aligner.transform(pts)
        assert aligner.bias is not None
        np.testing.assert_allclose(aligner.bias, exp["p_bias"][k], rtol=0, atol=1e-5)


@pytest.mark.parametrize("res", RESOLUTIONS)
def test_faces_match(align_dir: Path, frames: np.ndarray, points: np.ndarray, res: int) -> None:
    exp = expected(align_dir, res)
    faces, _ = run_sequence(frames, points, res)
    for i, k in enumerate(exp["face_frames"].tolist()):
        assert faces[k].shape == (3, res, res)
        assert_u8_close(faces[k], exp["face"][i], f"face {k} @ {res}")


@pytest.mark.parametrize("res", RESOLUTIONS)
def test_raw_crops_match(align_dir: Path, frames: np.ndarray, points: np.ndarray, res: int) -> None:
    exp = expected(align_dir, res)
    _, mats = run_sequence(frames, points, res)
    aligner = FaceAligner(resolution=res)
    w, h = crop_size(res)
    for i, k in enumerate(exp["face_raw_frames"].tolist()):
        crop = aligner.warp_crop(frames[k], mats[k])
        assert crop.shape == (h, w, 3)
        assert_u8_close(crop, exp["face_raw"][i], f"raw crop {k} @ {res}")


def modified_face(face_u8: np.ndarray, res: int) -> torch.Tensor:
    """The restore input the goldens used: the face in [-1, 1] with its lower half colour-inverted."""
    pm1 = (torch.from_numpy(face_u8).to(torch.float32) / 255 - 0.5) / 0.5
    pm1[:, res // 2 :] = -pm1[:, res // 2 :]
    return pm1


@pytest.mark.parametrize("res", RESOLUTIONS)
def test_restore_matches(align_dir: Path, frames: np.ndarray, res: int) -> None:
    exp = expected(align_dir, res)
    y0, y1, x0, x1 = exp["restored_box"].tolist()
    face_frames = exp["face_frames"].tolist()
    aligner = FaceAligner(resolution=res)
    for i, k in enumerate(exp["restored_frames"].tolist()):
        face = exp["face"][face_frames.index(k)]
        out = aligner.restore(frames[k], modified_face(face, res), exp["affine"][k])
        wanted = frames[k].copy()
        wanted[y0:y1, x0:x1] = exp["restored_crop"][i]
        assert out.shape == frames[k].shape
        assert_u8_close(out, wanted, f"restored {k} @ {res}")
        assert np.array_equal(out[:y0], frames[k][:y0]) and np.array_equal(out[y1:], frames[k][y1:])


@pytest.mark.parametrize("res", RESOLUTIONS)
def test_whole_chain_with_own_matrices(align_dir: Path, frames: np.ndarray, points: np.ndarray, res: int) -> None:
    """Align then restore using only our own outputs, against the goldens' restored frames."""
    exp = expected(align_dir, res)
    y0, y1, x0, x1 = exp["restored_box"].tolist()
    faces, mats = run_sequence(frames, points, res)
    aligner = FaceAligner(resolution=res)
    for i, k in enumerate(exp["restored_frames"].tolist()):
        out = aligner.restore(frames[k], modified_face(faces[k], res).numpy(), mats[k])
        wanted = frames[k].copy()
        wanted[y0:y1, x0:x1] = exp["restored_crop"][i]
        assert_u8_close(out, wanted, f"chain {k} @ {res}")


@pytest.mark.parametrize("res", RESOLUTIONS)
def test_mask_matches(align_dir: Path, res: int) -> None:
    wanted = load_file(str(align_dir / f"mask_{res}.safetensors"))["mask_u8"]
    png = align_dir / "mask.png"
    from_path = load_mask(png, res)
    from_bytes = load_mask(png.read_bytes(), res)
    assert from_path.dtype == np.uint8 and from_path.shape == (res, res)
    assert np.array_equal(from_path, wanted)
    assert np.array_equal(from_bytes, wanted)
    as_float = mask_to_float(from_path)
    assert as_float.shape == (3, res, res) and as_float.dtype == np.float64
    assert np.array_equal(as_float[2], wanted / 255.0)


def test_bad_mask_bytes() -> None:
    with pytest.raises(ValueError, match="decoded"):
        load_mask(b"not a png", 256)


# --------------------------------------------------------------------------------------------- behaviour


def test_fresh_state_and_reset(frames: np.ndarray, points: np.ndarray) -> None:
    aligner = FaceAligner(256)
    first = [aligner.align(f, p)[1] for f, p in zip(frames[:3], points[:3], strict=True)]
    aligner.reset()
    again = [aligner.align(f, p)[1] for f, p in zip(frames[:3], points[:3], strict=True)]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    # Smoothing makes the second matrix depend on the first frame.
    lone = FaceAligner(256).align(frames[1], points[1])[1]
    assert not np.array_equal(lone, first[1])


def test_torch_inputs_accepted(frames: np.ndarray, points: np.ndarray) -> None:
    face_np, mat_np = FaceAligner(256).align(frames[0], points[0])
    face_t, mat_t = FaceAligner(256).align(torch.from_numpy(frames[0]), torch.from_numpy(points[0]))
    assert isinstance(face_t, np.ndarray) and face_t.dtype == np.uint8
    np.testing.assert_array_equal(face_np, face_t)
    np.testing.assert_array_equal(mat_np, mat_t)
    pm1 = torch.from_numpy(face_np).float() / 127.5 - 1
    out_t = FaceAligner(256).restore(torch.from_numpy(frames[0]), pm1, torch.from_numpy(mat_np)[None])
    out_np = FaceAligner(256).restore(frames[0], pm1.numpy(), mat_np)
    np.testing.assert_array_equal(out_t, out_np)


def test_round_trip_keeps_the_face(frames: np.ndarray, points: np.ndarray) -> None:
    """Pasting the unmodified aligned face back changes the frame by only resampling noise."""
    aligner = FaceAligner(256)
    face, matrix = aligner.align(frames[0], points[0])
    out = aligner.restore(frames[0], face.astype(np.float32) / 127.5 - 1, matrix)
    diff = np.abs(out.astype(np.int16) - frames[0].astype(np.int16))
    assert diff.mean() < 0.5
    assert diff.max() < 60


@pytest.mark.parametrize(
    "bad",
    [
        {"frame": np.zeros((4, 4), np.uint8)},
        {"frame": np.zeros((4, 4, 3), np.float32)},
        {"points": np.zeros((2, 2))},
    ],
)
def test_shape_and_dtype_checks(bad: dict[str, np.ndarray]) -> None:
    frame = bad.get("frame", np.zeros((64, 64, 3), np.uint8))
    pts = bad.get("points", np.array([[20.0, 20.0], [40.0, 20.0], [30.0, 30.0]]))
    with pytest.raises(ValueError):
        FaceAligner(256).align(frame, pts)


def test_resolution_must_be_multiple_of_8() -> None:
    with pytest.raises(ValueError):
        FaceAligner(250)


# --------------------------------------------------------------------------------------------- restore window


def restore_whole_frame(frame: np.ndarray, face_pm1: torch.Tensor, matrix: np.ndarray, res: int) -> np.ndarray:
    """The restore done over the whole frame, without the window shortcut (reference for the test)."""
    h, w = frame.shape[:2]
    wc, hc = crop_size(res)
    face = torch.nn.functional.interpolate(
        face_pm1[None].float(), size=(hc, wc), mode="bicubic", align_corners=False, antialias=True
    )
    inv = A.invert_affine(torch.from_numpy(matrix))
    back = A.warp_affine(face, inv, (h, w), fill=A.FILL_VALUE)[0]
    back = (back / 2 + 0.5).clamp(0, 1) * 255
    foot = A._erode_2x2(A.warp_affine(torch.ones((1, 1, hc, wc)), inv, (h, w)))
    w_edge = int(torch.sum(foot) ** 0.5) // 20
    import cv2

    core = cv2.erode(foot[0, 0].numpy(), np.ones((2 * w_edge, 2 * w_edge), np.uint8))
    soft = A._blur(torch.from_numpy(core)[None, None], 2 * w_edge + 1)[0]
    img = torch.from_numpy(frame).permute(2, 0, 1).float()
    out = soft * (foot[0] * back) + (1 - soft) * img
    return out.clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


@pytest.mark.parametrize(
    ("scale", "angle", "centre"),
    [
        (0.4, 3.0, (320.0, 240.0)),  # face smaller than the crop, well inside
        (1.7, -8.0, (300.0, 260.0)),  # close-up: the face is larger than the crop
        (0.5, 0.0, (15.0, 20.0)),  # mostly outside the top-left corner
        (0.6, 20.0, (630.0, 470.0)),  # mostly outside the bottom-right corner
    ],
)
def test_restore_window_equals_whole_frame(scale: float, angle: float, centre: tuple[float, float]) -> None:
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    res = 256
    wc, hc = crop_size(res)
    # crop -> frame: rotate/scale about the crop centre, then put that centre at `centre`
    th = np.deg2rad(angle)
    lin = scale * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    to_frame = np.hstack([lin, (np.array(centre) - lin @ np.array([wc / 2, hc / 2]))[:, None]])
    matrix = np.linalg.inv(np.vstack([to_frame, [0, 0, 1]]))[:2].astype(np.float32)
    face = torch.from_numpy(rng.uniform(-1, 1, (3, res, res)).astype(np.float32))
    fast = FaceAligner(res).restore(frame, face, matrix)
    slow = restore_whole_frame(frame, face, matrix, res)
    diff = np.abs(fast.astype(np.int16) - slow.astype(np.int16))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-4


def test_face_fully_outside_leaves_frame_alone() -> None:
    frame = np.full((120, 160, 3), 90, np.uint8)
    matrix = np.array([[1.0, 0.0, 5000.0], [0.0, 1.0, 5000.0]], np.float32)  # crop is far away
    out = FaceAligner(256).restore(frame, np.zeros((3, 256, 256), np.float32), matrix)
    assert np.array_equal(out, frame)


def test_face_just_outside_the_edge_leaves_frame_alone() -> None:
    """The crop ends a few pixels beyond the right edge: only the safety margin overlaps the frame."""
    frame = np.full((120, 160, 3), 90, np.uint8)
    matrix = np.array([[1.0, 0.0, -(160.0 + 3)], [0.0, 1.0, 0.0]], np.float32)  # frame x=163 -> crop x=0
    out = FaceAligner(256).restore(frame, np.zeros((3, 256, 256), np.float32), matrix)
    assert np.array_equal(out, frame)
