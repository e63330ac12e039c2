"""Salient points from a saliency map, and their bearing rays in the camera frame.

Conventions (shared with the rest of the package):

* Pixel coordinates are in the INPUT image: x right, y down, origin at the centre of the
  top-left pixel (the OpenCV / CameraInfo K convention).  The centre of cell ``i`` of an
  ``R``-cell map spanning ``W`` pixels is at ``(i + 0.5) * W / R - 0.5``.
* ``nms_radius`` is a fraction of the input image's diagonal, so one value means the same
  on every camera of a multi-camera node whatever its resolution (0.1 on 1280x720 = 147 px).
* Bearings are unit rays in the camera optical frame (REP 103: x right, y down, z forward).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

REFINEMENTS = ("gaussian", "parabola", "none")
DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")


@dataclass
class Peak:
    """One salient point: input-image pixels (top-left pixel centre = 0, 0), score in [0, 1]."""

    x: float
    y: float
    score: float


def _vertex(left: float, centre: float, right: float, refine: str) -> float:
    """Offset in (-0.5, 0.5) cells of the vertex of the curve through three samples.

    "gaussian" fits the parabola to the logarithms (exact for a Gaussian blob, the shape the
    models are trained on); it falls back to the plain parabola when a value is not positive.
    """
    if refine == "gaussian" and min(left, centre, right) > 0.0:
        left, centre, right = np.log(left), np.log(centre), np.log(right)
    denom = left - 2.0 * centre + right
    if not denom < 0.0:  # flat or not a maximum along this axis
        return 0.0
    return float(np.clip(0.5 * (left - right) / denom, -0.5, 0.5))


def find_peaks(saliency: np.ndarray, image_size: Tuple[int, int], top_k: int = 5,
               nms_radius: float = 0.1, min_score: float = 0.3,
               refine: str = "gaussian") -> List[Peak]:
    """Return up to ``top_k`` peaks of ``saliency`` in input-image pixels, best first.

    Args:
        saliency: (h, w) map in [0, 1] (usually the R x R engine output).
        image_size: (W, H) of the input image the map covers.
        top_k: maximum number of peaks.
        nms_radius: minimum distance between two returned peaks, as a fraction of the input
            image diagonal (0 disables suppression).
        min_score: peaks below this map value are dropped; a zero map has no peaks.
        refine: sub-pixel refinement, "gaussian" (parabola on log values), "parabola" or
            "none"; separable, one 3-point fit in x and one in y around the cell.

    A peak is a cell equal to the maximum of its 3x3 neighbourhood; the greedy NMS keeps the
    highest and drops every candidate closer than the radius to a kept one.
    """
    sal = np.asarray(saliency, dtype=np.float32)
    if sal.ndim != 2 or sal.size == 0:
        raise ValueError(f"find_peaks needs a non-empty 2-D map, got shape {sal.shape}")
    width, height = (float(v) for v in image_size)
    if not (width > 0 and height > 0):
        raise ValueError(f"find_peaks: image_size must be positive (W, H), got {image_size}")
    if top_k < 0 or not nms_radius >= 0 or refine not in REFINEMENTS:
        raise ValueError(f"find_peaks: invalid top_k={top_k}, nms_radius={nms_radius} or "
                         f"refine='{refine}' (one of {REFINEMENTS})")
    if top_k == 0:
        return []
    rows, cols = sal.shape
    local_max = cv2.dilate(sal, np.ones((3, 3), np.uint8))  # border counts as -inf
    ys, xs = np.nonzero((sal >= local_max) & (sal >= min_score) & (sal > 0.0))
    scores = sal[ys, xs]
    order = np.lexsort((xs, ys, -scores))  # best first; ties in raster order
    sx, sy = width / cols, height / rows
    radius2 = (nms_radius * float(np.hypot(width, height))) ** 2
    kept: List[Peak] = []
    for i in order:
        gy, gx = int(ys[i]), int(xs[i])
        c = float(sal[gy, gx])
        dx = dy = 0.0
        if refine != "none":
            if 0 < gx < cols - 1:
                dx = _vertex(float(sal[gy, gx - 1]), c, float(sal[gy, gx + 1]), refine)
            if 0 < gy < rows - 1:
                dy = _vertex(float(sal[gy - 1, gx]), c, float(sal[gy + 1, gx]), refine)
        x = (gx + dx + 0.5) * sx - 0.5
        y = (gy + dy + 0.5) * sy - 0.5
        if any((p.x - x) ** 2 + (p.y - y) ** 2 < radius2 for p in kept):
            continue
        kept.append(Peak(x=x, y=y, score=min(c, 1.0)))
        if len(kept) >= top_k:
            break
    return kept


def _camera_matrix(K) -> np.ndarray:
    k = np.asarray(K, dtype=np.float64)
    if k.size != 9:
        raise ValueError(f"camera matrix K must have 9 values (3x3), got {k.size}")
    k = k.reshape(3, 3)
    if not (np.isfinite(k).all() and k[0, 0] > 0 and k[1, 1] > 0):
        raise ValueError("camera matrix K needs finite values and positive fx, fy "
                         "(an uncalibrated CameraInfo has K = 0)")
    return k


def pixels_to_bearings(points_xy, K, D: Optional[Sequence[float]] = None,
                       distortion_model: Optional[str] = None) -> np.ndarray:
    """Return unit rays (N, 3) in the optical frame for pixels (N, 2) of the (unrectified) image.

    With all-zero or no ``D`` the pinhole model ``K`` alone is used.  Non-zero ``D`` is
    undone with ``cv2.undistortPoints`` for "plumb_bob" (k1 k2 p1 p2 k3) and
    "rational_polynomial" (8 coefficients), and ``cv2.fisheye.undistortPoints`` for
    "equidistant" (k1..k4); any other model with non-zero ``D`` is an error rather than a
    silently wrong ray.  Pixels must be in the image the CameraInfo describes.
    """
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    k = _camera_matrix(K)
    d = np.zeros(0) if D is None else np.asarray(D, dtype=np.float64).ravel()
    if not np.isfinite(d).all():
        # NaN/inf in D: OpenCV returns NaN rays (pinhole-style models) or finite but wrong
        # ones (fisheye); a wrong bearing is worse than none, so refuse the calibration.
        raise ValueError(f"distortion D must be finite, got {d.tolist()} (a broken "
                         "calibration file?)")
    if not np.isfinite(pts).all():
        raise ValueError("pixel coordinates must be finite")
    if d.size and np.any(d != 0.0):
        if distortion_model not in DISTORTION_MODELS:
            raise ValueError(f"distortion model '{distortion_model}' with non-zero D is not "
                             f"supported; supported: {', '.join(DISTORTION_MODELS)}")
        src = pts.reshape(-1, 1, 2)
        if distortion_model == "equidistant":
            if d.size < 4:
                raise ValueError(f"equidistant distortion needs 4 coefficients, got {d.size}")
            norm = cv2.fisheye.undistortPoints(src, k, d[:4])
        else:
            if d.size not in (4, 5, 8, 12, 14):
                raise ValueError(f"{distortion_model} distortion: {d.size} coefficients is not "
                                 "a length OpenCV accepts (4, 5, 8, 12 or 14)")
            norm = cv2.undistortPoints(src, k, d)
        xn, yn = norm[:, 0, 0], norm[:, 0, 1]
    else:
        yn = (pts[:, 1] - k[1, 2]) / k[1, 1]
        xn = (pts[:, 0] - k[0, 2] - k[0, 1] * yn) / k[0, 0]
    rays = np.stack([xn, yn, np.ones_like(xn)], axis=1)
    rays = rays / np.linalg.norm(rays, axis=1, keepdims=True)
    if not np.isfinite(rays).all():  # the last guard: a ray that is not finite never leaves
        raise ValueError("the calibration gives non-finite rays for these pixels "
                         "(K and D cannot be inverted there)")
    return rays


def pixel_to_bearing(x: float, y: float, K, D: Optional[Sequence[float]] = None,
                     distortion_model: Optional[str] = None) -> np.ndarray:
    """Return the unit ray (3,) in the optical frame for one pixel; see pixels_to_bearings."""
    return pixels_to_bearings([[x, y]], K, D, distortion_model)[0]
