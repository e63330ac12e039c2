"""Saliency metrics with the MIT saliency benchmark's call shapes and conventions.

Every metric takes a prediction ``sal`` of any size and a ground truth that fixes the
evaluation size: a binary fixation map (``nss``, ``auc_judd``, ``auc_shuffled``) or a fixation
density map (``sim``, ``cc``, ``kld``).  The conventions, each checked against pysaliency in
``test/test_metrics.py`` and explained in ``docs/METRICS.md``:

* Prediction: resized to the ground-truth size, bilinear (``cv2.INTER_LINEAR``) when enlarging
  and area averaging (``cv2.INTER_AREA``) when shrinking (bilinear at 1/4 scale would read only
  one pixel in four and alias; MATLAB's ``imresize`` used by MIT antialiases too), then min-max
  normalised to [0, 1].  A constant map becomes all zeros.
* Fixation map: binary; several fixations in one pixel count once (MIT), for NSS and AUC alike.
* NSS: mean of the z-scored map at fixated pixels; std with N-1 as MATLAB's ``std`` (pysaliency
  uses N; the two differ by the factor sqrt(N/(N-1)), 1 + 9e-6 at 320x180).  Constant map: 0.
* AUC-Judd: thresholds at the saliency values of the fixated pixels; true positives = fixated
  pixels at or above the threshold, false positives = the other pixels at or above it; plus the
  end points (0, 0) and (1, 1); trapezoidal area.  MIT adds 1e-7 uniform noise to break ties;
  we count ties exactly instead (deterministic; pysaliency ``AUC(nonfixations='unfixated',
  thresholds='fixations')`` without its jitter), so a constant map scores exactly 0.5.
* sAUC: positives = fixated pixels, negatives = the pixels fixated in ``other_fixmap`` (in
  :func:`score_frame`: the union of the fixations of up to ``sauc_other_frames`` other frames of
  the same video).  The area is the exact one over all thresholds, ties counting one half
  (pysaliency ``AUC(nonfixations=<Fixations>, thresholds='all')``); MIT's MATLAB code instead
  thresholds at steps of 0.1 and averages 100 random subsets of as many negatives as positives,
  which is coarser and not deterministic.  Constant map: 0.5.  When no other frame of the
  video has fixations (a 1-frame video) sAUC is not defined: None, and means skip it.
* CC: Pearson correlation of the map and the density; 0 when either is constant.
* SIM: both maps min-max normalised (MIT), divided by their sums, sum of the pixel-wise minimum.
* KLD: ``sum(Q * log(eps + Q / (P + eps)))`` with P, Q the prediction and density divided by
  their sums and eps = 2.2204e-16 (MIT; pysaliency ``MIT_KLDiv``).  A map summing to zero (a
  constant prediction after min-max) is read as the uniform distribution (pysaliency).

Ground truth (:func:`score_frame`): fixations of video pixel coordinates ``(x, y)`` (origin at the
frame's top-left corner, see :mod:`skd_saliency_ros.core.gaze`) land in evaluation pixel
``(floor(x * W / width), floor(y * H / height))``; the density map is the fixation *count* map
blurred by a Gaussian of sigma = ``sigma_frac * W`` (``cv2.GaussianBlur``: kernel truncated at 4
sigma, border mirrored as ``BORDER_REFLECT_101``, OpenCV's default), scaled to max 1.  These
choices reproduce the floor table of ../shared/PAPER.md (see docs/METRICS.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.gaze import GazeData
from skd_saliency_ros.core.maps import minmax

METRIC_KEYS = ("auc_judd", "auc_shuffled", "nss", "sim", "cc", "kld")
KLD_EPS = 2.2204e-16  # MATLAB eps as written in the MIT benchmark code


class MetricError(SkdError, ValueError):
    """Data a metric cannot score: empty, NaN or mismatched maps, frames without fixations.

    An SkdError, because the data comes from the user (a gaze file, a video, a model's
    maps): every CLI reports it as one line, never as a traceback.
    """


# ----------------------------------------------------------------------------- inputs

def _as_map(arr, name: str) -> np.ndarray:
    """Return ``arr`` as a finite, non-empty 2-D float64 array or raise ValueError."""
    a = np.asarray(arr)
    if a.ndim != 2 or a.size == 0:
        raise MetricError(f"{name} must be a non-empty 2-D array, got shape {a.shape}")
    if a.dtype.kind not in "biuf":
        raise MetricError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise MetricError(f"{name} contains {np.count_nonzero(~np.isfinite(a))} NaN/inf value(s)")
    return a


def _fixations(fixmap, name: str = "fixmap") -> np.ndarray:
    """Return a boolean fixation mask with at least one fixation."""
    mask = _as_map(fixmap, name) > 0
    if not mask.any():
        raise MetricError(f"{name} has no fixations")
    return mask


def _density(density) -> np.ndarray:
    d = _as_map(density, "density")
    if d.min() < 0:
        raise MetricError(f"density has negative values (min {d.min():g})")
    if d.sum() <= 0:
        raise MetricError("density is all zero (no fixations)")
    return d


def _to_distribution(a: np.ndarray) -> np.ndarray:
    total = a.sum()
    return a / total if total > 0 else np.full_like(a, 1.0 / a.size)


def prepare_saliency(sal, shape: Tuple[int, int]) -> np.ndarray:
    """Resize a prediction to ``shape`` (H, W) and min-max normalise it (float64, [0, 1])."""
    s = _as_map(sal, "saliency map")
    h, w = int(shape[0]), int(shape[1])
    if s.shape != (h, w):
        shrink = s.shape[0] >= h and s.shape[1] >= w
        s = cv2.resize(s, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return minmax(s)


# ------------------------------------------------------------------------ ground truth

def _pixels(points_xy, shape: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """Row and column of every point (corner-origin coordinates in map pixels)."""
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    h, w = int(shape[0]), int(shape[1])
    inside = (np.isfinite(pts).all(axis=1) & (pts[:, 0] >= 0) & (pts[:, 0] < w)
              & (pts[:, 1] >= 0) & (pts[:, 1] < h))
    if not inside.all():
        raise MetricError(f"{np.count_nonzero(~inside)} of {len(pts)} point(s) fall outside the "
                          f"{w}x{h} map")
    return np.floor(pts[:, 1]).astype(np.intp), np.floor(pts[:, 0]).astype(np.intp)


def fixation_map(points_xy, shape: Tuple[int, int]) -> np.ndarray:
    """Binary (uint8) map of shape (H, W) with 1 at ``(floor(y), floor(x))`` of every point."""
    rows, cols = _pixels(points_xy, shape)
    out = np.zeros((int(shape[0]), int(shape[1])), np.uint8)
    out[rows, cols] = 1
    return out


def density_map(points_xy, shape: Tuple[int, int], sigma: float) -> np.ndarray:
    """Fixation counts blurred by a Gaussian of ``sigma`` pixels, scaled to max 1 (float64)."""
    if not sigma > 0:
        raise MetricError(f"sigma must be positive, got {sigma}")
    rows, cols = _pixels(points_xy, shape)
    if rows.size == 0:
        raise MetricError("density_map needs at least one fixation")
    counts = np.zeros((int(shape[0]), int(shape[1])), np.float64)
    np.add.at(counts, (rows, cols), 1.0)
    blurred = cv2.GaussianBlur(counts, (0, 0), sigmaX=float(sigma), sigmaY=float(sigma),
                               borderType=cv2.BORDER_REFLECT_101)
    return blurred / blurred.max()


# ----------------------------------------------------------------------------- metrics

def nss(sal, fixmap) -> float:
    """Return NSS (Normalized Scanpath Saliency): mean z-score at the fixated pixels."""
    fix = _fixations(fixmap)
    s = prepare_saliency(sal, fix.shape)
    std = s.std(ddof=1) if s.size > 1 else 0.0
    if std == 0:
        return 0.0
    return float(((s[fix] - s.mean()) / std).mean())


def roc_judd(sal, fixmap) -> Tuple[np.ndarray, np.ndarray]:
    """ROC curve of AUC-Judd as (false positive rates, true positive rates), both ascending."""
    fix = _fixations(fixmap)
    s = prepare_saliency(sal, fix.shape)
    pos = np.sort(s[fix])
    neg = np.sort(s[~fix])
    if neg.size == 0:
        raise MetricError("fixmap fixates every pixel: AUC-Judd has no negatives")
    thresholds = np.unique(pos)[::-1]
    tp = (pos.size - np.searchsorted(pos, thresholds, side="left")) / pos.size
    fp = (neg.size - np.searchsorted(neg, thresholds, side="left")) / neg.size
    return np.concatenate([[0.0], fp, [1.0]]), np.concatenate([[0.0], tp, [1.0]])


def _area(fp: np.ndarray, tp: np.ndarray) -> float:
    return float(np.sum(np.diff(fp) * (tp[1:] + tp[:-1]) / 2.0))


def auc_judd(sal, fixmap) -> float:
    """AUC-Judd: ROC area with thresholds at the fixated pixels' saliency values."""
    return _area(*roc_judd(sal, fixmap))


