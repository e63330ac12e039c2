"""Load per-frame gaze fixations from the ``*_gaze.npz`` files of the data bundle.

The schema is the one of ``../shared/data/README.md`` ("Gaze reduction"): scalars
``n_frames``, ``width``, ``height``, ``fps``; ``observer_ids`` (O,); and one row per fixation in
``fix_xy`` (F, 2) float, ``fix_frame`` (F,) int and ``fix_observer`` (F,) int.  Coordinates are
pixels of the stored video with the origin at the top-left *corner* of the frame, so a point is
inside the frame when ``0 <= x < width`` and ``0 <= y < height`` and lies in pixel
``(floor(x), floor(y))``.  The raw ``samples_*`` arrays are not loaded: only fixations are scored.

A file that breaks the schema raises :class:`GazeError` naming the file and the key, because a
silently wrong gaze file would make every metric wrong.  Points outside the frame are tolerated
(they are what an eye tracker produces when the observer looks off-screen), but they are counted
in a warning and dropped.
"""

from __future__ import annotations

import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from skd_saliency_ros.core.errors import SkdError

REQUIRED_SCALARS = ("n_frames", "width", "height", "fps")
REQUIRED_ARRAYS = ("observer_ids", "fix_xy", "fix_frame", "fix_observer")


class GazeError(SkdError, ValueError):
    """A gaze file that is missing, unreadable or does not follow the bundle's schema."""


@dataclass(eq=False)
class GazeData:
    """Fixations of one video; ``fixations(k)`` gives the points of stored frame ``k``."""

    path: Path
    width: int
    height: int
    n_frames: int
    fps: int
    fix_xy: np.ndarray
    fix_frame: np.ndarray
    fix_observer: np.ndarray
    observer_ids: np.ndarray
    _order: np.ndarray = field(init=False, repr=False)
    _starts: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        # Index the fixations by frame once, so fixations(k) is a slice, not a scan.
        self._order = np.argsort(self.fix_frame, kind="stable")
        frames = self.fix_frame[self._order]
        self._starts = np.searchsorted(frames, np.arange(self.n_frames + 1), side="left")

    def fixations(self, frame_index: int) -> np.ndarray:
        """Return the (N, 2) float array of x, y fixation points of one stored frame."""
        k = int(frame_index)
        if not 0 <= k < self.n_frames:
            raise ValueError(f"{self.path}: frame {frame_index} is outside [0, {self.n_frames})")
        rows = self._order[self._starts[k]:self._starts[k + 1]]
        return self.fix_xy[rows].astype(np.float64)

    def counts(self) -> np.ndarray:
        """Return the number of fixations of every frame, shape (n_frames,)."""
        return np.diff(self._starts)

    def frames_with_fixations(self) -> np.ndarray:
        """Return the indices of the frames that have at least one fixation."""
        return np.flatnonzero(self.counts() > 0)


def _scalar(data, key: str, path: Path) -> int:
    value = data[key]
    if value.shape not in ((), (1,)) or not np.issubdtype(value.dtype, np.integer):
        raise GazeError(f"{path}: key '{key}' must be an integer scalar, "
                        f"got dtype {value.dtype} shape {value.shape}")
    value = int(value.reshape(()))
    if value <= 0:
        raise GazeError(f"{path}: key '{key}' must be positive, got {value}")
    return value


def _array(data, key: str, path: Path, shape: str, kinds: str) -> np.ndarray:
    """Check one array against its schema: ``shape`` is "(F,)", "(O,)" or "(F, 2)"."""
    value = data[key]
    if value.dtype.kind not in kinds:
        expected = "a float or integer" if "f" in kinds else "an integer"
        raise GazeError(f"{path}: key '{key}' has dtype {value.dtype}, expected {expected} type")
    columns = 2 if shape.endswith("2)") else None
    if value.ndim != (2 if columns else 1) or (columns and value.shape[1] != columns):
        raise GazeError(f"{path}: key '{key}' has shape {value.shape}, expected {shape}")
    return value


