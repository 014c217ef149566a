"""Faces for the local route: finding the three alignment anchors, then aligning and restoring.

The model only ever sees a face crop fixed by three anchors per frame, in this order:

0. the image-left eyebrow centre (the subject's right eyebrow in an unmirrored frame),
1. the image-right eyebrow centre,
2. the nose centre,

each ``(x, y)`` in frame pixels and rounded half-to-even (``np.round``), which is what
:class:`~latentsync_routes.local.align.FaceAligner` consumes. A detector is anything callable as
``detector(frame) -> anchors | None`` (:class:`FaceDetector`); ``None`` means "no usable face in this
frame" and lets the pipeline decide whether to fail or pass the frame through, instead of the detector
aborting the whole job.

Two detectors are provided:

* :class:`MediaPipeDetector` works fully offline: the face detector and face-mesh models ship inside
  the ``mediapipe`` 0.10.x wheel (the ``faces`` extra). Its 478 mesh points are mapped onto the same
  anatomical points the official 106-point anchors use (see :data:`MESH_ANCHOR_INDICES`).
* :class:`InsightFaceDetector` is the parity path: InsightFace ``buffalo_l`` (SCRFD detection + 106-point
  landmarks) with the official face selection and anchor rule. Its model pack is downloaded by
  insightface itself on first use, into the cache directory given to it (the ``insightface`` extra).

Neither dependency is imported before a detector is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from latentsync_routes.local.align import FaceAligner, crop_size, face_template, load_mask, mask_to_float
from latentsync_routes.local.errors import ModuleMissing

__all__ = [
    "FaceAligner",
    "FaceDetector",
    "INSIGHTFACE_106_ANCHOR_INDICES",
    "InsightFaceDetector",
    "MESH_ANCHOR_INDICES",
    "MediaPipeDetector",
    "anchors_from_106",
    "anchors_from_mesh",
    "crop_size",
    "face_template",
    "load_mask",
    "mask_to_float",
    "select_face",
]


@runtime_checkable
class FaceDetector(Protocol):
    """Finds the face to lip-sync in one frame.

    Takes an HxWx3 uint8 **RGB** frame and returns the 3x2 float64 anchors described in the module
    docstring (already rounded), or ``None`` when the frame has no usable face. A plain function with
    that signature qualifies, which keeps tests and stand-in detectors trivial.
    """

    def __call__(self, frame: np.ndarray) -> np.ndarray | None: ...


# --------------------------------------------------------------------------------------------- mappings

#: Official anchor rule on InsightFace's 106-point layout (index sets from the official pipeline). In
#: that layout each eyebrow has nine points, an upper arc of five and a lower arc of four; the anchors
#: are the means of the *upper* arcs ([43, 48, 49, 51, 50] on the image-left brow, 101..105 on the
#: image-right brow), and the nose anchor is the mean of a mid-bridge point (74), the two alar points
#: (77, 83) and the lower bridge just above the tip (86).
INSIGHTFACE_106_ANCHOR_INDICES: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] = (
    (43, 48, 49, 51, 50),
    (101, 102, 103, 104, 105),
    (74, 77, 83, 86),
)

#: The same anatomical points on MediaPipe's face mesh (468 points, 478 with the iris refinement; only
#: the first 468 are used, so either works):
#:
#: * image-left brow, upper arc outer -> inner: 70, 63, 105, 66, 107 (MediaPipe's "right eyebrow
#:   upper"; the lower arc 46, 53, 52, 65, 55 is deliberately not used, matching the 106-point rule);
#: * image-right brow, upper arc inner -> outer: 336, 296, 334, 293, 300 ("left eyebrow upper");
#: * nose: 195 (bridge, about halfway from between the eyes to below the nose, like 74), 4 (just above
#:   the tip, like 86), 98 and 327 (the alar corners at nostril height, like 77 and 83).
#:
#: The mesh is a different landmark model, so the anchors are anatomically equivalent, not identical:
#: expect crops a few pixels off the official ones, which the model tolerates (it sees detector noise
#: in training too), but not bit parity. Use :class:`InsightFaceDetector` for that.
MESH_ANCHOR_INDICES: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] = (
    (70, 63, 105, 66, 107),
    (336, 296, 334, 293, 300),
    (195, 4, 98, 327),
)


def _anchors(landmarks: np.ndarray, groups: Sequence[Sequence[int]]) -> np.ndarray:
    return np.round(np.stack([landmarks[list(group)].mean(axis=0) for group in groups]))


def anchors_from_106(landmarks: np.ndarray) -> np.ndarray:
    """The three anchors (3x2 float64) from InsightFace 106-point landmarks, exactly as the official
    pipeline computes them: landmarks rounded to whole pixels, group means, then rounded again."""
    lmk = np.asarray(landmarks, dtype=np.float64)
    if lmk.ndim != 2 or lmk.shape[0] != 106 or lmk.shape[1] < 2:
        raise ValueError(f"expected 106x2 landmarks, got shape {lmk.shape}")
    return _anchors(np.round(lmk[:, :2]), INSIGHTFACE_106_ANCHOR_INDICES)


def anchors_from_mesh(landmarks: np.ndarray) -> np.ndarray:
    """The three anchors (3x2 float64) from MediaPipe face-mesh points in frame pixels (468 or 478
    rows; extra columns such as z are ignored), rounded like the official anchors."""
    lmk = np.asarray(landmarks, dtype=np.float64)
    if lmk.ndim != 2 or lmk.shape[0] < 468 or lmk.shape[1] < 2:
        raise ValueError(f"expected 468 or 478 mesh points, got shape {lmk.shape}")
    return _anchors(lmk[:, :2], MESH_ANCHOR_INDICES)


def _check_frame(frame: np.ndarray) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"frame must be HxWx3 uint8 RGB, got shape {arr.shape} dtype {arr.dtype}")
    return np.ascontiguousarray(arr)


def _import_optional(module: str, extra: str, what: str) -> Any:
    """Import an optional dependency, turning its absence into an error that names the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModuleMissing(
            f"{what} needs the optional dependency {module.split('.')[0]!r}: "
            f"pip install 'latentsync-routes[{extra}]' ({exc})",
            module=module.split(".")[0],
            extra=extra,
        ) from exc


