"""Do people look inside the attention crop?  ``python -m bench.crop_coverage``.

``nice -n 10 python -m bench.crop_coverage --json docs/crop_coverage.json
--plot docs/crop_coverage.png --doc docs/CROPS.md``

An attention crop (core/crops.py) is worth its pixels only if what matters is in it.  On the
bundle's gaze sequences (car10, group2; ``--sequences``) and over every frame with at least one
human fixation, this counts the fixations inside the default model's crop around its strongest
peak, for crops of 25 % and 10 % of the frame's area (``--fractions``) at the frame's aspect
(``--aspect``), and inside a fixed centre crop of the same size and aspect -- what a drone
without saliency would send on.  Reported per sequence, crop size and both together: the
pooled share (fixations inside / all fixations), the per-frame mean of each frame's share,
and the frames where the model's crop holds more, as many, or fewer fixations than the centre's.

The maps are the evaluate step's (training/evaluate.py, ``--models default``): frames area
resized to the model's R (core.maps.resize_area), frame t paired with t-1 (the first with
itself), min-max normalised (training/predict.py), the model run once per frame; both crop
sizes come from the one map and its one peak.  The frames are decoded here, not taken from the
training cache, so nothing is written but the reports.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from skd_saliency_ros.core.input_size import parse_input_size, plain_size, size_of_checkpoint
from skd_saliency_ros.core.crops import (CropError, centre_crop, crop_around, crop_size,
                                         strongest_peak)

SECTION = "bench:crop_coverage"
SEQUENCES = "car10,group2"
FRACTIONS = "0.25,0.1"
#: frames of the rolling mean in the plot's per-frame panel (1.5 s at the bundle's 10 fps)
ROLLING_FRAMES = 15
#: block bootstrap of the model - centre difference: blocks of consecutive frames (3 s at
#: 10 fps, longer than the gaze's frame-to-frame correlation), resamples, seed
BLOCK_FRAMES, RESAMPLES, SEED = 30, 2000, 0


def parse_fractions(text: str) -> List[float]:
    """Return the ``--fractions`` list: distinct area fractions in (0, 1], largest first."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CropError(f"--fractions must be comma-separated numbers, got '{text}'") from None
    if not values or len(set(values)) != len(values):
        raise CropError(f"--fractions needs at least one fraction and none twice, got '{text}'")
    for value in values:
        try:
            crop_size((2, 2), value)  # the one range check: CropError outside (0, 1]
        except CropError as exc:
            raise CropError(f"--fractions: {exc}") from None
    return sorted(values, reverse=True)


def frame_hits(peak, fixations: np.ndarray, image_size, fractions,
               centre: Dict[float, Any], aspect: Optional[float]) -> Dict[float, tuple]:
    """(model hits, centre hits) per fraction for one frame; model hits 0 without a peak.

    ``peak`` is the frame's strongest peak (crops.strongest_peak: found once for all
    fractions) or None; ``fixations`` the gaze file's corner-origin points (N, 2); ``centre``
    the centre crop of each fraction (the same for every frame).
    """
    out = {}
    for fraction in fractions:
        crop = None if peak is None else crop_around(peak, image_size, fraction, aspect)
        model = 0 if crop is None else int(crop.contains(fixations).sum())
        out[fraction] = (model, int(centre[fraction].contains(fixations).sum()))
    return out


def training_role(meta: Dict[str, Any], name: str) -> str:
    """Say what the model saw of a sequence in training, from its checkpoint's record.

    A sequence the model was trained on measures less than a held-out one; its gaze only
    counts as seen when the loss gave the human maps weight (lambda < 1, training/losses.py).
    """
    data = meta.get("data") if isinstance(meta.get("data"), dict) else {}
    train = {d.get("name"): d for d in data.get("train", []) if isinstance(d, dict)}
    if name not in train:
        return "held out" if data else "unknown (the checkpoint records no training data)"
    lam = meta.get("lambda")
    if train[name].get("gaze_frames") and lam is not None and float(lam) < 1.0:
        return f"trained on, gaze in the loss (lambda {lam:g})"
    weight = f" (lambda {lam:g})" if lam is not None else ""
    return "frames trained on (teacher maps), gaze not" + weight


def default_maps(video: Path, gaze: Path, model_path: Path, progress: bool):
    """(VideoSource with its checked gaze, checkpoint payload, iterator of (index, map)).

    Maps are at the checkpoint's input size H x W: each whole frame resized to it by area
    averaging, as the engine does (never cropped).
    """
    from tqdm import tqdm

    from skd_saliency_ros.core.checkpoint import load_checkpoint
    from skd_saliency_ros.core.maps import resize_area
    from training.datasets import VideoSource
    from training.predict import predict_maps

    model, payload = load_checkpoint(model_path)
    size = size_of_checkpoint(payload)
    source = VideoSource(video, gaze_path=gaze)  # loads the gaze, checks it fits the video
    frames = np.stack([resize_area(f, size) for f in
                       tqdm(source.frames(), total=source.n_frames, disable=not progress,
                            desc=f"{source.name}: decode", unit="frame", dynamic_ncols=True)])
    return source, payload, predict_maps(model, frames, range(len(frames)))