def auc_shuffled(sal, fixmap, other_fixmap) -> float:
    """Shuffled AUC: fixated pixels against the pixels fixated in ``other_fixmap``."""
    fix = _fixations(fixmap)
    other = _fixations(other_fixmap, "other_fixmap")
    if other.shape != fix.shape:
        raise MetricError(f"other_fixmap shape {other.shape} differs from fixmap {fix.shape}")
    s = prepare_saliency(sal, fix.shape)
    neg = np.sort(s[other])
    pos = s[fix]
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float(np.mean((below + 0.5 * ties) / neg.size))


def cc(sal, density) -> float:
    """Pearson linear correlation of the prediction and the fixation density (0 if constant)."""
    d = _density(density)
    s = prepare_saliency(sal, d.shape)
    s = s - s.mean()
    d = d - d.mean()
    denom = np.sqrt((s * s).sum() * (d * d).sum())
    return float((s * d).sum() / denom) if denom > 0 else 0.0


def sim(sal, density) -> float:
    """Similarity (histogram intersection) of the two maps read as distributions."""
    d = _density(density)
    s = prepare_saliency(sal, d.shape)
    return float(np.minimum(_to_distribution(s), _to_distribution(minmax(d))).sum())


def kld(sal, density) -> float:
    """KL divergence of the prediction from the density, MIT's epsilon regularisation."""
    d = _density(density)
    p = _to_distribution(prepare_saliency(sal, d.shape))
    q = _to_distribution(d)
    return float((q * np.log(KLD_EPS + q / (p + KLD_EPS))).sum())


