"""``python -m training gaze-import``: a gaze CSV -> the bundle's ``*_gaze.npz`` schema.

Your own eye-tracking recordings rarely come as the bundle's ``.npz``.  This step takes the
simplest table an eye tracker export can be turned into, one row per gaze sample::

    frame,x,y,observer          # header required; column order free, extra columns ignored
    0,612.5,344.0,1             # frame: 0-based index of the video frame on screen
    0,615.1,341.2,1             # x, y: pixels of the video (origin top-left corner,
    1,640.0,350.9,2             #       x right, y down); empty or nan = tracking lost

and reduces it with the rule the bundle uses (``../shared/data/README.md``, "Gaze
reduction"): per observer and frame, the valid samples (finite, inside the frame) give one
fixation if there are enough of them (``--min-samples``, or half of ``--samples-per-frame``
when the tracker rate is known) and their dispersion (max x - min x) + (max y - min y) is at
most ``--max-dispersion`` px (60 in the bundle); the fixation is the median x and median y.

Refused with one line naming the CSV and the row: missing columns or one given twice, a
value that is not a number, a frame index outside the video, a sample outside the frame
(unless ``--drop-outside``: then they are dropped and counted, like off-screen gaze in the
bundle), a byte the ``--encoding`` cannot read (default UTF-8; a byte-order mark is fine).
Observer ids are int16 as in the bundle; ids that do not fit (a date such as 20231115) are
numbered 1..O in their order and kept, exact, in ``observer_source_ids`` (O,) int64.
The output loads with ``skd_saliency_ros.core.gaze.load_gaze`` (tested) and is never written over
an existing file without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import io
import math
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from skd_saliency_ros.core.atomic import atomic_path
from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.output_paths import Output, check_outputs

COLUMNS = ("frame", "x", "y", "observer")
DEFAULT_ENCODING = "utf-8-sig"  # UTF-8; a leading byte-order mark (Excel's) is dropped
INT64 = np.iinfo(np.int64)


class GazeImportError(SkdError, ValueError):
    """A gaze CSV (or option) that cannot be converted; names the file and the row."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the gaze-import step."""
    parser.add_argument("--csv", type=Path, required=True,
                        help="gaze samples: columns frame, x, y, observer (header row)")
    parser.add_argument("--video", type=Path, required=True,
                        help="the video the gaze was recorded on (frame count, size, rate)")
    parser.add_argument("--fps", type=float, default=None,
                        help="frame rate, where the video container has none")
    parser.add_argument("--encoding", default=DEFAULT_ENCODING,
                        help="text encoding of the CSV (default utf-8, with or without a "
                             "byte-order mark; e.g. latin-1 or cp1252 for older exports)")
    parser.add_argument("--out", "-o", type=Path, required=True, help=".npz to write")
    parser.add_argument("--max-dispersion", type=float, default=60.0,
                        help="max (x range + y range) of one fixation's samples, px (60)")
    parser.add_argument("--min-samples", type=int, default=1,
                        help="valid samples an observer needs on a frame (default 1)")
    parser.add_argument("--samples-per-frame", type=float, default=None,
                        help="tracker samples per video frame; if given, at least half must be "
                             "valid (the bundle: 33.3 at 1000 Hz for 30 fps)")
    parser.add_argument("--drop-outside", action="store_true",
                        help="drop samples outside the frame (counted) instead of refusing")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def read_text(path: Path, encoding: str = DEFAULT_ENCODING) -> str:
    """Return the CSV as text; a byte the encoding cannot read is one error naming file and line.

    Decoded whole (not as the csv module streams it), so the error can say where the byte is.
    """
    if not path.is_file():
        raise GazeImportError(f"{path}: CSV not found")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise GazeImportError(f"--encoding {encoding}: not a text encoding Python knows "
                              "(e.g. utf-8, latin-1, cp1252)") from None
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise GazeImportError(f"{path}: line {line}: byte 0x{data[exc.start]:02x} is not "
                              f"{encoding} text; pass --encoding with the CSV's encoding "
                              "(e.g. --encoding latin-1)") from None
    return text[1:] if text.startswith("\ufeff") else text  # a BOM under any encoding