def score_sequence(name: str, video: Path, gaze: Path, model_path: Path,
                   fractions: Sequence[float], aspect: Optional[float],
                   progress: bool) -> Dict[str, Any]:
    """Per-frame hits of every fixation frame of one sequence, model crop vs centre crop."""
    from tqdm import tqdm

    source, payload, maps = default_maps(video, gaze, model_path, progress)
    size = (int(source.width), int(source.height))
    gaze_data = source.gaze
    wanted = set(int(k) for k in gaze_data.frames_with_fixations())
    centre = {f: centre_crop(size, f, aspect) for f in fractions}
    frames, counts, no_peak = [], [], 0
    hits: Dict[float, Dict[str, List[int]]] = {f: {"model": [], "centre": []} for f in fractions}
    for index, saliency in tqdm(maps, total=source.n_frames, disable=not progress,
                                desc=f"{name}: crops", unit="frame", dynamic_ncols=True):
        if index not in wanted:
            continue
        fixations = gaze_data.fixations(index)
        peak = strongest_peak(saliency, size)
        no_peak += peak is None
        for fraction, (model, fixed) in frame_hits(peak, fixations, size, fractions,
                                                   centre, aspect).items():
            hits[fraction]["model"].append(model)
            hits[fraction]["centre"].append(fixed)
        frames.append(index)
        counts.append(len(fixations))
    if len(frames) != len(wanted):
        raise CropError(f"{video}: {len(wanted) - len(frames)} frame(s) with fixations got no "
                        "map (the video ends early?)")
    return {"video": str(video), "gaze": str(gaze), "frame_size": list(size),
            "resolution": plain_size(size_of_checkpoint(payload)),
            "training_role": training_role(payload.get("meta") or {}, name),
            "frames_total": int(source.n_frames),
            "frames_no_peak": int(no_peak), "frames": frames, "fixations": counts,
            "crops": {str(f): {"size": [centre[f].width, centre[f].height],
                               "centre_crop": [centre[f].x_offset, centre[f].y_offset,
                                               centre[f].width, centre[f].height],
                               **hits[f]} for f in fractions}}


def difference_interval(per_sequence: Sequence[np.ndarray], block: int = BLOCK_FRAMES,
                        resamples: int = RESAMPLES, seed: int = SEED) -> List[float]:
    """95 % interval of the pooled (model - centre) share by a block bootstrap.

    ``per_sequence``: one (frames, 3) array per sequence of (fixations, model hits, centre
    hits) in frame order.  Neighbouring frames are alike (the same scene, the same gaze),
    so whole blocks of ``block`` consecutive frames are drawn with replacement, within each
    sequence as many as it has (stratified); frames are never treated as independent.
    """
    rng = np.random.default_rng(seed)
    blocks = [np.add.reduceat(rows, np.arange(0, len(rows), block), axis=0)
              for rows in per_sequence]
    totals = np.zeros((resamples, 3))
    for sums in blocks:
        totals += sums[rng.integers(0, len(sums), (resamples, len(sums)))].sum(axis=1)
    diffs = (totals[:, 1] - totals[:, 2]) / totals[:, 0]
    return [float(v) for v in np.percentile(diffs, [2.5, 97.5])]


def summary(sequences: Dict[str, Dict[str, Any]], fraction: float,
            names: Sequence[str]) -> Dict[str, Any]:
    """Pooled share, per-frame mean share and wins of model vs centre over ``names`` together."""
    key = str(fraction)
    counts = np.concatenate([sequences[n]["fixations"] for n in names]).astype(float)
    model = np.concatenate([sequences[n]["crops"][key]["model"] for n in names]).astype(float)
    fixed = np.concatenate([sequences[n]["crops"][key]["centre"] for n in names]).astype(float)
    return {"frames": int(len(counts)), "fixations": int(counts.sum()),
            "model_share": float(model.sum() / counts.sum()),
            "centre_share": float(fixed.sum() / counts.sum()),
            "model_frame_mean": float(np.mean(model / counts)),
            "centre_frame_mean": float(np.mean(fixed / counts)),
            "frames_model_more": int(np.sum(model > fixed)),
            "frames_equal": int(np.sum(model == fixed)),
            "frames_centre_more": int(np.sum(model < fixed)),
            "difference_95": difference_interval([np.column_stack(
                [sequences[n]["fixations"], sequences[n]["crops"][key]["model"],
                 sequences[n]["crops"][key]["centre"]]).astype(float) for n in names])}


