"""Face alignment and restore for the local route: the similarity warp to the face crop and back.

LatentSync works on a fixed, squashed face crop: three anchors (the two eyebrow centres and the nose
centre, in frame pixels) are fitted to a template with a similarity transform, the frame is warped to a
``(75·r) × (100·r)`` crop (``r = resolution / 256 · 2.8``) and that crop is resized to ``resolution²``.
After generation the face goes back the other way and is blended into the frame through a feathered mask.

Everything here follows the official fp32 semantics step by step, because the model was trained on crops
made exactly this way and because users compare our output with the official one frame by frame:

* the transform fit runs in float32 torch (centre, divide by the global unbiased std, SVD, reflection fix)
  and adds the exponentially smoothed bias of the third anchor that the official code adds;
* the warps are bilinear ``grid_sample`` with ``align_corners=True`` in normalised coordinates, built the
  way the official warp builds them, with the grey fill *blended* by the warped coverage.
  ``cv2.warpAffine`` is deliberately not used: its fixed-point weights differ by several grey levels;
* float-to-uint8 conversions truncate, as the official ones do.

Nothing in this module imports mediapipe or any detector; see :mod:`latentsync_routes.local.faces`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TypeAlias, cast

import cv2
import numpy as np
import torch
import torch.nn.functional as F

ArrayLike: TypeAlias = np.ndarray | torch.Tensor

#: Template for the three anchors at ``r = 1``: image-left eyebrow, image-right eyebrow, nose centre.
BASE_TEMPLATE: tuple[tuple[float, float], ...] = ((17.0, 20.0), (58.0, 20.0), (37.5, 40.0))
#: Crop size (width, height) at ``r = 1``.
BASE_CROP_WH: tuple[int, int] = (75, 100)
#: Grey level the align warp fills outside the frame with (also used, in [-1, 1] units, on restore).
FILL_VALUE = 127.0
#: Weights of the exponential smoothing of the anchor bias: previous, current.
BIAS_KEEP = 0.2
BIAS_NEW = 0.8
#: Large value that pads the 2x2 erosion so the border never wins the minimum.
_ERODE_PAD = 1e4


def crop_ratio(resolution: int) -> float:
    """Scale from the 256-pixel base template to ``resolution`` (2.8 at 256, 5.6 at 512)."""
    return resolution / 256 * 2.8


def crop_size(resolution: int) -> tuple[int, int]:
    """Size ``(width, height)`` of the warped crop before the square resize: (210, 280) at 256."""
    ratio = crop_ratio(resolution)
    return int(BASE_CROP_WH[0] * ratio), int(BASE_CROP_WH[1] * ratio)


def face_template(resolution: int) -> np.ndarray:
    """Target positions (3x2, float64, crop pixels) of the three anchors at ``resolution``."""
    return np.asarray(BASE_TEMPLATE, dtype=np.float64) * crop_ratio(resolution)


# --------------------------------------------------------------------------------------------- inputs


def _frame_hwc_u8(frame: ArrayLike) -> np.ndarray:
    """The frame as a contiguous HxWx3 uint8 numpy array (torch tensors are moved to the CPU)."""
    arr = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"frame must be HxWx3 RGB, got shape {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        raise ValueError(f"frame must be uint8, got {arr.dtype}")
    if not arr.flags.writeable:  # torch.from_numpy warns on read-only buffers (decoded/mapped frames)
        arr = arr.copy()
    return np.ascontiguousarray(arr)


def _as_tensor(value: ArrayLike) -> torch.Tensor:
    """A CPU tensor view of a numpy array or tensor (no copy where avoidable)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    arr = np.asarray(value)
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def _points_f32(points: ArrayLike) -> torch.Tensor:
    """The three anchors as a 3x2 float32 tensor (the official fit runs in float32)."""
    pts = _as_tensor(points)
    if tuple(pts.shape) != (3, 2):
        raise ValueError(f"points must be 3x2 (x, y) anchors, got shape {tuple(pts.shape)}")
    return pts.to(torch.float32)


