"""``python -m training teach``: precompute the teacher-map and frame caches of the data bundle.

Running it once before training means distil/transfer/evaluate only read the cache.  Every
source is decoded once per run: all requested resolutions' frames and all teachers' maps are
filled in the same pass, and whatever is already cached is skipped.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from skd_saliency_ros.core.output_paths import Output, check_outputs
from skd_saliency_ros.core.input_size import size_argument

from .paths import default_cache_dir, default_data_dir

DEFAULT_TEACHERS = "spectral-residual,fine-grained,motion-homography"
SPLITS = ("train", "val", "fidelity")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the teach step."""
    parser.add_argument("--data", type=Path, default=None, metavar="MANIFEST",
                        help="dataset manifest (docs/TRAINING.md; default: the shared "
                        "bundle's config/datasets/bundle.yaml)")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(),
                        help="data bundle, {data_dir} in manifests (default $SKD_DATA_DIR or "
                        "../shared/data)")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                        help="cache directory (default $SKD_CACHE_DIR or .cache/skd)")
    parser.add_argument("--resolution", "-R", type=size_argument, nargs="+", default=[64],
                        help="frame cache input size(s): R or HxW (e.g. 64 48x80), "
                             "multiples of 4 (default 64)")
    parser.add_argument("--teachers", default=DEFAULT_TEACHERS,
                        help="comma-separated teacher specs: built-in names, teacher YAML "
                        "files, or a deep teacher fed frames shrunk to R x R (or HxW) first, e.g. "
                        f"tinyhd-m@64 (default {DEFAULT_TEACHERS})")
    parser.add_argument("--split", choices=("all",) + SPLITS, default="all",
                        help="which sources of the manifest (default all: train, val and the "
                        "held-out fidelity clips)")
    parser.add_argument("--max-frames", type=int, default=None,
                        help="only the first N frames of each source (default all)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no tqdm progress bars")
    parser.add_argument("--score", action="store_true",
                        help="also score every teacher's cached maps against the gaze of the "
                        "sources that have it (skd_saliency_ros.core.metrics, default protocol)")


def run(args: argparse.Namespace) -> int:
    """Fill the caches and print one summary line per source."""
    from tqdm import tqdm

    from .datasets import DatasetError, ensure_cache, prepare_source
    from .manifest import load_manifest
    from .teachers import get_teachers

    if args.max_frames is not None and args.max_frames < 1:
        raise DatasetError(f"--max-frames must be >= 1, got {args.max_frames}")
    manifest = load_manifest(args.data, args.data_dir)  # checked before any teacher runs
    sources = manifest.train + manifest.val + manifest.fidelity
    check_outputs([Output("--cache-dir", args.cache_dir, folder=True, regenerated=True)],
                  inputs=[("--data", manifest.path), ("--data-dir", args.data_dir)]
                  + [("source", s.path) for s in sources]
                  + [("gaze file", s.gaze_path) for s in sources])
    teachers = get_teachers(args.teachers)
    splits = {"train": manifest.train, "val": manifest.val, "fidelity": manifest.fidelity}
    chosen = [(split, s) for split in SPLITS if args.split in ("all", split)
              for s in splits[split]]
    if not chosen:
        raise DatasetError(f"{manifest.path}: no {args.split} sources (the manifest has no "
                           f"'{args.split}:' split)")
    rows, t_start = [], time.perf_counter()
    bar = tqdm(chosen, desc="teach", unit="video", disable=not args.progress,
               dynamic_ncols=True)
    for split, source in bar:
        bar.set_postfix_str(source.name)
        t0 = time.perf_counter()
        spent = ensure_cache(source, args.resolution, teachers, args.cache_dir,
                             args.max_frames, args.progress)
        prep = prepare_source(source, args.resolution[0], teachers, args.cache_dir,
                              args.max_frames, progress=False)
        rows.append((split, source.name, f"{source.width}x{source.height}", len(prep),
                     int(prep.has_gaze.sum()), time.perf_counter() - t0,
                     " ".join(f"{k}={v:.1f}s" for k, v in spent.items() if v > 0) or "cached"))
    bar.close()
    print(f"teachers: {', '.join(t.name for t in teachers)}; resolutions: "
          f"{' '.join(str(r) for r in args.resolution)}; cache: {args.cache_dir}")
    print(f"{'split':8s} {'source':12s} {'size':9s} {'frames':>6s} {'gaze':>5s} "
          f"{'time_s':>7s}  teacher time")
    for split, name, size, n, g, dt, spent in rows:
        print(f"{split:8s} {name:12s} {size:9s} {n:6d} {g:5d} {dt:7.1f}  {spent}")
    total = sum(r[3] for r in rows)
    print(f"total: {len(rows)} sources, {total} frames, "
          f"{time.perf_counter() - t_start:.1f} s")
    if args.score:
        print_scores([s for _, s in chosen if s.gaze is not None], teachers, args)
    return 0


def print_scores(sources, teachers, args: argparse.Namespace) -> None:
    """Score the cached teacher maps over each gaze source (frames with >= 1 fixation).

    A temporal teacher's frame 0 is the documented all-zero map and is scored as such.
    """
    import numpy as np
    from skd_saliency_ros.core.metrics import METRIC_KEYS, format_metric, score_sequence

    from .datasets import cached_teacher_maps

    print(f"{'source':8s} {'teacher':20s} " + " ".join(f"{k:>12s}" for k in METRIC_KEYS)
          + f" {'frames':>6s}")
    for source in sources:
        for teacher in teachers:
            stored = cached_teacher_maps(source, teacher, args.cache_dir)
            n = source.n_frames if args.max_frames is None else min(args.max_frames,
                                                                    source.n_frames)
            maps = ((k, np.asarray(stored[k], np.float32) / 255.0) for k in range(n))
            res = score_sequence(maps, source.gaze)
            print(f"{source.name:8s} {teacher.name:20s} "
                  + " ".join(f"{format_metric(res['mean'][k]):>12s}" for k in METRIC_KEYS)
                  + f" {res['n_frames']:6d}")
