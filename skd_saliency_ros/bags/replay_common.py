"""What offline and live replay share: errors, gaze matching, output bags, storage detection.

Both ``replay.py`` (the CLI and the offline mode) and ``replay_live.py`` (the live mode)
import this module; neither imports the other at module level except the CLI, which
dispatches to the live mode, so there is no import circle.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.bags.bag_io import InputBag, OutputBag, atomic_bag_path

PROG = "saliency_replay"


class ReplayError(SkdError, ValueError):
    """A replay option that cannot work (shown as one line, exit code 2)."""


def expected_gaze_frames(bag: InputBag) -> int:
    """Frame count a gaze file for ``bag`` must have.

    The source video's when make-bag recorded it (a bag of the first N frames of a video),
    else the number of images in the bag.
    """
    declared = bag.custom_data.get("skd.video_frames")
    try:
        return int(declared) if declared is not None else bag.image_count
    except ValueError:
        return bag.image_count


def load_sequence_gaze(path, bag: InputBag, match: str):
    """Load a gaze file for ``bag`` with core.gaze's one check of frame size and count.

    The size is the bag's images'; the count (index mode only: stamp mode pairs by time)
    is :func:`expected_gaze_frames`.
    """
    from skd_saliency_ros.core.gaze import load_gaze
    source = ("its source video" if "skd.video_frames" in bag.custom_data
              else f"'{bag.image_topic}'")
    hint = "wrong gaze file for this bag"
    if match == "index":
        hint += " (or use --match stamp for a bag with dropped frames)"
    return load_gaze(path, n_frames=expected_gaze_frames(bag) if match == "index" else None,
                     size=bag.image_size(), against=f"bag {bag.path} ({source})", hint=hint)


class FrameMatcher:
    """Image ordinal / stamp -> gaze frame index."""

    def __init__(self, match: str, gaze):
        self.match, self.gaze, self.t0 = match, gaze, None

    def __call__(self, ordinal: int, stamp: int) -> int:
        """Gaze frame index of the image with this ordinal and header stamp (ns)."""
        if self.match == "index":
            return ordinal
        if self.t0 is None:
            self.t0 = stamp
        k = int(round((stamp - self.t0) * float(self.gaze.fps) / 1e9))
        if not 0 <= k < self.gaze.n_frames:
            raise ReplayError(f"{self.gaze.path}: image stamped {stamp / 1e9:.3f} s maps to "
                              f"gaze frame {k}, outside [0, {self.gaze.n_frames}) "
                              "(use --match index, or a gaze file of this flight)")
        return k


def input_storage(path: Path) -> str:
    """Storage plugin of an existing bag (sqlite3 or mcap), for "same as input"."""
    if path.is_file():
        return "mcap" if path.suffix == ".mcap" else "sqlite3"
    meta = path / "metadata.yaml"
    try:
        import yaml
        info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
        return "mcap" if info.get("storage_identifier") == "mcap" else "sqlite3"
    except Exception:  # noqa: BLE001 - the reader reports a broken bag properly later
        return "sqlite3"


@contextlib.contextmanager
def maybe_output_bag(out, overwrite, storage, distro):
    """Atomic output bag when ``out`` is set; None otherwise."""
    if out is None:
        yield None
        return
    with atomic_bag_path(out, overwrite) as tmp, OutputBag(tmp, storage, distro) as bag:
        yield bag


def add_scores(stats: dict, maps: list, gaze) -> None:
    """Score ``(frame index, map)`` pairs against the gaze (the evaluate step's function).

    Offline and live replay report the same keys: the gaze file, the mean metrics, the
    number of scored frames and the per-frame scores.
    """
    from skd_saliency_ros.core.metrics import EvalProtocol, score_sequence

    scored = score_sequence(maps, gaze, EvalProtocol())
    stats.update(gaze=str(gaze.path), metrics=scored["mean"], scored_frames=scored["n_frames"],
                 per_frame=scored["per_frame"])