def _matrix_f32(matrix: ArrayLike) -> torch.Tensor:
    """A 2x3 affine matrix as a float32 tensor; a leading batch axis of 1 is accepted."""
    m = _as_tensor(matrix)
    if tuple(m.shape) == (1, 2, 3):
        m = m[0]
    if tuple(m.shape) != (2, 3):
        raise ValueError(f"matrix must be 2x3, got shape {tuple(m.shape)}")
    return m.to(torch.float32)


def _to_float_chw(frame_hwc: np.ndarray) -> torch.Tensor:
    """uint8 HWC numpy -> float32 1xCxHxW tensor."""
    return torch.from_numpy(frame_hwc).permute(2, 0, 1).unsqueeze(0).to(torch.float32)


def _truncate_u8(values: torch.Tensor) -> np.ndarray:
    """Float -> uint8 by truncation (what ``astype``/``.to(uint8)`` do), safe for tiny negatives."""
    return values.clamp(0.0, 255.0).to(torch.uint8).numpy()


# --------------------------------------------------------------------------------------------- fit


def fit_similarity(points: ArrayLike, template: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares similarity mapping ``points`` onto ``template``, and the raw anchor bias.

    Returns the unsmoothed 2x3 float32 matrix and the float32 bias ``tmpl_norm[2] - pts_norm[2]`` (the
    nose anchor's residual in normalised units) that the smoothing feeds on. Both point sets are centred
    and divided by their global unbiased standard deviation before the SVD, exactly as the official fit
    does, so the float32 rounding matches it too.
    """
    src = _points_f32(points)
    dst = _points_f32(template)
    c_src = src.mean(dim=0)
    c_dst = dst.mean(dim=0)
    src_c = src - c_src
    dst_c = dst - c_dst
    s_src = torch.std(src_c)
    s_dst = torch.std(dst_c)
    src_n = src_c / s_src
    dst_n = dst_c / s_dst
    cov = src_n.T @ dst_n
    u, _, vh = torch.linalg.svd(cov, full_matrices=False)
    v = vh.mH.clone()
    rot = v @ u.T
    if torch.det(rot) < 0:  # a reflection fits better; force a proper rotation
        v[:, -1] = -v[:, -1]
        rot = v @ u.T
    scale = s_dst / s_src
    linear = scale * rot
    trans = c_dst.reshape(2, 1) - scale * (rot @ c_src.reshape(2, 1))
    matrix = torch.cat((linear, trans), dim=1)
    bias = dst_n[2] - src_n[2]
    return matrix, bias


# --------------------------------------------------------------------------------------------- warps


def _pixel_to_unit(height: int, width: int) -> torch.Tensor:
    """1x3x3 float32 map from pixel coordinates to [-1, 1] (align_corners=True convention)."""
    mat = torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0]], dtype=torch.float32)
    mat[0, 0] = mat[0, 0] * 2.0 / (1e-14 if width == 1 else width - 1.0)
    mat[1, 1] = mat[1, 1] * 2.0 / (1e-14 if height == 1 else height - 1.0)
    return mat.unsqueeze(0)


def _homography(matrix: torch.Tensor) -> torch.Tensor:
    """2x3 -> 1x3x3 by appending the row (0, 0, 1)."""
    out = F.pad(matrix.reshape(1, 2, 3), [0, 0, 0, 1], "constant", value=0.0)
    out[..., -1, -1] += 1.0
    return out


def invert_affine(matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of a 2x3 affine matrix (float32, through the 3x3 homography)."""
    return cast("torch.Tensor", torch.linalg.inv(_homography(matrix))[0, :2, :3])


def _sampling_grid(matrix: torch.Tensor, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> torch.Tensor:
    """``grid_sample`` grid (1xHxWx2) reading, for each destination pixel, the source pixel ``matrix``
    sends there. ``matrix`` maps source pixels to destination pixels; the normalisation and inversion
    are done in the same float32 order as the official warp so the grid matches it bit for bit."""
    src_unit = _pixel_to_unit(*src_hw)
    dst_unit = _pixel_to_unit(*dst_hw)
    unit_fwd = dst_unit @ (_homography(matrix) @ torch.linalg.inv(src_unit))
    unit_back = torch.linalg.inv(unit_fwd)
    return F.affine_grid(unit_back[:, :2, :], [1, 1, dst_hw[0], dst_hw[1]], align_corners=True)


def _sample(src: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def warp_affine(
    src: torch.Tensor, matrix: torch.Tensor, dst_hw: tuple[int, int], fill: float | None = None
) -> torch.Tensor:
    """Bilinear warp of ``src`` (1xCxHxW float32) by the pixel-space ``matrix`` (source -> destination).

    Outside the source the result is 0, or, with ``fill``, ``fill`` blended in proportion to how much of
    each bilinear footprint fell outside (``warp(src) + (1 - warp(ones)) * fill``), which is how the
    official crop gets its soft grey border.
    """
    grid = _sampling_grid(matrix, (src.shape[-2], src.shape[-1]), dst_hw)
    out = _sample(src, grid)
    if fill is not None:
        coverage = _sample(torch.ones_like(src[:, :1]), grid)
        out = out + (1 - coverage) * fill
    return out


def _erode_2x2(mask: torch.Tensor) -> torch.Tensor:
    """Minimum over each pixel and its up/left/up-left neighbours (a 2x2 erosion anchored at (1, 1));
    the padding is large so the frame border itself does not erode the mask."""
    padded = F.pad(mask, [1, 0, 1, 0], mode="constant", value=_ERODE_PAD)
    windows = padded.unfold(2, 2, 1).unfold(3, 2, 1)
    return windows.amin(dim=(-2, -1))


def _gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """Normalised 1-D Gaussian (float32) of odd ``size`` centred on ``size // 2``."""
    sig = torch.tensor([[sigma]], dtype=torch.float32)
    x = torch.arange(size, dtype=torch.float32) - float(size // 2)
    gauss = torch.exp(-x.pow(2.0) / (2 * sig.pow(2.0)))
    return gauss / gauss.sum(-1, keepdim=True)


def _blur(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Separable Gaussian blur (rows, then columns) with reflect padding and OpenCV's default sigma
    for the kernel size, ``0.3·((k − 1)·0.5 − 1) + 0.8``."""
    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    kernel = _gaussian_kernel(size, sigma)
    half = (size - 1) // 2
    rest = size - 1 - half
    out = F.conv2d(F.pad(mask, [half, rest, 0, 0], mode="reflect"), kernel.reshape(1, 1, 1, size))
    return F.conv2d(F.pad(out, [0, 0, half, rest], mode="reflect"), kernel.reshape(1, 1, size, 1))


def _restore_roi(
    inv: torch.Tensor, crop_hw: tuple[int, int], frame_hw: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """Frame rows/cols ``(y0, y1, x0, x1)`` that the feathered paste can touch, or None.

    The pasted footprint lies inside the crop's bilinear reach mapped into the frame. The margin
    around it is at least the largest possible feather radius plus a few pixels, so inside this window
    the erosion and the reflect-padded blur see exactly the zeros a whole-frame computation would see;
    restricting the work to it changes no output value but saves most of the time on large frames.
    """
    h, w = crop_hw
    # Bilinear sampling reads a crop pixel for source coordinates in (-1, w) x (-1, h).
    corners = np.array([[-1.0, -1.0, 1.0], [w, -1.0, 1.0], [-1.0, h, 1.0], [w, h, 1.0]])
    mapped = corners @ inv.double().numpy().T
    lo = np.floor(mapped.min(axis=0)) - 2
    hi = np.ceil(mapped.max(axis=0)) + 2
    box_w, box_h = float(hi[0] - lo[0]), float(hi[1] - lo[1])
    margin = int(math.sqrt(max(box_w, 0.0) * max(box_h, 0.0))) // 20 + 4
    x0 = int(max(lo[0] - margin, 0))
    y0 = int(max(lo[1] - margin, 0))
    x1 = int(min(hi[0] + margin + 1, frame_hw[1]))
    y1 = int(min(hi[1] + margin + 1, frame_hw[0]))
    if x1 <= x0 or y1 <= y0:
        return None
    return y0, y1, x0, x1


# --------------------------------------------------------------------------------------------- masks


def load_mask(source: bytes | str | Path, resolution: int) -> np.ndarray:
    """The model's fixed mouth mask at ``resolution``: (R, R) uint8, 255 = keep, 0 = regenerate.

    ``source`` is the official ``mask.png`` (bytes or a path). It is decoded, resized with Lanczos-4 as
    the official loader does (identity at 256; at 512 this yields intermediate values, including
    clipped ringing, that the model has always seen) and one channel is returned, since all three are
    equal. Divide by 255 (:func:`mask_to_float`) for the float mask the pipeline multiplies with.
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("mask image could not be decoded (expected a PNG)")
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    resized = cv2.resize(rgb, (resolution, resolution), interpolation=cv2.INTER_LANCZOS4)
    return np.ascontiguousarray(resized[..., 0])


def mask_to_float(mask_u8: np.ndarray) -> np.ndarray:
    """(R, R) uint8 mask -> (3, R, R) float64 in [0, 1], the form the official pipeline uses."""
    return np.repeat((mask_u8.astype(np.float64) / 255.0)[None], 3, axis=0)


# --------------------------------------------------------------------------------------------- aligner


class FaceAligner:
    """Warps faces to the model's crop and pastes generated faces back, for one video.

    The transform fit is smoothed across calls (the anchor bias is an exponential moving average), so
    use one aligner per video, feed frames in order, and make a new one (or call :meth:`reset`) for the
    next video. Not thread-safe for the same reason.
    """

    def __init__(self, resolution: int = 256) -> None:
        if resolution <= 0 or resolution % 8:
            raise ValueError(f"resolution must be a positive multiple of 8, got {resolution}")
        self.resolution = resolution
        self.crop_wh = crop_size(resolution)
        self.template = face_template(resolution)
        self._bias: torch.Tensor | None = None

    def reset(self) -> None:
        """Forget the smoothing state (start of a new video)."""
        self._bias = None

    @property
    def bias(self) -> np.ndarray | None:
        """Current smoothed anchor bias (2,), or None before the first frame; for diagnostics."""
        return None if self._bias is None else self._bias.numpy().copy()

    def transform(self, points: ArrayLike, smooth: bool = True) -> np.ndarray:
        """2x3 float32 matrix (frame -> crop pixels) for the anchors of the next frame.

        With ``smooth`` (the default, as in the official pipeline) the nose-anchor bias, averaged
        ``0.2·previous + 0.8·current``, is added to the translation and the state advances; this damps
        frame-to-frame jitter of the crop.
        """
        matrix, bias = fit_similarity(points, self.template)
        if smooth:
            if self._bias is not None:
                bias = self._bias * BIAS_KEEP + bias * BIAS_NEW
            self._bias = bias
            matrix[:, 2] = matrix[:, 2] + bias
        return matrix.numpy()

    def warp_crop(self, frame: ArrayLike, matrix: ArrayLike) -> np.ndarray:
        """The un-resized crop (h, w, 3) uint8 for ``matrix``: bilinear, grey-127 blended fill,
        truncated to uint8."""
        img = _to_float_chw(_frame_hwc_u8(frame))
        w, h = self.crop_wh
        crop = warp_affine(img, _matrix_f32(matrix), (h, w), fill=FILL_VALUE)
        return np.ascontiguousarray(_truncate_u8(crop[0]).transpose(1, 2, 0))

    def align(self, frame: ArrayLike, points: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Aligned face (3, R, R) uint8 and its 2x3 float32 matrix (frame -> crop pixels).

        ``points`` are the three anchors (image-left eyebrow, image-right eyebrow, nose), already
        rounded the way the detectors here return them. The crop is squashed to R x R with Lanczos-4,
        a non-uniform resize (210x280 -> 256x256), which is what the model expects.
        """
        matrix = self.transform(points, smooth=True)
        return self.warp_face(frame, matrix), matrix

    def warp_face(self, frame: ArrayLike, matrix: ArrayLike) -> np.ndarray:
        """The aligned face (3, R, R) uint8 for a matrix already fitted, smoothing state untouched.

        A frame seen again (a looped video, a segment run elsewhere) gets the face :meth:`align` gave it
        the first time, without advancing the smoothing as a second :meth:`align` would.
        """
        crop = self.warp_crop(frame, matrix)
        face = cv2.resize(crop, (self.resolution, self.resolution), interpolation=cv2.INTER_LANCZOS4)
        return np.ascontiguousarray(face.transpose(2, 0, 1))

    def restore(self, frame: ArrayLike, face_pm1: ArrayLike, matrix: ArrayLike) -> np.ndarray:
        """Paste a generated face (3, R, R) in [-1, 1] back into ``frame``; returns HxWx3 uint8.

        The face is resized back to the crop size (bicubic, antialiased), warped into the frame with the
        inverse matrix, and blended through a feathered mask: the warped crop footprint, eroded 2x2,
        then eroded by ``2·w_edge`` and blurred with a ``2·w_edge + 1`` Gaussian, where
        ``w_edge = int(sqrt(area)) // 20``, so the seam fades over a width proportional to the face. The
        blend truncates to uint8 like the official one. Pixels the mask does not reach are returned
        unchanged.
        """
        base = _frame_hwc_u8(frame)
        height, width = base.shape[:2]
        m = _matrix_f32(matrix)
        face = _as_tensor(face_pm1)
        if face.ndim != 3 or face.shape[0] != 3:
            raise ValueError(f"face must be 3xRxR, got shape {tuple(face.shape)}")
        w_crop, h_crop = self.crop_wh
        face = F.interpolate(
            face.to(torch.float32).unsqueeze(0),
            size=(h_crop, w_crop),
            mode="bicubic",
            align_corners=False,
            antialias=True,
        )
        inv = invert_affine(m)
        roi = _restore_roi(inv, (h_crop, w_crop), (height, width))
        out = base.copy()
        if roi is None:  # the face lies entirely outside the frame
            return cast("np.ndarray", out)
        y0, y1, x0, x1 = roi
        # The grid is built for the whole frame and then cut, so every sampled value is the one a
        # whole-frame warp gives; everything outside the ROI has a zero mask and stays as it was.
        grid = _sampling_grid(inv, (h_crop, w_crop), (height, width))[:, y0:y1, x0:x1]
        back = _sample(face, grid)
        back = back + (1 - _sample(torch.ones_like(face[:, :1]), grid)) * FILL_VALUE
        back = (back[0] / 2 + 0.5).clamp(0, 1) * 255

        footprint = _erode_2x2(_sample(torch.ones((1, 1, h_crop, w_crop), dtype=torch.float32), grid))
        area = torch.sum(footprint.float())
        if float(area) == 0.0:  # only the margin reaches into the frame: nothing to paste
            return cast("np.ndarray", out)
        pasted = footprint[0] * back
        w_edge = int(area**0.5) // 20
        erode = w_edge * 2
        core = cv2.erode(footprint[0, 0].numpy(), np.ones((erode, erode), np.uint8))
        soft = _blur(torch.from_numpy(core)[None, None], w_edge * 2 + 1)[0]

        img = torch.from_numpy(base[y0:y1, x0:x1]).permute(2, 0, 1).to(torch.float32)
        blended = soft * pasted + (1 - soft) * img
        out[y0:y1, x0:x1] = _truncate_u8(blended).transpose(1, 2, 0)
        return cast("np.ndarray", out)