# ------------------------------------------------------------------------- protocol

@dataclass(frozen=True)
class EvalProtocol:
    """How frames are scored; the defaults are the ones of ../shared/PAPER.md's floor table."""

    scale: float = 0.25            # eval maps at 1/4 of the video size (320x180 for 1280x720)
    sigma_frac: float = 0.025      # density Gaussian sigma as a fraction of the eval width
    sauc_other_frames: int = 10    # sAUC negatives: fixations of up to this many other frames
    seed: int = 0                  # sAUC frame draw: RNG seeded by (seed, frame_index)

    def eval_shape(self, gaze: GazeData) -> Tuple[int, int]:
        """Return the evaluation map size (H, W) for a video."""
        h, w = round(gaze.height * self.scale), round(gaze.width * self.scale)
        if h < 1 or w < 1 or self.sigma_frac <= 0 or self.sauc_other_frames < 1:
            raise MetricError(f"bad EvalProtocol {self} for a {gaze.width}x{gaze.height} video")
        return h, w


class _GroundTruth:
    """Fixations of one video at the evaluation size, computed per frame on first use."""

    def __init__(self, gaze: GazeData, protocol: EvalProtocol):
        self.gaze, self.protocol = gaze, protocol
        self.shape = protocol.eval_shape(gaze)
        h, w = self.shape
        self.factor = np.array([w / gaze.width, h / gaze.height])
        self.limit = np.array([np.nextafter(w, 0), np.nextafter(h, 0)])
        self.with_fixations = gaze.frames_with_fixations()
        self._points: Dict[int, np.ndarray] = {}
        self._flat: Dict[int, np.ndarray] = {}

    def points(self, k: int) -> np.ndarray:
        """Fixations of frame ``k`` in evaluation-map coordinates."""
        if k not in self._points:
            # The loader keeps 0 <= x < width: only rounding can reach the far edge, clamp it.
            self._points[k] = np.minimum(self.gaze.fixations(k) * self.factor, self.limit)
        return self._points[k]

    def flat(self, k: int) -> np.ndarray:
        """Flat pixel indices of the fixations of frame ``k``."""
        if k not in self._flat:
            rows, cols = _pixels(self.points(k), self.shape)
            self._flat[k] = rows * self.shape[1] + cols
        return self._flat[k]

    def other_fixmap(self, k: int) -> Optional[np.ndarray]:
        """Union of the fixations of up to ``sauc_other_frames`` frames drawn by (seed, k).

        None when no other frame has fixations (a 1-frame video): sAUC is not defined.
        """
        others = self.with_fixations[self.with_fixations != k]
        if others.size == 0:
            return None
        rng = np.random.default_rng([self.protocol.seed, k])
        n = min(self.protocol.sauc_other_frames, others.size)
        chosen = np.sort(rng.choice(others, size=n, replace=False))
        out = np.zeros(self.shape[0] * self.shape[1], np.uint8)
        for j in chosen:
            out[self.flat(int(j))] = 1
        return out.reshape(self.shape)

    def score(self, sal, k: int) -> Dict[str, Optional[float]]:
        """All six metrics of one prediction for frame ``k`` (sAUC None: not defined)."""
        points = self.points(k)
        if len(points) == 0:
            raise MetricError(f"{self.gaze.path}: frame {k} has no fixations to score against")
        h, w = self.shape
        s = prepare_saliency(sal, self.shape)
        fix = fixation_map(points, self.shape)
        dens = density_map(points, self.shape, self.protocol.sigma_frac * w)
        other = self.other_fixmap(k)
        return {"auc_judd": auc_judd(s, fix),
                "auc_shuffled": None if other is None else auc_shuffled(s, fix, other),
                "nss": nss(s, fix), "sim": sim(s, dens), "cc": cc(s, dens), "kld": kld(s, dens)}


