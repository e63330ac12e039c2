"""Attention crops: the part of a frame around its strongest saliency peak, for a detector.

The paper's reason to exist is to let a drone spend scarce compute on what matters; a crop
of a fixed share of the frame, placed on the strongest peak, is what a downstream detector
can take instead of the whole frame.  This module holds the arithmetic, free of ROS, so the
node (``~/crop/image``, ``~/crop/camera_info``) and the coverage measurement
(bench/crop_coverage.py) share one rule:

* Size: ``area_fraction`` of the frame's area at ``aspect`` (width / height; default the
  frame's), rounded to whole pixels.  Where that aspect cannot fit the area inside the frame
  (a wide crop of a large share), the overflowing side becomes the frame's side and the other
  grows, so the area is kept and the aspect gives way.
* Place: centred on the point as closely as whole pixels allow, then shifted (never shrunk)
  to lie inside the frame when the point is near a border.
* Coordinates: input-image pixels, integers (x_offset, y_offset, width, height); the crop is
  ``image[y_offset:y_offset + height, x_offset:x_offset + width]``.  Points follow peaks.py
  (origin at the centre of the top-left pixel); ``Crop.contains`` takes the gaze files'
  corner-origin points (core/gaze.py), the other convention of the package.

CameraInfo of a crop: the convention of image_proc's ``crop_decimate`` (ros-perception/
image_pipeline, image_proc/src/crop_decimate.cpp, ``CropDecimateNode::imageCb``), read
there: the input CameraInfo is copied and only ``binning_x/y`` (0 read as 1) and ``roi`` change:
``roi.x_offset += offset_x * binning_x``, ``roi.y_offset += offset_y * binning_y``,
``roi.width = width * binning_x``, ``roi.height = height * binning_y``, and
``roi.do_rectify = true`` when the crop is not the whole image.  ``K``, ``P``, ``width`` and
``height`` stay those of the full calibration, as sensor_msgs/CameraInfo.msg defines them
("the image dimensions with which the camera was calibrated"; the ROI is "given in full
resolution (unbinned) image coordinates").  The principal-point shift is the consumer's:
image_geometry's ``PinholeCameraModel::fromCameraInfo`` (ros-perception/vision_opencv)
computes ``K(0,2) -= roi.x_offset``, ``K(1,2) -= roi.y_offset``, the same on ``P``, then
divides by the binning -- :func:`crop_intrinsics` here.  So a published crop CameraInfo must
NOT carry a shifted K or P as well: image_geometry would shift it twice.  (crop_non_zero, the
other image_proc crop, publishes no CameraInfo at all.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.peaks import find_peaks


class CropError(SkdError, ValueError):
    """A crop that cannot be computed: bad fraction, aspect, size, map or CameraInfo fields."""


@dataclass(frozen=True)
class Crop:
    """A rectangle of whole input-image pixels: ``image[y:y + height, x:x + width]``."""

    x_offset: int
    y_offset: int
    width: int
    height: int

    @property
    def area(self) -> int:
        """Pixels inside the crop."""
        return self.width * self.height

    def contains(self, points_xy) -> np.ndarray:
        """Boolean per point (N, 2): inside the crop, points with the gaze files' corner origin.

        A corner-origin point lies in pixel ``(floor(x), floor(y))`` (core/gaze.py); a peak of
        peaks.py (pixel-centre origin) is such a point after adding 0.5 to x and y.
        """
        pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        return ((pts[:, 0] >= self.x_offset) & (pts[:, 0] < self.x_offset + self.width)
                & (pts[:, 1] >= self.y_offset) & (pts[:, 1] < self.y_offset + self.height))


@dataclass(frozen=True)
class CropCameraInfo:
    """The fields of a crop's CameraInfo that differ from the input's; copy all others as is."""

    binning_x: int
    binning_y: int
    roi_x_offset: int
    roi_y_offset: int
    roi_width: int
    roi_height: int
    roi_do_rectify: bool


def _image_size(image_size) -> Tuple[int, int]:
    """(W, H) as positive integers, else CropError."""
    try:
        width, height = image_size
        ok = all(not isinstance(v, (str, bytes)) and float(v) == int(v) and int(v) > 0
                 for v in (width, height))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise CropError(f"image size must be two positive whole numbers (W, H), "
                        f"got {image_size!r}")
    return int(width), int(height)


def _half_up(value: float) -> int:
    """Round to the nearest integer, halves up (Python's round() goes to the even one)."""
    return int(math.floor(value + 0.5))


def crop_size(image_size, area_fraction: float,
              aspect: Optional[float] = None) -> Tuple[int, int]:
    """Return (width, height) in whole pixels of a crop of ``area_fraction`` of the frame.

    ``aspect`` is width / height (None: the frame's).  Each side is rounded to the nearest
    pixel (at least 1, at most the frame's), so the area is exact up to that rounding.
    """
    width, height = _image_size(image_size)
    try:
        fraction = float(area_fraction)
    except (TypeError, ValueError):
        raise CropError(f"area fraction must be a number in (0, 1], got {area_fraction!r}") \
            from None
    if not 0.0 < fraction <= 1.0:  # NaN fails this too
        raise CropError(f"area fraction must be in (0, 1], got {area_fraction!r}")
    if aspect is None:
        ratio = width / height
    else:
        try:
            ratio = float(aspect)
        except (TypeError, ValueError):
            raise CropError(f"aspect (width / height) must be a positive number, got "
                            f"{aspect!r}") from None
        if not (math.isfinite(ratio) and ratio > 0.0):
            raise CropError(f"aspect (width / height) must be finite and > 0, got {aspect!r}")
    area = fraction * width * height
    crop_h = math.sqrt(area / ratio)
    crop_w = ratio * crop_h
    if crop_w > width:     # too wide for the frame at this area: full width, taller crop
        crop_w, crop_h = float(width), area / width
    elif crop_h > height:  # too tall: full height, wider crop
        crop_w, crop_h = area / height, float(height)
    return (min(width, max(1, _half_up(crop_w))), min(height, max(1, _half_up(crop_h))))


def crop_around(point_xy: Sequence[float], image_size, area_fraction: float,
                aspect: Optional[float] = None) -> Crop:
    """Return the crop of :func:`crop_size` centred on ``point_xy``, shifted into the frame.

    ``point_xy`` is in input pixels with peaks.py's origin (centre of the top-left pixel), so
    a crop of ``w`` pixels starting at ``x`` has its centre at ``x + (w - 1) / 2``; the start
    is the nearest integer to ``px - (w - 1) / 2``, then moved (never shrunk) into
    ``[0, W - w]``.  A point inside the frame is always inside its crop.
    """
    width, height = _image_size(image_size)
    try:
        px, py = (float(v) for v in point_xy)
    except (TypeError, ValueError):
        raise CropError(f"crop centre must be two numbers (x, y), got {point_xy!r}") from None
    if not (math.isfinite(px) and math.isfinite(py)):
        raise CropError(f"crop centre must be finite, got ({px}, {py})")
    crop_w, crop_h = crop_size((width, height), area_fraction, aspect)
    x = min(max(_half_up(px - (crop_w - 1) / 2.0), 0), width - crop_w)
    y = min(max(_half_up(py - (crop_h - 1) / 2.0), 0), height - crop_h)
    return Crop(x_offset=x, y_offset=y, width=crop_w, height=crop_h)


def centre_crop(image_size, area_fraction: float, aspect: Optional[float] = None) -> Crop:
    """Return the crop a system without saliency would take: the same size, frame-centred."""
    width, height = _image_size(image_size)
    return crop_around(((width - 1) / 2.0, (height - 1) / 2.0), (width, height),
                       area_fraction, aspect)


def strongest_peak(saliency: np.ndarray, image_size) -> Optional[Tuple[float, float]]:
    """(x, y) in input pixels of the map's strongest peak, as the node finds peaks; None if none.

    Any map size (the engine's R x R): peaks.find_peaks maps cells to input pixels and
    refines them (its defaults, the node's).  A map with no positive value (the engine's
    flat-map answer) has no peak; a map that is not finite is refused.
    """
    sal = np.asarray(saliency, dtype=np.float32)
    if sal.ndim != 2 or sal.size == 0:
        raise CropError(f"saliency map must be a non-empty 2-D array, got shape {sal.shape}")
    if not np.isfinite(sal).all():
        raise CropError("saliency map holds NaN or inf: no peak to crop around")
    peaks = find_peaks(sal, _image_size(image_size), top_k=1, nms_radius=0.0, min_score=0.0)
    return (peaks[0].x, peaks[0].y) if peaks else None


def peak_crop(saliency: np.ndarray, image_size, area_fraction: float,
              aspect: Optional[float] = None) -> Optional[Crop]:
    """Return the crop around the map's strongest peak (module docstring); None if flat."""
    crop_size(image_size, area_fraction, aspect)  # bad options fail also on a flat map
    peak = strongest_peak(saliency, image_size)
    return None if peak is None else crop_around(peak, image_size, area_fraction, aspect)


def _counts(values, names: Sequence[str], what: str) -> Tuple[int, ...]:
    """Non-negative integers (uint32 CameraInfo fields), else CropError naming them."""
    try:
        out = tuple(int(v) for v in values)
        ok = len(out) == len(names) and all(o >= 0 and float(v) == o
                                            for o, v in zip(out, values))
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise CropError(f"{what} must be {len(names)} non-negative whole numbers "
                        f"({', '.join(names)}), got {values!r}")
    return out


def crop_camera_info(crop: Crop, image_size, binning: Sequence[int] = (0, 0),
                     roi: Sequence[int] = (0, 0, 0, 0),
                     do_rectify: bool = False) -> CropCameraInfo:
    """Return the CameraInfo fields of a crop of an image, as image_proc's crop_decimate sets.

    ``image_size`` is the (W, H) of the image that was cropped; ``binning`` (binning_x,
    binning_y), ``roi`` (x_offset, y_offset, width, height) and ``do_rectify`` are the input
    CameraInfo's.  Every other field -- header, width, height, distortion, K, R, P -- is
    copied unchanged (see the module docstring for why K and P are not shifted here).  A crop
    of the whole image is crop_decimate's no-op: the input's fields come back as they were.
    A crop reaching outside the image is refused: crop_decimate would have clipped it, and a
    published ROI must be the crop.
    """
    width, height = _image_size(image_size)
    given_bin = _counts(binning, ("binning_x", "binning_y"), "binning")
    given_roi = _counts(roi, ("x_offset", "y_offset", "width", "height"), "roi")
    if not (crop.width > 0 and crop.height > 0 and crop.x_offset >= 0 and crop.y_offset >= 0
            and crop.x_offset + crop.width <= width
            and crop.y_offset + crop.height <= height):
        raise CropError(f"crop {crop} does not lie inside the {width}x{height} image")
    if (crop.x_offset, crop.y_offset, crop.width, crop.height) == (0, 0, width, height):
        return CropCameraInfo(*given_bin, *given_roi, roi_do_rectify=bool(do_rectify))
    bin_x, bin_y = (max(b, 1) for b in given_bin)
    return CropCameraInfo(binning_x=bin_x, binning_y=bin_y,
                          roi_x_offset=given_roi[0] + crop.x_offset * bin_x,
                          roi_y_offset=given_roi[1] + crop.y_offset * bin_y,
                          roi_width=crop.width * bin_x, roi_height=crop.height * bin_y,
                          roi_do_rectify=True)


def crop_intrinsics(K, P, info: CropCameraInfo) -> Tuple[np.ndarray, np.ndarray]:
    """K (3x3) and P (3x4) of the cropped image's own pixels, as image_geometry derives them.

    From the full-calibration K and P and the crop's ROI and binning:
    ``K[0,2] -= roi.x_offset``, ``K[1,2] -= roi.y_offset``, the same on P, then fx, cx (and
    P's Tx) divided by binning_x, fy, cy (Ty) by binning_y.  For a consumer that reads K
    directly instead of through image_geometry, never for the published message itself.
    """
    k = np.asarray(K, dtype=np.float64)
    p = np.asarray(P, dtype=np.float64)
    if k.size != 9 or p.size != 12 or not (np.isfinite(k).all() and np.isfinite(p).all()):
        raise CropError(f"K and P must be 9 and 12 finite values, got {k.size} and {p.size}"
                        + ("" if k.size != 9 or p.size != 12 else " with NaN or inf"))
    k, p = k.reshape(3, 3).copy(), p.reshape(3, 4).copy()
    for m in (k, p):
        m[0, 2] -= info.roi_x_offset
        m[1, 2] -= info.roi_y_offset
    bin_x, bin_y = max(info.binning_x, 1), max(info.binning_y, 1)  # 0 means 1 (no binning)
    k[0, :] /= [bin_x, 1.0, bin_x]
    k[1, 1:] /= bin_y
    p[0, :] /= [bin_x, 1.0, bin_x, bin_x]
    p[1, 1:] /= bin_y
    return k, p