def _check_fits(path: Path, frames: int, width: int, height: int,
                n_frames: Optional[int] = None, size: Optional[Tuple[int, int]] = None,
                against: str = "the video", hint: str = "") -> None:
    """Refuse a gaze file whose frame count or frame size is not the video's.

    Fixations are pixels of the frame they were recorded on and are scored frame by frame:
    a file for another length pairs the wrong frames, one for another size scales every point
    (and a huge size allocates huge evaluation maps).  Both would make every metric wrong
    without a word, so neither is ever tolerated.  ``size`` is (width, height); ``against``
    names the video (or bag) in the message; ``hint`` is appended to it.
    """
    tail = f"; {hint}" if hint else ""
    if n_frames is not None and int(n_frames) != frames:
        raise GazeError(f"{path}: gaze file has {frames} frames but {against} has "
                        f"{int(n_frames)}{tail}")
    if size is not None and (int(size[0]), int(size[1])) != (width, height):
        raise GazeError(f"{path}: gaze file is for {width}x{height} frames but {against} has "
                        f"{int(size[0])}x{int(size[1])} frames{tail}")


def load_gaze(path: Union[str, Path], n_frames: Optional[int] = None,
              size: Optional[Tuple[int, int]] = None, against: str = "the video",
              hint: str = "") -> GazeData:
    """Load and check a gaze file; it must fit the video's ``n_frames`` and ``size`` if given.

    See :func:`_check_fits` for ``size`` (width, height), ``against`` and ``hint``.
    """
    path = Path(path)
    if not path.is_file():
        raise GazeError(f"{path}: gaze file not found")
    if not zipfile.is_zipfile(path):
        raise GazeError(f"{path}: not a .npz gaze file (a .npz is a zip archive of arrays; "
                        "convert a CSV with 'python -m training gaze-import')")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {key: npz[key] for key in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise GazeError(f"{path}: not a readable .npz gaze file ({exc})") from exc

    missing = [key for key in REQUIRED_SCALARS + REQUIRED_ARRAYS if key not in data]
    if missing:
        raise GazeError(f"{path}: missing key(s) {', '.join(missing)} "
                        f"(has: {', '.join(sorted(data)) or 'nothing'})")
    frames, width, height, fps = (_scalar(data, key, path) for key in REQUIRED_SCALARS)
    _check_fits(path, frames, width, height, n_frames, size, against, hint)

    observer_ids = _array(data, "observer_ids", path, "(O,)", "iu")
    xy = _array(data, "fix_xy", path, "(F, 2)", "fiu")
    frame = _array(data, "fix_frame", path, "(F,)", "iu")
    observer = _array(data, "fix_observer", path, "(F,)", "iu")
    for key, value in (("fix_frame", frame), ("fix_observer", observer)):
        if len(value) != len(xy):
            raise GazeError(f"{path}: key '{key}' has {len(value)} rows but 'fix_xy' has "
                            f"{len(xy)}")
    if len(frame) and (frame.min() < 0 or frame.max() >= frames):
        bad = int(np.count_nonzero((frame < 0) | (frame >= frames)))
        raise GazeError(f"{path}: key 'fix_frame' has {bad} value(s) outside [0, {frames}) "
                        f"(min {frame.min()}, max {frame.max()})")
    unknown = np.setdiff1d(observer, observer_ids)
    if len(unknown):
        raise GazeError(f"{path}: key 'fix_observer' has observer(s) {unknown.tolist()} "
                        f"that are not in 'observer_ids'")

    xy = xy.astype(np.float32)
    inside = (np.isfinite(xy).all(axis=1) & (xy[:, 0] >= 0) & (xy[:, 0] < width)
              & (xy[:, 1] >= 0) & (xy[:, 1] < height))
    dropped = int(np.count_nonzero(~inside))
    if dropped == len(xy):  # nothing left to score: every metric would be undefined
        raise GazeError(f"{path}: no usable fixation: all {len(xy)} point(s) in 'fix_xy' are "
                        f"outside [0,{width})x[0,{height}) or not finite"
                        if len(xy) else f"{path}: holds no fixation ('fix_xy' is empty)")
    if dropped:
        warnings.warn(f"{path}: dropped {dropped} of {len(xy)} fixation(s) in 'fix_xy' outside "
                      f"[0,{width})x[0,{height}) or not finite", stacklevel=2)
    return GazeData(path=path, width=width, height=height, n_frames=frames, fps=fps,
                    fix_xy=xy[inside], fix_frame=frame[inside].astype(np.int32),
                    fix_observer=observer[inside].astype(np.int64),
                    observer_ids=observer_ids.astype(np.int64))  # exact, whatever the ids
