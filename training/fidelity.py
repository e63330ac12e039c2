"""Fidelity: how closely a student's maps copy its teacher's, on clips it never trained on.

The gaze scores of ``evaluate`` say how well a model predicts people; they cannot say whether
a weak student failed to copy its teacher or copied a teacher that is weak on that footage.
Fidelity compares the student with the teacher directly, frame by frame, on the manifest's
held-out ``fidelity:`` clips, next to a ceiling: the same teacher fed the frames shrunk to the
student's input size (``tinyhd-m@64``, training/teachers.py), which is what the teacher itself
makes of the pixels the student gets.  ``python -m training evaluate --fidelity`` runs it.

Metrics (the functions of skd_saliency_ros.core.metrics, the teacher map as the reference,
both maps first area-resized to the fidelity grid):

* ``cc``: Pearson correlation of the student and teacher maps;
* ``kld``: KL divergence of the teacher's distribution from the student's (MIT convention,
  ``core.metrics.kld`` with the teacher map as the density; lower is better).  The teacher
  map is min-max normalised first, as ``kld`` does to the prediction: a fixation density has
  a floor of 0, a teacher map has the floor of its sigmoid (TinyHD-M: 1-2 of 255 over most of
  the frame, a large share of the mass), and with the floor on one side only a perfect copy
  scored 0.61 on a wakeboard7 frame, and a blurred copy less than a perfect one;
* ``nss_peaks``: NSS of the student map at the teacher's peak pixels, the pixels of the
  teacher map (at the fidelity grid) at or above its 99th percentile within that frame,
  i.e. its top 1 %: does the student put its mass where the teacher's is.

Each is averaged over the frames of a clip, then over clips (each clip once,
``core.metrics.mean_over_sources``).

``transfer`` / ``distill --val-fidelity`` score the model being trained the same way at every
validation step (training/trainer.py ``validate_fidelity``: the maps of ``predict_maps``,
the scores of :func:`score_clips`), on every frame or on :func:`even_frames` of each clip.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Tuple

import cv2
import numpy as np

from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.maps import minmax
from skd_saliency_ros.core.metrics import cc, kld, mean_over_sources, nss

#: Long side of the fidelity grid in pixels (80 x 45 for 16:9 video, frame size / 8 of a
#: 640x360 clip).  Why: a student at R = 64 sees 64 x 64 pixels, so its map holds no detail
#: finer than 1/64 of the frame.  At the teacher's storage size (320x180) every bit of the
#: teacher's texture finer than a student pixel would count as a copying error that no R = 64
#: student can avoid, and the student's map would be scored on how it is interpolated.  80 is
#: the smallest long side no coarser than the student's 64 columns; it is also the grid of the
#: bundle's centre priors (80 x 45).  The grid is fixed, not a fraction of the video or of R,
#: so clips of every size and students of every R are scored on the same grid and compare.
FIDELITY_LONG_SIDE = 80
#: The teacher's peak pixels: at or above this percentile of its own map (top 1 %, 36 of
#: the 3,600 pixels of an 80 x 45 grid).
PEAK_PERCENTILE = 99.0
FIDELITY_KEYS = ("cc", "kld", "nss_peaks")
#: The teacher copied when none is named: ``evaluate --fidelity --teacher`` and the trainer's
#: ``--val-fidelity-teacher`` (the teacher of the shipped recipe).
DEFAULT_TEACHER = "tinyhd-m"


class FidelityError(SkdError, ValueError):
    """Maps that cannot be compared (shapes, frame counts, non-finite values)."""


def fidelity_grid(width: int, height: int) -> Tuple[int, int]:
    """Return the fidelity grid (w, h) of a ``width`` x ``height`` frame (long side 80)."""
    scale = FIDELITY_LONG_SIDE / max(int(width), int(height))
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def to_grid(saliency: np.ndarray, grid: Tuple[int, int]) -> np.ndarray:
    """One map (any size, any real dtype) -> float32 (h, w) at ``grid``, area interpolation."""
    return cv2.resize(np.asarray(saliency, np.float32), tuple(int(v) for v in grid),
                      interpolation=cv2.INTER_AREA)


def even_frames(n_frames: int, count: Optional[int] = None) -> np.ndarray:
    """Return ``count`` frame indices spread evenly over ``n_frames``, first and last among them.

    Every frame when ``count`` is None or not below ``n_frames``.  Evenly rather than the first
    ``count``: a clip's scenes change along it, and a prefix would score only its opening.
    """
    n = int(n_frames)
    if n < 1:
        raise FidelityError(f"a clip of {n} frames has none to score")
    if count is None or int(count) >= n:
        return np.arange(n, dtype=np.int64)
    if int(count) < 1:
        raise FidelityError(f"the number of frames to score must be >= 1, got {count}")
    return np.unique(np.round(np.linspace(0, n - 1, int(count))).astype(np.int64))


def teacher_peaks(teacher: np.ndarray) -> np.ndarray:
    """Binary (uint8) map of the teacher's top 1 %: pixels >= its 99th percentile."""
    return (teacher >= np.percentile(teacher, PEAK_PERCENTILE)).astype(np.uint8)


