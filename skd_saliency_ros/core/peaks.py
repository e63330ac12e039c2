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

from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.vectors import unit_vectors

REFINEMENTS = ("gaussian", "parabola", "none")
DISTORTION_MODELS = ("plumb_bob", "rational_polynomial", "equidistant")
#: iterate the undistortion until it stops moving (OpenCV's default: 5 steps, not enough)
UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 200, 1e-12)
#: a ray whose forward projection misses its pixel by more than this is refused
REPROJECTION_TOLERANCE_PX = 0.5
#: points checked between the optical axis and a ray for a fold of the distortion model
FOLD_SAMPLES = 100
#: the camera matrix of normalised image-plane points (K is applied by this module)
IDENTITY = np.eye(3)


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


class BearingError(SkdError, ValueError):
    """A calibration, or a pixel of it, that gives no trustworthy bearing ray.

    The node turns the message into its throttled "no bearings: ..." warning: a wrong ray is
    worse than none, so every doubt ends here rather than in a published ray.
    """


def _camera_matrix(K) -> np.ndarray:
    """K as a 3x3 array; refused unless finite with positive focal lengths."""
    k = np.asarray(K, dtype=np.float64)
    if k.size != 9:
        raise BearingError(f"camera matrix K must have 9 values (3x3), got {k.size}")
    k = k.reshape(3, 3)
    if not (np.isfinite(k).all() and k[0, 0] > 0 and k[1, 1] > 0):
        raise BearingError("camera matrix K needs finite values and positive fx, fy "
                           "(an uncalibrated CameraInfo has K = 0)")
    return k


def _distortion(D, distortion_model: Optional[str]) -> Tuple[np.ndarray, Optional[str]]:
    """(D, model) to undo, or (empty, None) for the plain pinhole model; refuses bad D."""
    d = np.zeros(0) if D is None else np.asarray(D, dtype=np.float64).ravel()
    if not np.isfinite(d).all():
        # NaN/inf in D: OpenCV returns NaN rays (pinhole-style models) or finite but wrong
        # ones (fisheye); a wrong bearing is worse than none, so refuse the calibration.
        raise BearingError(f"distortion D must be finite, got {d.tolist()} (a broken "
                           "calibration file?)")
    if not (d.size and np.any(d != 0.0)):
        return np.zeros(0), None
    if distortion_model not in DISTORTION_MODELS:
        raise BearingError(f"distortion model '{distortion_model}' with non-zero D is not "
                           f"supported; supported: {', '.join(DISTORTION_MODELS)}")
    if distortion_model == "equidistant":
        if d.size < 4:
            raise BearingError(f"equidistant distortion needs 4 coefficients, got {d.size}")
        return d[:4], distortion_model
    if d.size not in (4, 5, 8, 12, 14):
        raise BearingError(f"{distortion_model} distortion: {d.size} coefficients is not a "
                           "length OpenCV accepts (4, 5, 8, 12 or 14)")
    return d, distortion_model


def _pixels_to_plane(pts: np.ndarray, k: np.ndarray) -> np.ndarray:
    """K^-1 (skew included): pixels -> (distorted) normalised image-plane points."""
    yn = (pts[:, 1] - k[1, 2]) / k[1, 1]
    return np.stack([(pts[:, 0] - k[0, 2] - k[0, 1] * yn) / k[0, 0], yn], axis=1)


def _plane_to_pixels(xy: np.ndarray, k: np.ndarray) -> np.ndarray:
    """K (skew included): normalised image-plane points -> pixels; the inverse of the above."""
    return np.stack([k[0, 0] * xy[:, 0] + k[0, 1] * xy[:, 1] + k[0, 2],
                     k[1, 1] * xy[:, 1] + k[1, 2]], axis=1)


def _undistort(xy: np.ndarray, d: np.ndarray, model: str) -> np.ndarray:
    """Invert the distortion of normalised points, iterating to convergence.

    OpenCV's default (5 iterations for plumb_bob / rational_polynomial) stops far from the
    answer under strong distortion: 3 degrees off at the corners of a 1280x720, f = 500
    camera.  Where the iteration cannot converge, the reprojection check refuses the ray.
    """
    src = xy.reshape(-1, 1, 2)
    if model == "equidistant":
        out = cv2.fisheye.undistortPoints(src, IDENTITY, d, criteria=UNDISTORT_CRITERIA)
    else:
        out = cv2.undistortPoints(src, IDENTITY, d, criteria=UNDISTORT_CRITERIA)
    return out.reshape(-1, 2)


def _distort(rays: np.ndarray, d: np.ndarray, model: Optional[str]) -> np.ndarray:
    """Apply the forward model: rays -> distorted normalised image-plane points (OpenCV)."""
    if model is None:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return rays[:, :2] / rays[:, 2:]
    zero = np.zeros(3)
    if model == "equidistant":
        out, _ = cv2.fisheye.projectPoints(rays.reshape(-1, 1, 3), zero, zero, IDENTITY, d)
    else:
        out, _ = cv2.projectPoints(rays, zero, zero, IDENTITY, d)
    return out.reshape(-1, 2)