def doc_section(result: Dict[str, Any], plot_rel: Optional[str]) -> str:
    """Markdown: the command and conditions, one table row per (sequences, fraction), plot."""
    size = parse_input_size(result["resolution"])
    lines = [f"Command: `{result['command']}` ({result['date']}, {result['seconds']:.0f} s, "
             f"load average before {result['loadavg']}). Model: `{result['model']}` "
             f"({size.described}); crop aspect: {result['aspect_label']}; "
             "every frame with at least one fixation. Share = fixations inside the crop / all "
             "fixations (pooled over frames); per-frame mean = the mean of each frame's share; "
             f"the interval is a block bootstrap ({BLOCK_FRAMES}-frame blocks, {RESAMPLES} "
             "resamples, each sequence resampled on its own).",
             "", "| sequence | frames | fixations | crop (% of area, px) | model crop share | "
             "centre crop share | model − centre (95 % interval) | per-frame mean, model | "
             "per-frame mean, "
             "centre | frames model > / = / < centre |", "|---" * 10 + "|"]
    for row in result["summary"]:
        size = ("x".join(str(v) for v in row["crop_size"]) if row["crop_size"]
                else "sizes differ")
        lines.append(
            f"| {row['sequences']} | {row['frames']} | {row['fixations']:,} | "
            f"{100 * row['fraction']:g} %, {size} | {100 * row['model_share']:.1f} % | "
            f"{100 * row['centre_share']:.1f} % | "
            f"{100 * (row['model_share'] - row['centre_share']):+.1f} pt "
            f"({100 * row['difference_95'][0]:+.1f} to {100 * row['difference_95'][1]:+.1f}) | "
            f"{100 * row['model_frame_mean']:.1f} % | {100 * row['centre_frame_mean']:.1f} % | "
            f"{row['frames_model_more']} / {row['frames_equal']} / "
            f"{row['frames_centre_more']} |")
    no_peak = {n: s["frames_no_peak"] for n, s in result["sequences"].items()}
    lines += ["", "What the model saw of each sequence in training (its checkpoint's record): "
              + "; ".join(f"{n}: {s['training_role']}" for n, s in result["sequences"].items())
              + ". Frames whose map had no peak (no crop, counted as none inside): "
              + ", ".join(f"{n} {v}" for n, v in no_peak.items()) + "."]
    if plot_rel:
        lines += ["", f"![fixations inside the model's crop vs the centre crop]({plot_rel})"]
    return "\n".join(lines)


def _rolling(values: np.ndarray, frames: int) -> np.ndarray:
    """Centred rolling mean (shorter windows at the ends), for a readable per-frame curve."""
    kernel = np.ones(frames)
    return (np.convolve(values, kernel, mode="same")
            / np.convolve(np.ones_like(values), kernel, mode="same"))