def score_frame(student: np.ndarray, teacher: np.ndarray) -> Dict[str, float]:
    """CC, KLD and NSS-at-teacher-peaks of one frame; both maps already at the same grid.

    ``teacher`` is the min-max normalised teacher map (see the module doc on KLD).
    """
    return {"cc": cc(student, teacher), "kld": kld(student, teacher),
            "nss_peaks": nss(student, teacher_peaks(teacher))}


def score_clip(student_maps: np.ndarray, teacher_maps: np.ndarray,
               grid: Optional[Tuple[int, int]] = None) -> Dict[str, Any]:
    """Mean over the frames of one clip of ``cc``, ``kld`` and ``nss_peaks`` (module doc).

    ``student_maps`` and ``teacher_maps`` are (N, h, w) arrays of any sizes and real dtypes
    (a square R x R student map covers the whole, squashed frame; uint8 cached maps need no
    conversion: every metric is scale-invariant).  Both are area-resized to ``grid`` (w, h),
    by default :func:`fidelity_grid` of the teacher maps, which keep the frame's aspect at
    the cache's storage size.  A teacher frame that is constant (all zero) has no
    distribution to copy: it is skipped and counted in ``n_skipped``.
    """
    student = np.asarray(student_maps)
    teacher = np.asarray(teacher_maps)
    for what, arr in (("student", student), ("teacher", teacher)):
        if arr.ndim != 3 or arr.shape[0] == 0 or min(arr.shape[1:]) < 1:
            raise FidelityError(f"{what} maps must be a non-empty (N, h, w) array, got shape "
                                f"{arr.shape}")
    if len(student) != len(teacher):
        raise FidelityError(f"{len(student)} student map(s) but {len(teacher)} teacher "
                            "map(s): one of each per frame")
    grid = tuple(grid) if grid is not None else fidelity_grid(teacher.shape[2],
                                                              teacher.shape[1])
    rows, skipped = [], 0
    for k, (s, t) in enumerate(zip(student, teacher)):
        t_grid = minmax(to_grid(t, grid))
        if not t_grid.max() > 0:
            skipped += 1
            continue
        try:
            rows.append(score_frame(to_grid(s, grid), t_grid))
        except ValueError as exc:  # NaN/inf or a negative teacher value
            raise FidelityError(f"frame {k}: {exc}") from exc
    if not rows:
        raise FidelityError(f"every one of the {len(teacher)} teacher map(s) is constant: "
                            "nothing to compare with")
    out: Dict[str, Any] = {key: float(np.mean([r[key] for r in rows])) for key in FIDELITY_KEYS}
    out.update(n_frames=len(rows), n_skipped=skipped, grid=list(grid))
    return out