# --------------------------------------------------------------------------------------------- MediaPipe


class MediaPipeDetector:
    """Offline anchors from MediaPipe (models bundled in the ``mediapipe`` 0.10.x wheel), in two stages.

    1. MediaPipe's *full-range* face detector finds face boxes in the whole frame. The face mesh's own
       detector is short-range only and misses faces smaller than about a fifth of the frame, which
       are common in real footage.
    2. Each box (largest first, up to ``max_faces``) is cut out as a square twice the box size,
       resized to :attr:`CROP`, and meshed there (478 points). The mesh nearest the crop centre is
       mapped back to frame pixels.

    The largest mesh wins, mirroring the official "largest face" choice, and meshes whose bounding box
    is smaller than ``min_face_size`` (w, h) pixels are ignored, like the official detector ignores
    boxes under 50x80. Every frame is handled independently, as the official pipeline does.

    The MediaPipe graphs are not thread-safe: use one detector per thread. Call :meth:`close` (or use
    it as a context manager) to free them early.
    """

    #: Side of the square crop the mesh runs on; the mesh model itself works at 192x192.
    CROP = 256
    #: Crop side relative to the detector's box side.
    CROP_SCALE = 2.0

    def __init__(
        self,
        *,
        min_confidence: float = 0.5,
        max_faces: int = 4,
        min_face_size: tuple[int, int] = (50, 80),
    ) -> None:
        solutions = "mediapipe.python.solutions"
        mesh_mod = _import_optional(f"{solutions}.face_mesh", "faces", "MediaPipeDetector")
        det_mod = _import_optional(f"{solutions}.face_detection", "faces", "MediaPipeDetector")
        if not hasattr(mesh_mod, "FaceMesh") or not hasattr(det_mod, "FaceDetection"):
            raise ModuleMissing(
                "the installed mediapipe has no bundled face models; install mediapipe 0.10.x "
                "(pip install 'latentsync-routes[faces]')",
                module="mediapipe",
                extra="faces",
            )
        self._detection: Any = det_mod.FaceDetection(model_selection=1, min_detection_confidence=min_confidence)
        self._mesh: Any = mesh_mod.FaceMesh(
            static_image_mode=True,
            max_num_faces=2,
            refine_landmarks=True,
            min_detection_confidence=min_confidence,
        )
        self.max_faces = max_faces
        self.min_face_size = min_face_size

    def _boxes(self, img: np.ndarray) -> list[tuple[float, float, float]]:
        """Square regions ``(cx, cy, side)`` in frame pixels around each detected face, largest first."""
        height, width = img.shape[:2]
        result = self._detection.process(img)
        boxes = []
        for det in getattr(result, "detections", None) or []:
            rel = det.location_data.relative_bounding_box
            w, h = rel.width * width, rel.height * height
            if w <= 0 or h <= 0:
                continue
            cx, cy = (rel.xmin + rel.width / 2) * width, (rel.ymin + rel.height / 2) * height
            boxes.append((cx, cy, max(w, h) * self.CROP_SCALE))
        boxes.sort(key=lambda b: -b[2])
        return boxes[: self.max_faces]

    def _mesh_in(self, img: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray | None:
        """Mesh the square around ``(cx, cy)``; 478x2 points in frame pixel coordinates, or None."""
        size = max(int(round(side)), 8)
        x0, y0 = int(round(cx - size / 2)), int(round(cy - size / 2))
        height, width = img.shape[:2]
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + size, width), min(y0 + size, height)
        if sx1 <= sx0 or sy1 <= sy0:
            return None
        patch = cv2.copyMakeBorder(
            img[sy0:sy1, sx0:sx1],
            sy0 - y0,
            y0 + size - sy1,
            sx0 - x0,
            x0 + size - sx1,
            cv2.BORDER_CONSTANT,
            value=(0, 0, 0),
        )
        interp = cv2.INTER_AREA if size > self.CROP else cv2.INTER_LINEAR
        crop = np.ascontiguousarray(cv2.resize(patch, (self.CROP, self.CROP), interpolation=interp))
        faces = getattr(self._mesh.process(crop), "multi_face_landmarks", None) or []
        best: np.ndarray | None = None
        best_dist = np.inf
        for face in faces:
            rel = np.array([(p.x, p.y) for p in face.landmark], dtype=np.float64)
            dist = float(np.abs(rel.mean(axis=0) - 0.5).sum())
            if dist < best_dist:
                best, best_dist = rel, dist
        if best is None:
            return None
        # Normalised coordinates run from the left/top edge (0) to the right/bottom edge (1); convert
        # to pixel-centre coordinates of the frame.
        return best * size + np.array([x0, y0], dtype=np.float64) - 0.5

    def landmarks(self, frame: np.ndarray) -> np.ndarray | None:
        """Mesh points (478x2 float64, frame pixels) of the chosen face, or None."""
        if self._mesh is None or self._detection is None:
            raise RuntimeError("MediaPipeDetector is closed")
        img = _check_frame(frame)
        best: np.ndarray | None = None
        best_area = 0.0
        for cx, cy, side in self._boxes(img):
            pts = self._mesh_in(img, cx, cy, side)
            if pts is None:
                continue
            box_w, box_h = float(np.ptp(pts[:, 0])), float(np.ptp(pts[:, 1]))
            if box_w < self.min_face_size[0] or box_h < self.min_face_size[1]:
                continue
            if box_w * box_h > best_area:
                best, best_area = pts, box_w * box_h
        return best

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        pts = self.landmarks(frame)
        return None if pts is None else anchors_from_mesh(pts)

    def close(self) -> None:
        for attr in ("_mesh", "_detection"):
            graph = getattr(self, attr)
            if graph is not None:
                graph.close()
                setattr(self, attr, None)

    def __enter__(self) -> MediaPipeDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------- InsightFace