def plot(result: Dict[str, Any], path: Path) -> Path:
    """Bars of the pooled shares; per sequence, the per-frame share for the smallest crop."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["summary"]
    names = list(result["sequences"])
    fig = plt.figure(figsize=(12, 4.5))
    grid = fig.add_gridspec(len(names), 2, width_ratios=[1, 1.6])
    bars = fig.add_subplot(grid[:, 0])
    xs = np.arange(len(rows))
    labels = [r["sequences"].replace(" + ", " +\n") + f"\n{100 * r['fraction']:g} %"
              for r in rows]
    bars.bar(xs - 0.2, [100 * r["model_share"] for r in rows], 0.4, label="model crop")
    bars.bar(xs + 0.2, [100 * r["centre_share"] for r in rows], 0.4, label="centre crop")
    for x, r in zip(xs, rows):
        bars.hlines(100 * r["fraction"], x - 0.4, x + 0.4, colors="black", linestyles=":")
    bars.set_xticks(xs, labels, fontsize=7)
    bars.set_ylabel("fixations inside the crop (%)")
    bars.set_ylim(0, 100)
    bars.set_title("pooled share (dotted: the crop's share of the frame)", fontsize=9)
    bars.legend(fontsize=8, loc="upper right")
    smallest = str(min(result["fractions"]))
    for index, name in enumerate(names):
        seq = result["sequences"][name]
        curves = fig.add_subplot(grid[index, 1])
        counts = np.asarray(seq["fixations"], float)
        for who, style, colour in (("model", "-", "C0"), ("centre", "--", "C1")):
            share = np.asarray(seq["crops"][smallest][who], float) / counts
            curves.plot(seq["frames"], 100 * _rolling(share, ROLLING_FRAMES), style,
                        color=colour, label=f"{who} crop")
        curves.set_ylim(0, 100)
        curves.set_ylabel(f"{name}: inside (%)", fontsize=8)
        if index == 0:
            curves.set_title(f"per frame, {100 * float(smallest):g} % crop (rolling mean of "
                             f"{ROLLING_FRAMES} frames)", fontsize=9)
            curves.legend(fontsize=7, loc="lower right", ncol=2)
        if index == len(names) - 1:
            curves.set_xlabel("frame")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _shown(path: Path) -> str:
    """Return a path as the report shows it: relative to the repository when inside it."""
    from training.paths import REPO_ROOT

    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO_ROOT)) if REPO_ROOT in resolved.parents else str(path)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Score every sequence; return the result with its summary rows."""
    import torch

    from bench.report import command_line

    torch.set_num_threads(args.threads)
    fractions = parse_fractions(args.fractions)
    names = [n.strip() for n in args.sequences.split(",") if n.strip()]
    started = time.time()
    loadavg = " ".join(f"{v:.2f}" for v in os.getloadavg())
    sequences = {}
    for name in names:
        video = args.data_dir / "uav_gaze" / f"{name}.mp4"
        gaze = args.data_dir / "uav_gaze" / f"{name}_gaze.npz"
        sequences[name] = score_sequence(name, video, gaze, args.model, fractions,
                                         args.aspect, args.progress)
    groups = [[n] for n in names] + ([names] if len(names) > 1 else [])
    rows = []
    for group in groups:
        for fraction in fractions:
            size = sequences[group[0]]["crops"][str(fraction)]["size"]
            same = all(sequences[n]["crops"][str(fraction)]["size"] == size for n in group)
            rows.append({"sequences": " + ".join(group), "fraction": fraction,
                         "crop_size": size if same else None,
                         **summary(sequences, fraction, group)})
    return {"command": command_line(), "date": datetime.date.today().isoformat(),
            "loadavg": loadavg, "seconds": round(time.time() - started, 1),
            "model": _shown(args.model), "resolution": sequences[names[0]]["resolution"],
            "aspect": args.aspect, "aspect_label": "the frame's" if args.aspect is None
            else f"{args.aspect:g} (width / height)", "fractions": fractions,
            "threads": args.threads, "summary": rows, "sequences": sequences}


def main(argv=None) -> int:
    """Measure; print the table; write JSON, plot and the doc section (each when asked)."""
    from skd_saliency_ros.core.checkpoint import DEFAULT_MODEL
    from skd_saliency_ros.core.errors import run_reporting_user_errors
    from skd_saliency_ros.core.output_paths import Output, check_outputs
    from training.paths import default_data_dir

    parser = argparse.ArgumentParser(prog="python -m bench.crop_coverage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", default=SEQUENCES,
                        help="gaze sequences of <data-dir>/uav_gaze (default %(default)s)")
    parser.add_argument("--fractions", default=FRACTIONS,
                        help="crop areas as fractions of the frame (default %(default)s)")
    parser.add_argument("--aspect", type=float, default=None,
                        help="crop width / height (default: the frame's)")
    parser.add_argument("--model", type=Path, default=Path(DEFAULT_MODEL),
                        help="checkpoint (default: the shipped default model)")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(),
                        help="data bundle (default %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--doc", type=Path, default=None,
                        help=f"Markdown file whose {SECTION} section is replaced")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)

    def body() -> int:
        from bench.report import write_json_and_doc

        if args.threads < 1:
            raise CropError(f"--threads must be >= 1, got {args.threads}")
        parse_fractions(args.fractions)
        try:
            crop_size((2, 2), 0.5, args.aspect)  # a bad --aspect fails before any work
        except CropError as exc:
            raise CropError(f"--aspect: {exc}") from None
        names = [n.strip() for n in args.sequences.split(",") if n.strip()]
        if not names or len(set(names)) != len(names):
            raise CropError(f"--sequences needs at least one name and none twice, got "
                            f"'{args.sequences}'")
        inputs = [("--model", args.model)] + [
            (label, args.data_dir / "uav_gaze" / f"{n}{suffix}") for n in names
            for label, suffix in (("video", ".mp4"), ("gaze", "_gaze.npz"))]
        check_outputs([Output(label, path, regenerated=True) for label, path in
                       (("--json", args.json), ("--plot", args.plot), ("--doc", args.doc))],
                      inputs=inputs)
        result = run(args)
        plot_rel = None
        if args.plot:
            print(f"wrote {plot(result, args.plot)}")
            if args.doc:
                plot_rel = os.path.relpath(args.plot.resolve(), args.doc.resolve().parent)
        text = doc_section(result, plot_rel)
        print(text)
        write_json_and_doc(result, args.json, args.doc, SECTION, text)
        if args.json:
            print(f"wrote {args.json}")
        return 0

    return run_reporting_user_errors("python -m bench.crop_coverage", body)


if __name__ == "__main__":
    sys.exit(main())
