"""Face detectors and the anchor mappings: the official 106-point rule on synthetic landmarks, the
InsightFace selection rule and missing-extra error, and MediaPipe run for real on a face photo."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from latentsync_routes.local import faces as faces_mod
from latentsync_routes.local.errors import ModuleMissing
from latentsync_routes.local.faces import (
    INSIGHTFACE_106_ANCHOR_INDICES,
    MESH_ANCHOR_INDICES,
    FaceAligner,
    FaceDetector,
    InsightFaceDetector,
    anchors_from_106,
    anchors_from_mesh,
    select_face,
)

# --------------------------------------------------------------------------------------------- 106 points


def test_106_mapping_uses_the_official_groups() -> None:
    lmk = np.zeros((106, 2))
    for i, (x, y) in zip(
        INSIGHTFACE_106_ANCHOR_INDICES[0], [(10, 50), (20, 40), (30, 40), (40, 40), (50, 50)], strict=True
    ):
        lmk[i] = (x, y)
    for i, (x, y) in zip(range(101, 106), [(150, 60), (110, 60), (120, 50), (130, 50), (140, 50)], strict=True):
        lmk[i] = (x, y)
    for i, (x, y) in zip((74, 77, 83, 86), [(80, 100), (70, 120), (90, 120), (80, 110)], strict=True):
        lmk[i] = (x, y)
    anchors = anchors_from_106(lmk)
    np.testing.assert_array_equal(anchors, [[30, 44], [130, 54], [80, 112]])
    assert anchors.dtype == np.float64 and anchors.shape == (3, 2)


def test_106_mapping_rounds_like_the_official_detector() -> None:
    rng = np.random.default_rng(0)
    lmk = rng.uniform(0, 640, (106, 2))
    # Official: landmarks rounded to int pixels, group means, then np.round (half to even).
    r = np.round(lmk).astype(np.int_)
    want = np.round(
        [
            np.mean(r[[43, 48, 49, 51, 50]], axis=0),
            np.mean(r[101:106], axis=0),
            np.mean(r[[74, 77, 83, 86]], axis=0),
        ]
    )
    np.testing.assert_array_equal(anchors_from_106(lmk), want)
    # An exact .5 mean goes to the even neighbour.
    lmk = np.zeros((106, 2))
    for i in (74, 77, 83):
        lmk[i] = (1.0, 2.0)
    lmk[86] = (3.0, 4.0)  # nose mean = (1.5, 2.5) -> (2, 2)
    assert anchors_from_106(lmk)[2].tolist() == [2.0, 2.0]


def test_106_mapping_checks_shape() -> None:
    with pytest.raises(ValueError):
        anchors_from_106(np.zeros((68, 2)))


def test_mesh_mapping_groups_and_shape() -> None:
    pts = np.zeros((478, 3))
    for group, value in zip(MESH_ANCHOR_INDICES, [(10.0, 20.0), (30.0, 20.0), (20.0, 35.0)], strict=True):
        pts[list(group), :2] = value
    np.testing.assert_array_equal(anchors_from_mesh(pts), [[10, 20], [30, 20], [20, 35]])
    np.testing.assert_array_equal(anchors_from_mesh(pts[:468, :2]), [[10, 20], [30, 20], [20, 35]])
    with pytest.raises(ValueError):
        anchors_from_mesh(np.zeros((100, 2)))


def test_select_face_follows_the_official_rule() -> None:
    def face(box: tuple[float, float, float, float], score: float = 0.9) -> SimpleNamespace:
        return SimpleNamespace(bbox=np.array(box), det_score=score)

    small = face((0, 0, 49.9, 200))  # int width 49 < 50
    short = face((0, 0, 60, 79.5))  # int height 79 < 80
    wide = face((0, 0, 400, 100))  # ratio 4 > 1.5
    weak = face((0, 0, 300, 300), score=0.4)
    ok = face((10, 10, 110, 160))
    bigger = face((0, 0, 150, 200))
    assert select_face([small, short, wide, weak]) is None
    assert select_face([small, ok, weak]) is ok
    assert select_face([ok, bigger, wide]) is bigger
    assert select_face([]) is None


def test_insightface_missing_raises_typed_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "insightface", None)
    monkeypatch.setitem(sys.modules, "insightface.app", None)
    with pytest.raises(ModuleMissing, match=r"latentsync-routes\[insightface\]"):
        InsightFaceDetector(cache_dir=str(tmp_path))


def test_insightface_detector_with_a_stub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The wiring around FaceAnalysis (no model download): arguments, selection and anchors."""
    calls: dict[str, object] = {}
    lmk = np.random.default_rng(1).uniform(100, 300, (106, 2))

    class StubAnalysis:
        def __init__(self, **kwargs: object) -> None:
            calls["init"] = kwargs

        def prepare(self, ctx_id: int, det_size: tuple[int, int]) -> None:
            calls["prepare"] = (ctx_id, det_size)

        def get(self, img: np.ndarray) -> list[SimpleNamespace]:
            calls["shape"] = img.shape
            return [SimpleNamespace(bbox=np.array([100, 100, 250, 300]), det_score=0.9, landmark_2d_106=lmk)]

    real_import = faces_mod._import_optional

    def fake_import(module: str, extra: str, what: str) -> object:
        if module == "insightface.app":
            return SimpleNamespace(FaceAnalysis=StubAnalysis)
        if module == "onnxruntime":
            return SimpleNamespace(get_available_providers=lambda: ["CPUExecutionProvider"])
        return real_import(module, extra, what)

    monkeypatch.setattr(faces_mod, "_import_optional", fake_import)
    det = InsightFaceDetector(cache_dir=tmp_path / "cache")
    assert isinstance(det, FaceDetector)
    anchors = det(np.zeros((480, 640, 3), np.uint8))
    np.testing.assert_array_equal(anchors, anchors_from_106(lmk))
    init = calls["init"]
    assert isinstance(init, dict)
    assert init["name"] == "buffalo_l"
    assert init["allowed_modules"] == ["detection", "landmark_2d_106"]
    assert init["providers"] == ["CPUExecutionProvider"]
    assert calls["prepare"] == (-1, (512, 512))