#: Official selection rule: minimum box width/height in pixels, allowed width/height ratio, min score.
INSIGHTFACE_MIN_WH: tuple[int, int] = (50, 80)
INSIGHTFACE_RATIO_RANGE: tuple[float, float] = (0.2, 1.5)
INSIGHTFACE_MIN_SCORE = 0.5


def select_face(faces: Sequence[Any], min_score: float = INSIGHTFACE_MIN_SCORE) -> Any | None:
    """The face the official pipeline would use: boxes (truncated to int) at least 50x80 with a
    width/height ratio in [0.2, 1.5] and a detection score of at least ``min_score``; the largest box
    wins, the first one on ties. ``faces`` are objects with ``bbox`` and ``det_score`` attributes."""
    chosen = None
    largest = 0
    for face in faces:
        x1, y1, x2, y2 = (int(v) for v in np.asarray(face.bbox)[:4])
        w, h = x2 - x1, y2 - y1
        if w < INSIGHTFACE_MIN_WH[0] or h < INSIGHTFACE_MIN_WH[1]:
            continue
        if not INSIGHTFACE_RATIO_RANGE[0] <= w / h <= INSIGHTFACE_RATIO_RANGE[1]:
            continue
        if float(face.det_score) < min_score:
            continue
        if w * h > largest:
            chosen, largest = face, w * h
    return chosen