def _header(path: Path, fieldnames) -> List[str]:
    """Return the normalised header; every needed column must be in it exactly once.

    With two 'x' columns nobody can tell which one is the gaze.
    """
    header = [h.strip().lower() for h in (fieldnames or [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise GazeImportError(f"{path}: missing column(s) {missing} in the header "
                              f"(has {header or 'no header'}; needs {list(COLUMNS)})")
    for name in COLUMNS:
        where = [i + 1 for i, h in enumerate(header) if h == name]
        if len(where) > 1:
            raise GazeImportError(f"{path}: column '{name}' appears twice in the header "
                                  f"(columns {', '.join(map(str, where))}); keep one")
    return header


def read_samples(path: Path, n_frames: int, width: int, height: int, drop_outside: bool,
                 encoding: str = DEFAULT_ENCODING
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Dict[str, int]]:
    """Rows of the CSV -> (xy float32 (S, 2), frame int32 (S,), observer int64 (S,)), counts.

    Lost-tracking rows (empty/NaN x or y) are skipped and counted; see the module docstring
    for what is refused.
    """
    xy, frames, observers = [], [], []
    counts = {"rows": 0, "lost": 0, "outside": 0}
    with io.StringIO(read_text(path, encoding), newline="") as fh:
        reader = csv.DictReader(fh)
        reader.fieldnames = _header(path, reader.fieldnames)
        for line, row in enumerate(reader, start=2):
            counts["rows"] += 1
            where = f"{path}: row {line}"
            try:
                frame = int(str(row["frame"]).strip())
                observer = int(str(row["observer"]).strip())
            except (TypeError, ValueError) as exc:
                raise GazeImportError(f"{where}: frame and observer must be integers, got "
                                      f"{row['frame']!r}, {row['observer']!r}") from exc
            if not INT64.min <= observer <= INT64.max:
                raise GazeImportError(f"{where}: observer id {observer} does not fit a 64-bit "
                                      "integer; renumber the observers")
            if not 0 <= frame < n_frames:
                raise GazeImportError(f"{where}: frame {frame} is not a frame of the video "
                                      f"(0..{n_frames - 1})")
            x_text, y_text = (str(row[k] or "").strip() for k in ("x", "y"))
            try:
                x = float(x_text) if x_text else math.nan
                y = float(y_text) if y_text else math.nan
            except ValueError as exc:
                raise GazeImportError(f"{where}: x and y must be numbers, got {x_text!r}, "
                                      f"{y_text!r}") from exc
            if not (math.isfinite(x) and math.isfinite(y)):
                counts["lost"] += 1
                continue
            if not (0 <= x < width and 0 <= y < height):
                if not drop_outside:
                    raise GazeImportError(f"{where}: gaze ({x}, {y}) is outside the "
                                          f"{width}x{height} frame (pass --drop-outside to "
                                          "drop such samples)")
                counts["outside"] += 1
                continue
            xy.append((x, y))
            frames.append(frame)
            observers.append(observer)
    if not xy:
        raise GazeImportError(f"{path}: no valid gaze sample ({counts['rows']} rows)")
    return (np.asarray(xy, np.float32), np.asarray(frames, np.int32),
            np.asarray(observers, np.int64), counts)


def observer_numbers(ids: np.ndarray, path: Path) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Return the observers as int16 (the bundle's schema) and, if renumbered, their ids.

    Ids that fit int16 are kept as they are.  Others (a date such as 20231115 is common)
    would wrap or overflow in an int16 cast, merging or renaming observers: then the
    observers are numbered 1..O in the order of their ids, and the ids are returned to be
    stored, exact, as ``observer_source_ids`` (O,) int64.
    """
    small = np.iinfo(np.int16)
    if small.min <= ids.min() and ids.max() <= small.max:
        return ids.astype(np.int16), None
    originals, numbers = np.unique(ids, return_inverse=True)
    if len(originals) > small.max:
        raise GazeImportError(f"{path}: {len(originals)} observers; at most {small.max} fit")
    return (numbers + 1).astype(np.int16), originals.astype(np.int64)


def fixations(xy: np.ndarray, frames: np.ndarray, observers: np.ndarray,
              max_dispersion: float, min_samples: int):
    """Reduce samples with the bundle's rule: at most one median point per (observer, frame)."""
    order = np.lexsort((frames, observers))
    keys = np.stack([observers[order], frames[order]], 1)
    cuts = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1
    fix_xy, fix_frame, fix_observer = [], [], []
    for group in np.split(order, cuts):
        pts = xy[group]
        if len(pts) < min_samples:
            continue
        spread = np.ptp(pts[:, 0]) + np.ptp(pts[:, 1])
        if spread > max_dispersion:
            continue
        fix_xy.append(np.median(pts, axis=0))
        fix_frame.append(frames[group[0]])
        fix_observer.append(observers[group[0]])
    return (np.asarray(fix_xy, np.float32).reshape(-1, 2), np.asarray(fix_frame, np.int32),
            np.asarray(fix_observer, observers.dtype))


def run(args: argparse.Namespace) -> int:
    """Convert, check by loading the result back, print one summary line."""
    from skd_saliency_ros.core.gaze import load_gaze

    from .datasets import VideoSource

    check_outputs([Output("--out", args.out)], inputs=[("--csv", args.csv),
                                                       ("--video", args.video)],
                  overwrite=args.overwrite)
    if args.max_dispersion <= 0 or args.min_samples < 1:
        raise GazeImportError("--max-dispersion must be > 0 and --min-samples >= 1")
    video = VideoSource(args.video, fps=args.fps)
    min_samples = args.min_samples
    if args.samples_per_frame is not None:
        if args.samples_per_frame <= 0:
            raise GazeImportError("--samples-per-frame must be > 0")
        min_samples = max(min_samples, int(math.ceil(0.5 * args.samples_per_frame)))
    xy, frames, ids, counts = read_samples(args.csv, video.n_frames, video.width,
                                           video.height, args.drop_outside, args.encoding)
    observers, source_ids = observer_numbers(ids, args.csv)
    fix_xy, fix_frame, fix_observer = fixations(xy, frames, observers, args.max_dispersion,
                                                min_samples)
    arrays = {
        "n_frames": np.int32(video.n_frames), "width": np.int32(video.width),
        "height": np.int32(video.height), "fps": np.int32(round(video.fps)),
        "source_fps": np.int32(round(video.fps)),
        "observer_ids": np.unique(observers),
        "source_frame_index": np.arange(1, video.n_frames + 1, dtype=np.int32),
        "samples_xy": xy, "samples_frame": frames, "samples_observer": observers,
        "fix_xy": fix_xy, "fix_frame": fix_frame, "fix_observer": fix_observer,
    }
    if source_ids is not None:
        arrays["observer_source_ids"] = source_ids
    with atomic_path(args.out, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
        # the schema and fit checks the rest of the pipeline applies
        load_gaze(tmp, video.n_frames, size=(video.width, video.height), against=str(args.video))
    with_fix = len(np.unique(fix_frame))
    print(f"wrote {args.out}: {len(arrays['observer_ids'])} observer(s), {len(xy)} samples "
          f"({counts['lost']} lost, {counts['outside']} outside dropped), {len(fix_xy)} "
          f"fixations on {with_fix} of {video.n_frames} frames"
          + ("; observers numbered 1..O, their ids (too large for int16) in "
             "'observer_source_ids'" if source_ids is not None else ""))
    return 0
