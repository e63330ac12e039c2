"""The one normalisation and "is this a unit vector" check of the package.

Bearing rays (core.peaks) and the bearings and quaternions the attention math reads
(core.attention) all go through ``unit_vectors``: a direction is published or used only when
it is finite, not (nearly) zero, and comes out of the normalisation with length 1.  The norm
is taken after dividing by the largest component, so components near 1e300 (a focal length of
1e-300 px) do not overflow it to inf and turn the vector into (0, 0, 0), and components near
1e-300 do not underflow it to 0.
"""

from __future__ import annotations

import numpy as np

#: largest |norm - 1| a normalised vector may have (float64 rounding is about 1e-16)
UNIT_TOLERANCE = 1e-9


def robust_norms(vectors: np.ndarray) -> np.ndarray:
    """Euclidean norms along the last axis without overflow or underflow of the squares.

    The result itself is inf when the true norm exceeds the float range; a zero vector has
    norm 0.
    """
    vec = np.asarray(vectors, dtype=np.float64)
    scale = np.max(np.abs(vec), axis=-1)
    safe = np.where(scale > 0.0, scale, 1.0)
    with np.errstate(over="ignore"):
        return scale * np.linalg.norm(vec / safe[..., None], axis=-1)


def is_unit(vectors: np.ndarray, tolerance: float = UNIT_TOLERANCE) -> np.ndarray:
    """Per vector (last axis): finite and of length 1 within ``tolerance``."""
    vec = np.asarray(vectors, dtype=np.float64)
    finite = np.all(np.isfinite(vec), axis=-1)
    lengths = robust_norms(np.nan_to_num(vec, nan=0.0, posinf=0.0, neginf=0.0))
    return finite & (np.abs(lengths - 1.0) <= tolerance)


def unit_vectors(values, size: int, what: str, error: type,
                 min_norm: float = 0.0) -> np.ndarray:
    """Return ``values`` ((size,) or (N, size)) normalised along the last axis, or raise.

    ``error`` (the caller's SkdError class) is raised with a message naming ``what`` unless
    every vector has ``size`` finite components, a norm above ``min_norm`` and comes out
    unit; a zero "unit" vector can never leave this function.
    """
    vec = np.asarray(values, dtype=np.float64)
    if vec.ndim == 0 or vec.shape[-1] != size or not np.all(np.isfinite(vec)):
        raise error(f"{what} must be {size} finite numbers, got {values!r}")
    norms = robust_norms(vec)
    if not np.all(norms > min_norm):
        raise error(f"{what} is (nearly) the zero vector: it has no direction")
    scale = np.max(np.abs(vec), axis=-1, keepdims=True)
    scaled = vec / scale
    unit = scaled / np.linalg.norm(scaled, axis=-1, keepdims=True)
    if not np.all(is_unit(unit)):  # the last guard, whatever happened above
        raise error(f"{what} does not normalise to a unit vector: {values!r}")
    return unit


def unit_vector(values, size: int, what: str, error: type, min_norm: float = 0.0) -> np.ndarray:
    """One vector of ``size`` numbers (any shape that flattens to it) as a unit (size,) array."""
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    if flat.shape != (size,):
        raise error(f"{what} must be {size} finite numbers, got {values!r}")
    return unit_vectors(flat, size, what, error, min_norm)