def _check_reprojection(rays: np.ndarray, pts: np.ndarray, k: np.ndarray, d: np.ndarray,
                        model: Optional[str], tolerance_px: float) -> None:
    """Refuse the rays unless each projects back onto its pixel within ``tolerance_px``.

    The verification that makes a silent failure of the inversion impossible: outside the
    range where the distortion polynomial is monotonic there is no ray for a pixel, and
    whatever an iteration stopped at would be a wrong bearing.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        errors = np.hypot(*(_plane_to_pixels(_distort(rays, d, model), k) - pts).T)
    bad = np.flatnonzero(~(errors <= tolerance_px))  # NaN counts as bad
    if bad.size:
        i = int(bad[0])
        raise BearingError(
            f"the calibration cannot be inverted at pixel ({pts[i, 0]:.1f}, {pts[i, 1]:.1f}): "
            f"its ray reprojects {errors[i]:.3g} px away (tolerance {tolerance_px:g} px; "
            f"{bad.size} of {len(pts)} pixels), outside the range where D is valid?")


def _check_one_to_one(rays: np.ndarray, pts: np.ndarray, d: np.ndarray,
                      model: Optional[str]) -> None:
    """Refuse rays beyond a fold of the distortion model, where a pixel has two rays.

    Past its valid range a distortion polynomial turns back (the distorted radius stops
    growing with the angle), and further out it can grow again: a corner pixel then
    reprojects exactly from a ray at 75 degrees that the lens never saw.  So the distorted
    radius must grow all along the way from the optical axis out to the ray.
    """
    if model is None:
        return
    t = np.linspace(0.0, 1.0, FOLD_SAMPLES + 1)
    path = np.concatenate([rays[:, None, :2] * t[None, :, None],
                           np.broadcast_to(rays[:, None, 2:], (len(rays), len(t), 1))], axis=2)
    with np.errstate(invalid="ignore", over="ignore"):
        radius = np.hypot(*_distort(path.reshape(-1, 3), d, model).reshape(
            len(rays), len(t), 2).transpose(2, 0, 1))
        grows = np.all(np.diff(radius, axis=1) > 0.0, axis=1)
    on_axis = ~np.any(rays[:, :2], axis=1)  # a zero-length path: nothing can fold there
    bad = np.flatnonzero(~grows & ~on_axis)
    if bad.size:
        i = int(bad[0])
        raise BearingError(
            f"the calibration folds over at pixel ({pts[i, 0]:.1f}, {pts[i, 1]:.1f}): its ray "
            f"({np.degrees(np.arccos(min(1.0, rays[i, 2]))):.1f} deg off axis) lies beyond "
            f"the radius where the {model} distortion stops growing, outside the range where "
            f"D is valid ({bad.size} of {len(pts)} pixels)")


def pixels_to_bearings(points_xy, K, D: Optional[Sequence[float]] = None,
                       distortion_model: Optional[str] = None,
                       tolerance_px: float = REPROJECTION_TOLERANCE_PX) -> np.ndarray:
    """Return unit rays (N, 3) in the optical frame for pixels (N, 2) of the (unrectified) image.

    With all-zero or no ``D`` the pinhole model ``K`` alone is used.  Non-zero ``D`` is
    undone with ``cv2.undistortPoints`` for "plumb_bob" (k1 k2 p1 p2 k3) and
    "rational_polynomial" (8 coefficients), and ``cv2.fisheye.undistortPoints`` for
    "equidistant" (k1..k4), iterated to convergence; any other model with non-zero ``D`` is
    an error rather than a silently wrong ray.  Every ray is then projected back with the
    forward model and must land within ``tolerance_px`` of its pixel, lie inside the fold of
    the distortion (the pixel's only ray) and be a unit vector, otherwise ``BearingError``
    (all or nothing: the rays keep the order of the pixels).  The calibration is checked
    also for zero pixels.  Pixels must be in the image the CameraInfo describes.
    """
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    k = _camera_matrix(K)
    d, model = _distortion(D, distortion_model)
    if not np.isfinite(pts).all():
        raise BearingError("pixel coordinates must be finite")
    if not len(pts):
        return np.zeros((0, 3))
    with np.errstate(over="ignore"):
        xy = _pixels_to_plane(pts, k)
        if model is not None and np.isfinite(xy).all():
            xy = _undistort(xy, d, model)
    if not np.isfinite(xy).all():
        raise BearingError("the calibration gives non-finite rays for these pixels "
                           "(K and D cannot be inverted there)")
    rays = unit_vectors(np.column_stack([xy, np.ones(len(xy))]), 3, "bearing ray",
                        BearingError)
    _check_reprojection(rays, pts, k, d, model, tolerance_px)
    _check_one_to_one(rays, pts, d, model)
    return rays


def pixel_to_bearing(x: float, y: float, K, D: Optional[Sequence[float]] = None,
                     distortion_model: Optional[str] = None) -> np.ndarray:
    """Return the unit ray (3,) in the optical frame for one pixel; see pixels_to_bearings."""
    return pixels_to_bearings([[x, y]], K, D, distortion_model)[0]