def score_clips(clips: Iterable[Tuple[str, np.ndarray, np.ndarray]]) -> Dict[str, Any]:
    """Score ``(name, student_maps, teacher_maps)`` clips; per-clip rows and the mean.

    Returns ``{"per_clip": {name: row}, "mean": row}``; the mean counts each clip once
    (``mean_over_sources``: a long clip must not drown a short one), ``n_frames`` summed.
    """
    per_clip: Dict[str, Dict[str, Any]] = {}
    for name, student, teacher in clips:
        if name in per_clip:
            raise FidelityError(f"clip {name!r} given twice")
        per_clip[name] = score_clip(student, teacher)
    if not per_clip:
        raise FidelityError("no clips to score")
    return {"per_clip": per_clip, "mean": mean_over_sources(list(per_clip.values()),
                                                            FIDELITY_KEYS)}


def gap_to_ceiling(row: Dict[str, Any], ceiling: Dict[str, Any]) -> Dict[str, Optional[float]]:
    """How far a student is from the ceiling: ratios for CC and NSS, difference for KLD.

    ``cc_ratio`` = student / ceiling CC and ``nss_peaks_ratio`` likewise (1: as good as the
    teacher on the student's pixels); ``kld_diff`` = student - ceiling KLD (0: as good).
    A ratio over a ceiling of 0 is None (JSON has no NaN).  ``evaluate --fidelity`` gives
    the mean row the gap between the means (not the mean of the per-clip gaps: a clip where
    the ceiling is near 0 would swamp a mean of ratios).
    """
    def ratio(key: str) -> Optional[float]:
        return float(row[key] / ceiling[key]) if ceiling[key] != 0 else None

    return {"cc_ratio": ratio("cc"), "nss_peaks_ratio": ratio("nss_peaks"),
            "kld_diff": float(row["kld"] - ceiling["kld"])}


# ------------------------------------------------------------------------------ report
_HEAD = ("| {first} | R | CC | KLD | NSS@peaks | CC / ceiling | NSS / ceiling | "
         "KLD - ceiling | frames |")


def _cells(row: Dict[str, Any]) -> str:
    gap = row.get("gap") or {}

    def num(value, fmt: str = "{:.3f}") -> str:
        return "-" if value is None else fmt.format(value)

    return " | ".join([str(row.get("resolution", "-")), num(row["cc"]), num(row["kld"]),
                       num(row["nss_peaks"]), num(gap.get("cc_ratio")),
                       num(gap.get("nss_peaks_ratio")), num(gap.get("kld_diff"), "{:+.3f}"),
                       str(row["n_frames"])])


def markdown(models: Dict[str, Dict[str, Any]], per_clip: Dict[str, Dict[str, Dict[str, Any]]],
             title: str) -> str:
    """Return the mean table (a row per model) and the per-clip table (a row per clip, model)."""
    lines = [f"**{title}**", "", _HEAD.format(first="model"), "|" + "---|" * 9]
    lines += [f"| {label} | {_cells(row)} |" for label, row in models.items()]
    lines += ["", "Per clip:", "", _HEAD.format(first="clip | model"), "|" + "---|" * 10]
    for clip, rows in per_clip.items():
        lines += [f"| {clip} | {label} | {_cells(row)} |" for label, row in rows.items()]
    lines += ["", f"Model vs teacher maps, both area-resized to a grid {FIDELITY_LONG_SIDE} px "
              "on the long side (80 x 45 for 16:9). CC, and NSS at the teacher's top 1 % "
              "pixels (NSS@peaks): higher is better; KLD of the teacher from the model: lower "
              "is better. Ceiling: the teacher fed the frames shrunk to the student's R x R; "
              "gaps: model / ceiling (CC, NSS), model - ceiling (KLD), those of the mean row "
              "taken between the means. Means count each clip once."]
    return "\n".join(lines) + "\n"