def other_fixmap(frame_index: int, gaze: GazeData,
                 protocol: EvalProtocol = EvalProtocol()) -> np.ndarray:
    """Return the sAUC negatives :func:`score_frame` uses for a frame, as a binary eval map.

    Raises MetricError when no other frame has fixations (then sAUC is None).
    """
    k = _frame_index(frame_index, gaze)
    other = _GroundTruth(gaze, protocol).other_fixmap(k)
    if other is None:
        raise MetricError(f"{gaze.path}: sAUC for frame {k} needs fixations on another frame, "
                          "and there are none")
    return other


def score_frame(sal, frame_index: int, gaze: GazeData,
                protocol: EvalProtocol = EvalProtocol()) -> Dict[str, float]:
    """Score one prediction against the fixations of ``gaze`` frame ``frame_index``."""
    k = _frame_index(frame_index, gaze)
    return _GroundTruth(gaze, protocol).score(sal, k)


def _frame_index(frame_index, gaze: GazeData) -> int:
    integer = isinstance(frame_index, (int, np.integer))
    if not integer or isinstance(frame_index, (bool, np.bool_)):
        raise MetricError(f"frame index must be an integer, got {frame_index!r}")
    if not 0 <= frame_index < gaze.n_frames:
        raise MetricError(f"frame index {frame_index} is outside [0, {gaze.n_frames}) of "
                          f"{gaze.path}")
    return int(frame_index)


def score_sequence(maps: Union[Mapping, Iterable[Tuple[int, np.ndarray]]], gaze: GazeData,
                   protocol: EvalProtocol = EvalProtocol(), progress: bool = False) -> dict:
    """Score ``(frame_index, map)`` pairs; average over the frames that have fixations.

    Returns ``{"mean": {metric: float}, "n_frames": frames scored, "per_frame": [{"frame_index",
    metrics...}], "skipped_frames": [indices without fixations]}``.  A metric that is None
    for a frame (sAUC without fixations on another frame) is left out of its mean, which is
    None when no frame has it.
    """
    truth = _GroundTruth(gaze, protocol)
    items = maps.items() if isinstance(maps, Mapping) else maps
    if progress:
        from tqdm import tqdm
        items = tqdm(items, desc=f"scoring {gaze.path.name}", unit="frame")
    per_frame: List[dict] = []
    skipped: List[int] = []
    seen = set()
    for item in items:
        if not isinstance(item, Sequence) or len(item) != 2:
            raise MetricError("maps must be a mapping or an iterable of (frame_index, map) pairs")
        k = _frame_index(item[0], gaze)
        if k in seen:
            raise MetricError(f"frame {k} is given twice")
        seen.add(k)
        if len(truth.points(k)) == 0:
            skipped.append(k)
            continue
        per_frame.append({"frame_index": k, **truth.score(item[1], k)})
    if not per_frame:
        raise MetricError(f"{gaze.path}: none of the {len(seen)} given frame(s) has fixations")
    mean = {key: mean_defined([f[key] for f in per_frame]) for key in METRIC_KEYS}
    return {"mean": mean, "n_frames": len(per_frame), "per_frame": per_frame,
            "skipped_frames": skipped}


def mean_over_sources(rows: Sequence[Mapping], keys: Iterable[str]) -> Dict[str, float]:
    """Average the metrics ``keys`` over several sequences' results; ``n_frames`` is summed.

    Each sequence counts once, whatever its length (a long clip must not drown a short one):
    the rule of training validation and of ``evaluate --data``.
    """
    out: Dict[str, Optional[float]] = {k: mean_defined([r[k] for r in rows]) for k in keys}
    out["n_frames"] = int(sum(r["n_frames"] for r in rows))
    return out


def mean_defined(values: Iterable[Optional[float]]) -> Optional[float]:
    """Mean of the values that are defined; None when none is (sAUC of 1-frame videos).

    A metric that is not defined for some frames or sequences is averaged over the others,
    never read as 0 or NaN.
    """
    defined = [float(v) for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def format_metric(value: Optional[float], spec: str = ".3f") -> str:
    """Return a metric as text for a table or summary line: ``n/a`` when not defined."""
    return "n/a" if value is None else format(value, spec)
