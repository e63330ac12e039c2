"""Model input and output conventions, written once: resizing, frame pairing, normalisation.

The node (through SaliencyEngine), offline replay, training validation, the evaluate step,
the metrics and the teachers all call these, so they cannot drift apart.  Plain numpy and
OpenCV, no torch, so the ROS layer can shape maps without loading a model runtime:

* ``resize_area``: a frame down to the model's R x R (or H x W, core.input_size) by area
  averaging (each cell is the mean of the pixels it covers, so small aerial targets are not
  aliased away);
* ``upsample``: an R x R map up to an image size, bilinearly, on the pixel-centre
  convention of ``core.peaks``;
* ``fill_pair``: the two-stream input is frame t (channels 0-2) and the frame it is paired
  with (channels 3-5: the previous frame, or frame t itself after a reset), RGB in [0, 1];
* ``normalise_maps`` / ``minmax``: min-max to [0, 1] per map; a map whose range is below
  ``FLAT_RELATIVE_RANGE`` of its magnitude (or that holds NaN) is flat and becomes all zeros,
  because stretching float noise to [0, 1] would invent peaks.
"""

from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np

#: A map whose max - min is below this fraction of its magnitude counts as constant.
FLAT_RELATIVE_RANGE = 1e-6


def normalise_maps(raw: np.ndarray) -> np.ndarray:
    """Min-max normalise each map of a (B, h, w) stack to [0, 1]; flat maps become zeros.

    float64 input stays float64 (the metrics' precision); anything else becomes float32.
    """
    raw = np.asarray(raw)
    raw = raw if raw.dtype == np.float64 else raw.astype(np.float32)
    flat = raw.reshape(raw.shape[0], -1)
    lo = flat.min(axis=1)
    hi = flat.max(axis=1)
    span = hi - lo
    scale = FLAT_RELATIVE_RANGE * np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi)))
    flat_maps = ~(span > scale)  # also catches NaN
    shape = (-1,) + (1,) * (raw.ndim - 1)
    out = (raw - lo.reshape(shape)) / np.where(flat_maps, 1.0, span).reshape(shape)
    out[flat_maps] = 0.0
    return np.clip(out, 0.0, 1.0, out=out)


def minmax(saliency: np.ndarray) -> np.ndarray:
    """Min-max normalise one map with the rule of ``normalise_maps``."""
    saliency = np.asarray(saliency)
    return normalise_maps(saliency[None])[0]


def fill_pair(out: np.ndarray, frame: np.ndarray, paired: Optional[np.ndarray]) -> np.ndarray:
    """Write one model input into ``out`` (C, R, R) float32 from (R, R, 3) uint8 frames.

    Channels 0-2: ``frame`` / 255; channels 3-5 (two-stream models): ``paired`` / 255, the
    frame it is paired with.  ``paired`` is ignored for a 3-channel (spatial) input.
    """
    np.divide(frame.transpose(2, 0, 1), np.float32(255.0), out=out[0:3])
    if out.shape[0] == 6:
        if paired is None:
            raise ValueError("a two-stream input needs the paired frame")
        np.divide(paired.transpose(2, 0, 1), np.float32(255.0), out=out[3:6])
    return out


def resize_area(frame: np.ndarray, size) -> np.ndarray:
    """Resize an (H, W, C) uint8 frame to the model's input size with area averaging.

    ``size``: R (R x R) or (height, width) (an ``input_size.InputSize``).  The whole frame is
    resized (anisotropically when its aspect differs from the model's), never cropped: the
    way every training frame was made.

    OpenCV's exact-area path for a non-integer ratio (720 -> 64) costs ~3 ms on a 720p
    frame, its integer-ratio path a fraction of that.  Area averaging is separable, so when
    W is a multiple of the output width (1280, 1920, 640 for 64) the width is reduced first
    by the integer path and the few remaining rows by the exact one: ~2-3x faster, and equal
    to a single INTER_AREA call up to one grey level of intermediate rounding.
    """
    out_h, out_w = (int(size), int(size)) if np.isscalar(size) else (int(v) for v in size)
    height, width = frame.shape[:2]
    if height == out_h and width == out_w:
        return np.array(frame, copy=True)
    if width % out_w == 0 and width > out_w and height > out_h:
        narrow = cv2.resize(frame, (out_w, height), interpolation=cv2.INTER_AREA)
        return cv2.resize(narrow, (out_w, out_h), interpolation=cv2.INTER_AREA)
    return cv2.resize(frame, (out_w, out_h), interpolation=cv2.INTER_AREA)


def upsample(saliency: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Resize a model-sized map to ``size`` = (H, W) bilinearly; float32 in [0, 1].

    Bilinear resizing uses the same pixel-centre convention as peaks.py, so a peak found on
    the R x R map lands on the same pixel of the upsampled map.
    """
    height, width = (int(v) for v in size)
    if height <= 0 or width <= 0:
        raise ValueError(f"upsample: size must be positive (H, W), got {size}")
    sal = np.asarray(saliency, dtype=np.float32)
    if sal.ndim != 2 or sal.size == 0:
        raise ValueError(f"upsample: expected a 2-D map, got shape {sal.shape}")
    out = cv2.resize(sal, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, 0.0, 1.0, out=out)