def test_plain_function_is_a_detector() -> None:
    def fixed(frame: np.ndarray) -> np.ndarray | None:
        return np.array([[1.0, 2.0], [3.0, 2.0], [2.0, 4.0]])

    assert isinstance(fixed, FaceDetector)


# --------------------------------------------------------------------------------------------- MediaPipe

SHIFTS = [  # (scale, dx, dy) of the 512x512 photo placed in a 480x640 frame
    (0.75, 120.0, 40.0),
    (0.75, 150.0, 25.0),
    (0.85, 90.0, 0.0),
    (1.0, 64.0, -16.0),
    (1.6, -60.0, -60.0),
]


def place(photo: np.ndarray, scale: float, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    m = np.array([[scale, 0.0, dx], [0.0, scale, dy]])
    frame = cv2.warpAffine(photo, m, (640, 480), flags=cv2.INTER_LINEAR, borderValue=(110, 110, 110))
    return frame, m


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="module")
def mp_detector() -> Iterator[faces_mod.MediaPipeDetector]:
    pytest.importorskip("mediapipe.python.solutions.face_mesh", reason="mediapipe 0.10.x with bundled models")
    det = faces_mod.MediaPipeDetector()
    yield det
    det.close()


# Rough face box of the astronaut photo (x0, y0, x1, y1), photo pixels.
ASTRONAUT_FACE = (160.0, 50.0, 290.0, 200.0)


def test_mediapipe_finds_plausible_anchors_that_follow_the_face(
    astronaut: np.ndarray, mp_detector: faces_mod.MediaPipeDetector
) -> None:
    assert isinstance(mp_detector, FaceDetector)
    found = []
    for scale, dx, dy in SHIFTS:
        frame, m = place(astronaut, scale, dx, dy)
        anchors = mp_detector(frame)
        assert anchors is not None, f"no face at scale={scale} shift=({dx}, {dy})"
        assert anchors.shape == (3, 2)
        np.testing.assert_array_equal(anchors, np.round(anchors))
        left, right, nose = anchors
        assert left[0] < nose[0] < right[0], "nose should sit between the eyebrows"
        assert nose[1] > max(left[1], right[1]) + 5 * scale, "eyebrows should be above the nose"
        x0, y0, x1, y1 = ASTRONAUT_FACE
        box = np.array([[x0, y0], [x1, y1]]) * scale + [dx, dy]
        assert np.all(anchors >= box[0]) and np.all(anchors <= box[1]), "anchors outside the face box"
        # Back in photo coordinates the anchors must (nearly) agree across placements.
        found.append((anchors - [dx, dy]) / scale)
    photo_pts = np.stack(found)
    spread = np.abs(photo_pts - photo_pts.mean(axis=0)).max()
    assert spread < 4.0, f"anchors do not follow the face: spread {spread:.2f} px"


def test_mediapipe_blank_frame_gives_none(mp_detector: faces_mod.MediaPipeDetector) -> None:
    assert mp_detector(np.full((480, 640, 3), 110, np.uint8)) is None
    assert mp_detector(np.zeros((240, 320, 3), np.uint8)) is None


def test_mediapipe_small_face_is_ignored(astronaut: np.ndarray, mp_detector: faces_mod.MediaPipeDetector) -> None:
    """Faces under the official 50x80 px minimum are skipped by default, found when allowed."""
    frame, _ = place(astronaut, 0.6, 200.0, 100.0)  # the mesh box is about 55x65 px
    assert mp_detector(frame) is None
    with faces_mod.MediaPipeDetector(min_face_size=(0, 0)) as lenient:
        anchors = lenient(frame)
    assert anchors is not None
    assert anchors[0][0] < anchors[2][0] < anchors[1][0]


def test_mediapipe_anchors_drive_the_aligner(astronaut: np.ndarray, mp_detector: faces_mod.MediaPipeDetector) -> None:
    """Detected anchors put the face where the template wants it: the aligned crop is mostly face,
    and pasting it back unchanged leaves the frame nearly as it was."""
    frame, _ = place(astronaut, 0.75, 120.0, 40.0)
    anchors = mp_detector(frame)
    assert anchors is not None
    aligner = FaceAligner(256)
    face, matrix = aligner.align(frame, anchors)
    assert face.shape == (3, 256, 256)
    # The anchors land near their template positions (the fit is a similarity, so not exactly).
    mapped = anchors @ matrix[:, :2].T + matrix[:, 2]
    assert np.abs(mapped - aligner.template).max() < 25
    grey = np.all(face == 127, axis=0).mean()
    assert grey < 0.05, "the crop should not run off the frame"
    out = aligner.restore(frame, face.astype(np.float32) / 127.5 - 1, matrix)
    assert np.abs(out.astype(np.int16) - frame.astype(np.int16)).mean() < 0.5


def test_mediapipe_missing_raises_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("mediapipe", "mediapipe.python", "mediapipe.python.solutions", "mediapipe.python.solutions.face_mesh"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ModuleMissing, match=r"latentsync-routes\[faces\]"):
        faces_mod.MediaPipeDetector()
