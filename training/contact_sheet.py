"""``python -m training contact-sheet``: look at the maps, not only at the numbers.

One PNG: a row per frame (two frames from each of several clips of the bundle), a column per
model.  Column one is the frame; every other column is a heat map blended over the frame, so
a reader sees at once what each model learned: whether it finds the people, cars and boats a
human would look at, lights a band along a border, or draws the same blob on every clip.

Checkpoints run the way the node runs them (the whole frame resized to the checkpoint's input
size H x W by area averaging, never cropped, frame t paired with t-1, min-max normalised),
their column titled with that size ("64" or "48x80", H x W); ``default`` is the shipped
model; a teacher (``teacher:tinyhd-m``) labels the frame from the clip of its window that
ends on that frame.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np

from skd_saliency_ros.core.input_size import size_of_checkpoint
from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.output_paths import Output, check_outputs

# Two frames from each of six clips: both gaze videos and four unlabeled clips of other
# datasets, scenes and light (night traffic, animals, a top-down field, a wake).
DEFAULT_FRAMES = ("uav_gaze/group2.mp4:150,600;uav_gaze/car10.mp4:100,400;"
                  "uav_unlabeled/UAVDT_S1301.mp4:120,420;uav_unlabeled/DTB70_Animal3.mp4:60,250;"
                  "uav_unlabeled/UAV123_10fps_person9.mp4:40,180;"
                  "uav_unlabeled/wakeboard5.mp4:120,450")


class ContactSheetError(SkdError, ValueError):
    """A clip, frame index or model the contact sheet cannot use."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the contact-sheet step."""
    from .paths import default_data_dir

    parser.add_argument("--models", default="default,teacher:tinyhd-m",
                        help="comma-separated columns: default, checkpoint paths, "
                             "teacher:<spec>; a label with NAME=MODEL (default %(default)s)")
    parser.add_argument("--frames", default=DEFAULT_FRAMES,
                        help="CLIP:i,j;CLIP:k,... video paths (relative to --data-dir) and "
                             "0-based frame indices (default: 12 frames from 6 clips)")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing PNG")
    parser.add_argument("--alpha", type=float, default=0.55, help="heat-map weight")


def parse_frames(text: str, data_dir: Path) -> List[Tuple[Path, List[int]]]:
    """``CLIP:i,j;CLIP:k`` -> [(video path, [i, j]), ...], checked for existence."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        clip, _, idx = part.rpartition(":")
        if not clip or not idx:
            raise ContactSheetError(f"--frames: {part!r} is not CLIP:i,j")
        try:
            indices = [int(i) for i in idx.split(",") if i.strip()]
        except ValueError as exc:
            raise ContactSheetError(f"--frames: {part!r}: frame indices must be integers"
                                    ) from exc
        path = Path(clip) if Path(clip).is_absolute() else data_dir / clip
        if not path.is_file():
            raise ContactSheetError(f"--frames: {path}: no such video")
        out.append((path, indices))
    if not out:
        raise ContactSheetError("--frames names no clip")
    return out


def _columns(spec: str) -> List[Tuple[str, str]]:
    cols = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        label, _, model = item.rpartition("=") if "=" in item else (item, "", item)
        cols.append((label, model))
    return cols


def _heat(frame: np.ndarray, sal: np.ndarray, alpha: float) -> np.ndarray:
    """Blend a jet heat map of ``sal`` (any size, [0, 1]) over the RGB frame."""
    sal = cv2.resize(sal.astype(np.float32), (frame.shape[1], frame.shape[0]),
                     interpolation=cv2.INTER_LINEAR)
    heat = cv2.applyColorMap(np.clip(sal * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(frame, 1 - alpha, cv2.cvtColor(heat, cv2.COLOR_BGR2RGB), alpha, 0)


def _column_titles(columns: List[Tuple[str, str]]) -> List[str]:
    """Column titles: a checkpoint's label followed by its input size label, e.g. "wide 48x80".

    Models at different input sizes on one sheet are then told apart at a glance.
    """
    from skd_saliency_ros.core.checkpoint import DEFAULT_MODEL, read_checkpoint

    titles = []
    for label, model in columns:
        if model.startswith("teacher:"):
            titles.append(label)
            continue
        payload = read_checkpoint(DEFAULT_MODEL if model == "default" else model)
        titles.append(f"{label} {size_of_checkpoint(payload).label}")
    return titles


def clip_maps(path: Path, indices: List[int], columns: List[Tuple[str, str]]
              ) -> Tuple[List[np.ndarray], Dict[str, List[np.ndarray]]]:
    """Frames (shown at 320 px width) and each column's map for the chosen frames."""
    from skd_saliency_ros.core.checkpoint import DEFAULT_MODEL, load_checkpoint
    from skd_saliency_ros.core.maps import resize_area

    from .datasets import VideoSource
    from .predict import predict_maps
    from .teachers import get_teacher

    source = VideoSource(path)
    bad = [i for i in indices if not 0 <= i < source.n_frames]
    if bad:
        raise ContactSheetError(f"{path}: frame(s) {bad} outside 0..{source.n_frames - 1}")
    last = max(indices)
    frames = list(source.frames(0, last + 1))
    shown = [cv2.resize(frames[i], (320, int(round(320 * source.height / source.width))),
                        interpolation=cv2.INTER_AREA) for i in indices]
    maps: Dict[str, List[np.ndarray]] = {}
    for label, model in columns:
        if model.startswith("teacher:"):
            teacher = get_teacher(model.split(":", 1)[1])
            maps[label] = []
            for i in indices:
                start = max(0, i + 1 - max(teacher.window, 2))
                window = frames[start:i + 1]
                if len(window) < teacher.window:  # too close to the start: pad, as its rule
                    window = [frames[0]] * (teacher.window - len(window)) + window
                maps[label].append(list(teacher.label_frames(window))[-1])
            continue
        net, payload = load_checkpoint(DEFAULT_MODEL if model == "default" else model)
        small = np.stack([resize_area(f, size_of_checkpoint(payload)) for f in frames])
        maps[label] = [m for _, m in predict_maps(net, small, indices)]
    return shown, maps


def run(args: argparse.Namespace) -> int:
    """Draw the sheet; refuses to overwrite an existing PNG without --overwrite."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tqdm import tqdm

    clips = parse_frames(args.frames, args.data_dir)
    columns = _columns(args.models)
    models = [m for _, m in columns if m != "default" and not m.startswith("teacher:")]
    check_outputs([Output("--out", args.out)],
                  inputs=[("--data-dir", args.data_dir)] + [("clip", p) for p, _ in clips]
                  + [("--models", m) for m in models], overwrite=args.overwrite)
    titles = _column_titles(columns)
    rows = []
    for path, indices in tqdm(clips, desc="contact sheet", unit="clip"):
        shown, maps = clip_maps(path, indices, columns)
        for j, index in enumerate(indices):
            rows.append((f"{path.stem} #{index}", shown[j],
                         [_heat(shown[j], maps[label][j], args.alpha) for label, _ in columns]))
    ncol = 1 + len(columns)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(2.6 * ncol, 1.55 * len(rows)),
                             squeeze=False)
    for r, (name, frame, heats) in enumerate(rows):
        for c, img in enumerate([frame] + heats):
            ax = axes[r][c]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("frame" if c == 0 else titles[c - 1], fontsize=9)
            if c == 0:
                ax.set_ylabel(name, fontsize=7)
    fig.tight_layout(pad=0.3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    plt.close(fig)
    print(f"wrote {args.out}: {len(rows)} frames x {len(columns)} models "
          f"({', '.join(titles)})")
    return 0
