"""Measure the baseline floors of ../shared/PAPER.md with skd_saliency_ros.core.metrics.

Baselines: ``center`` (the AVS1K mean prior, the same map for every frame) and ``spectral``
(OpenCV contrib's spectral-residual static saliency of each full-size frame).  Prints a
Markdown table; with ``--seeds`` > 1 the last column gives the sAUC range over the seeds of
the other-frame draw (the other columns do not depend on the seed; spectral maps are decoded
again for every seed).  Usage (from the repository root)::

    PYTHONPATH=$PWD .venv/bin/python tools/metric_floors.py --sequences car10 group2 \
        --baselines center spectral --seeds 5
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from skd_saliency_ros.core.errors import run_reporting_user_errors
from skd_saliency_ros.core.frames import FrameSource
from skd_saliency_ros.core.gaze import load_gaze
from skd_saliency_ros.core.metrics import EvalProtocol, METRIC_KEYS, score_sequence

DEFAULT_DATA = Path(os.environ.get("SKD_DATA_DIR",
                                   Path(__file__).resolve().parents[1].parent / "shared" / "data"))


def center_maps(data: Path, n_frames: int):
    """Return the AVS1K mean prior for every frame."""
    prior = np.load(data / "priors" / "avs1k_center_prior.npz")["mean_prior"]
    return {k: prior for k in range(n_frames)}


def spectral_maps(video: Path, n_frames: int):
    """Yield (frame_index, spectral-residual map) for the first ``n_frames`` of ``video``.

    OpenCV's saliency works on its own BGR frames; a video that ends early stops the run
    with a FrameSourceError naming it.
    """
    frames = FrameSource(video, order="bgr").frames(0, n_frames)
    model = cv2.saliency.StaticSaliencySpectralResidual_create()
    for k, frame in enumerate(tqdm(frames, total=n_frames, desc=f"spectral {video.stem}",
                                   unit="frame")):
        ok, sal = model.computeSaliency(frame)
        if not ok:
            raise SystemExit(f"{video}: spectral residual failed on frame {k}")
        yield k, sal


def main(argv=None) -> int:
    """Score the baselines and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--sequences", nargs="+", default=["car10", "group2"])
    parser.add_argument("--baselines", nargs="+", default=["center"],
                        choices=["center", "spectral"])
    parser.add_argument("--seeds", type=int, default=1,
                        help="sAUC draws to report (seeds 0..N-1; the table keeps seed 0)")
    args = parser.parse_args(argv)
    print("| sequence | baseline | " + " | ".join(METRIC_KEYS) + " | sAUC over seeds |")
    print("|---" * (len(METRIC_KEYS) + 3) + "|")
    for seq in args.sequences:
        gaze = load_gaze(args.data / "uav_gaze" / f"{seq}_gaze.npz")
        for name in args.baselines:
            video = args.data / "uav_gaze" / f"{seq}.mp4"
            # Full-size spectral maps are 3.7 MB each: stream them, decoding again per seed.
            results = [score_sequence(center_maps(args.data, gaze.n_frames) if name == "center"
                                      else spectral_maps(video, gaze.n_frames),
                                      gaze, EvalProtocol(seed=s)) for s in range(args.seeds)]
            mean = results[0]["mean"]
            saucs = [r["mean"]["auc_shuffled"] for r in results]
            print(f"| {seq} | {name} | " + " | ".join(f"{mean[k]:.3f}" for k in METRIC_KEYS)
                  + f" | {min(saucs):.3f}-{max(saucs):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(run_reporting_user_errors("metric_floors", main))