class InsightFaceDetector:
    """The official detector: InsightFace ``buffalo_l`` (SCRFD-10G + 2d106det), 512x512 detection size.

    ``insightface`` (and ``onnxruntime``) are imported when the detector is built, and a clear
    :class:`~latentsync_routes.local.errors.ModuleMissing` names the extra when they are missing. The
    model pack is fetched by insightface on the first frame, into ``cache_dir/models/buffalo_l``, and
    reused from there afterwards. ``providers`` defaults to CUDA when onnxruntime offers it, else CPU.

    Frames are passed to InsightFace as they come (RGB), as the official pipeline does, so the
    landmarks match it even though InsightFace's own examples feed BGR.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        *,
        providers: Sequence[str] | None = None,
        det_size: tuple[int, int] = (512, 512),
        min_score: float = INSIGHTFACE_MIN_SCORE,
        model_pack: str = "buffalo_l",
    ) -> None:
        self._app_module = _import_optional("insightface.app", "insightface", "InsightFaceDetector")
        ort = _import_optional("onnxruntime", "insightface", "InsightFaceDetector")
        if providers is None:
            available = set(ort.get_available_providers())
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        self.providers = list(providers)
        self.cache_dir = Path(cache_dir).expanduser()
        self.det_size = det_size
        self.min_score = min_score
        self.model_pack = model_pack
        self._app: Any = None

    def _analysis(self) -> Any:
        if self._app is None:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            app = self._app_module.FaceAnalysis(
                name=self.model_pack,
                root=str(self.cache_dir),
                allowed_modules=["detection", "landmark_2d_106"],
                providers=self.providers,
            )
            ctx_id = 0 if "CUDAExecutionProvider" in self.providers else -1
            app.prepare(ctx_id=ctx_id, det_size=self.det_size)
            self._app = app
        return self._app

    def landmarks(self, frame: np.ndarray) -> np.ndarray | None:
        """The chosen face's 106 landmarks (106x2 float, frame pixels), or None."""
        faces = self._analysis().get(_check_frame(frame))
        face = select_face(faces, self.min_score)
        return None if face is None else np.asarray(face.landmark_2d_106, dtype=np.float64)

    def __call__(self, frame: np.ndarray) -> np.ndarray | None:
        lmk = self.landmarks(frame)
        return None if lmk is None else anchors_from_106(lmk)
