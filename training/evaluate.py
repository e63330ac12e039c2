"""The evaluate step: score saliency models on one video with gaze, as the paper's Table I.

``python -m training evaluate --video V.mp4 --gaze V_gaze.npz
--models default,center,spatial-teacher,temporal-teacher --json out.json``, or
``--data MANIFEST`` instead of ``--video/--gaze``: every validation source of a dataset
manifest, each reported, with the mean over them as the ``models`` entry.

Models (comma-separated, any mix):

* ``default``: the shipped checkpoint (``skd_saliency_ros.core.checkpoint.DEFAULT_MODEL``);
* a checkpoint path (``*.pt``): any student or fused model, run at its own resolution;
* ``center``: the AVS1K centre prior of the data bundle (``center-uav2``: the EyeTrackUAV2 one);
* ``spatial-teacher`` / ``temporal-teacher``: the teachers named by ``--spatial-teacher`` /
  ``--temporal-teacher``; ``teacher:<spec>``: any other teacher (e.g. ``teacher:fine-grained``).

Every model is scored with ``metrics.score_sequence`` (MIT conventions, eval maps at 1/4 of the
video size), averaged over frames with at least one fixation.  Student / fused models see frame t
paired with t-1 at their R (first frame with itself) and their output is min-max normalised per
frame; teachers run on the full-resolution frames (``--teacher-maps direct``, the default) or
come from the training cache at ``--teacher-resolution`` (``--teacher-maps cache``).

Writes the JSON (``{"models": {name: {auc_judd, auc_shuffled, nss, sim, cc, kld, n_frames,
...}}, "meta": {...}}``), a Markdown table in Table I's layout (``--markdown``, default beside
the JSON) and a pooled ROC plot (``--roc``, default beside the JSON).

``--fidelity`` scores instead how closely each model copies ``--teacher`` (default tinyhd-m)
on the manifest's held-out ``fidelity:`` clips (no gaze needed): CC, KLD and NSS at the
teacher's peaks against the teacher's cached maps of the full frames, per clip and the mean,
next to the ceiling ``<teacher>@R`` (the teacher fed the student's R x R frames) and each
student's gap to it (training/fidelity.py).  ``--models`` then takes checkpoints, ``default``
and the centre priors; JSON ``{"models", "per_clip", "meta"}`` and Markdown, no ROC.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from skd_saliency_ros.core.metrics import format_metric, mean_over_sources
from skd_saliency_ros.core.output_paths import Output, check_outputs
from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.input_size import (InputSize, InputSizeError, parse_input_size,
                                              plain_size, size_of_checkpoint)


class EvaluationError(SkdError, ValueError):
    """A model name, file or option the evaluate step cannot use."""


TABLE_COLUMNS = (("auc_judd", "AUC"), ("auc_shuffled", "sAUC"), ("nss", "NSS"),
                 ("sim", "SIM"), ("cc", "CC"), ("kld", "KLD"))
PRIORS = {"center": "avs1k_center_prior.npz", "center-uav2": "uav2_center_prior.npz"}
GAZE_MODELS = "default,center,spatial-teacher,temporal-teacher"
FIDELITY_MODELS = "default"


def _size_list(text: str) -> List[InputSize]:
    """``--ceiling-sizes``: comma-separated R or HxW."""
    try:
        return [parse_input_size(t, "--ceiling-sizes") for t in text.split(",") if t.strip()]
    except InputSizeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m training evaluate``."""
    from .fidelity import DEFAULT_TEACHER
    from .paths import default_cache_dir, default_data_dir
    from .teachers import DEFAULT_SPATIAL, DEFAULT_TEMPORAL

    parser.add_argument("--video", type=Path, default=None,
                        help="video (mp4/avi) to score on (or --data)")
    parser.add_argument("--gaze", type=Path, default=None, help="its gaze file (.npz)")
    parser.add_argument("--data", type=Path, default=None, metavar="MANIFEST",
                        help="score on every validation source of this dataset manifest "
                             "instead of --video/--gaze (each reported, plus the mean)")
    parser.add_argument("--models", default=None,
                        help="comma-separated: default, center, center-uav2, spatial-teacher, "
                             "temporal-teacher, teacher:<spec>, or checkpoint paths (default: "
                             f"{GAZE_MODELS}; with --fidelity: checkpoints, default and "
                             f"centre priors, default {FIDELITY_MODELS})")
    parser.add_argument("--fidelity", action="store_true",
                        help="score how closely each model copies --teacher on the fidelity: "
                             "clips of --data (default: the bundle's 8 held-out clips), next to "
                             "the ceiling <teacher>@R (training/fidelity.py)")
    parser.add_argument("--ceiling-sizes", type=_size_list, default=None, metavar="SIZES",
                        help="--fidelity: also score the ceiling at these input sizes, "
                             "comma-separated R or HxW (e.g. 64,48x80,64x112), with or "
                             "without models")
    parser.add_argument("--teacher", default=DEFAULT_TEACHER,
                        help="--fidelity: the teacher copied, whose cached maps are the "
                             "reference (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="Table I Markdown (default: <json>.md when --json is given)")
    parser.add_argument("--roc", type=Path, default=None,
                        help="ROC plot PNG (default: <json>.roc.png when --json is given)")
    parser.add_argument("--title", default=None, help="caption of the table and plot")
    parser.add_argument("--max-frames", type=int, default=None,
                        help="score only the first n frames")
    parser.add_argument("--teacher-resolution", type=int, default=256,
                        help="square size at which teacher maps are read from the cache "
                             "before scoring at the eval size (default 256)")
    parser.add_argument("--teacher-maps", choices=("direct", "cache"), default="direct",
                        help="direct: run teachers on the full-resolution frames (their true "
                             "quality); cache: read the uint8 training cache at "
                             "--teacher-resolution (what the students saw); default direct")
    parser.add_argument("--spatial-teacher", default=DEFAULT_SPATIAL,
                        help="teacher behind 'spatial-teacher' (default: %(default)s)")
    parser.add_argument("--temporal-teacher", default=DEFAULT_TEMPORAL,
                        help="teacher behind 'temporal-teacher' (default: %(default)s)")
    parser.add_argument("--data-dir", type=Path, default=default_data_dir(),
                        help="data bundle holding priors/ (default: %(default)s)")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                        help="teacher-map cache (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing --json/--markdown/--roc files")
    parser.add_argument("--pair-gap", type=int, default=1,
                        help="pair frame t with frame t-N for the two-stream models (default 1, "
                             "the previous frame, as the node does; 0: each frame with itself)")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


# --------------------------------------------------------------------------- model sources
class _Context:
    """Lazily prepared frames / teacher maps of the evaluated video, shared by all models.

    The video is ``args.video`` with ``args.gaze``, or ``source`` (a fidelity clip, which
    may have no gaze).
    """

    def __init__(self, args: argparse.Namespace, source=None):
        from .datasets import VideoSource

        if source is None:
            if not args.video.is_file():
                raise EvaluationError(f"{args.video}: no such video file")
            source = VideoSource(args.video, gaze_path=args.gaze)  # loads and checks the gaze
        self.args = args
        self.source = source
        self.gaze = self.source.gaze
        self._prepared: Dict[Tuple[int, Tuple[str, ...]], Any] = {}
        if args.teacher_resolution % 4 or args.teacher_resolution < 8:
            raise EvaluationError(f"--teacher-resolution must be a multiple of 4, >= 8; got "
                                  f"{args.teacher_resolution}")

    def prepared(self, resolution: int, teachers=()):
        """Frames (and teacher maps) at ``resolution``; frames-only results are kept."""
        from .datasets import prepare_source

        key = (resolution, tuple(t.name for t in teachers))
        if key in self._prepared:
            return self._prepared[key]
        prepared = prepare_source(self.source, resolution, list(teachers),
                                  cache_dir=self.args.cache_dir,
                                  max_frames=self.args.max_frames, progress=self.args.progress)
        if not teachers:  # teacher maps are big at the default 256: not kept
            self._prepared[key] = prepared
        return prepared

    def frame_count(self) -> int:
        """Frames to score for maps that need no video (the priors)."""
        n = int(self.gaze.n_frames) if self.gaze is not None else int(self.source.n_frames)
        return n if self.args.max_frames is None else min(n, self.args.max_frames)


def _checkpoint_maps(ctx: _Context, path: Path) -> Tuple[Dict[str, Any], Iterator]:
    from skd_saliency_ros.core.checkpoint import load_checkpoint
    from skd_saliency_ros.core.models import count_parameters

    from .predict import predict_maps

    model, payload = load_checkpoint(path)
    size = size_of_checkpoint(payload)
    frames = ctx.prepared(size).frames
    info = {"type": "checkpoint", "path": str(path), "kind": payload["kind"],
            "arch": payload["arch"].get("name", "?"), "resolution": plain_size(size),
            "params": count_parameters(model), "pair_gap": int(ctx.args.pair_gap)}
    if ctx.args.pair_gap < 0:
        raise EvaluationError(f"--pair-gap must be >= 0 frames, got {ctx.args.pair_gap}")
    return info, predict_maps(model, frames, range(len(frames)), gap=ctx.args.pair_gap)


def _teacher_maps(ctx: _Context, spec: str) -> Tuple[Dict[str, Any], Iterator]:
    from .teachers import get_teacher

    teacher = get_teacher(spec)
    if ctx.args.teacher_maps == "direct":
        return _teacher_maps_direct(ctx, teacher)
    prepared = ctx.prepared(ctx.args.teacher_resolution, [teacher])
    maps = prepared.teacher_maps[teacher.name]
    info = {"type": "teacher", "teacher": teacher.name, "kind": teacher.kind,
            "resolution": ctx.args.teacher_resolution}
    return info, ((k, maps[k]) for k in range(len(maps)))


def _teacher_maps_direct(ctx: _Context, teacher) -> Tuple[Dict[str, Any], Iterator]:
    """Run the teacher on every full-resolution frame (no cache, no uint8 storage).

    Each map is shrunk to the eval size with area interpolation right away, which is what
    ``score_sequence`` would do with the full-size map, so the scores are the same.
    """
    from skd_saliency_ros.core.metrics import EvalProtocol

    eval_h, eval_w = EvalProtocol().eval_shape(ctx.gaze)
    n = ctx.source.n_frames if ctx.args.max_frames is None else \
        min(ctx.source.n_frames, ctx.args.max_frames)

    def maps():
        for k, sal in enumerate(teacher.label_frames(ctx.source.frames(0, n))):
            yield k, cv2.resize(sal, (eval_w, eval_h), interpolation=cv2.INTER_AREA)

    info = {"type": "teacher", "teacher": teacher.name, "kind": teacher.kind,
            "resolution": "full (direct)"}
    return info, maps()


def _prior_maps(ctx: _Context, name: str) -> Tuple[Dict[str, Any], Iterator]:
    path = ctx.args.data_dir / "priors" / PRIORS[name]
    try:
        with np.load(path) as data:
            prior = np.asarray(data["mean_prior"], dtype=np.float32)
    except (OSError, KeyError, ValueError) as exc:
        raise EvaluationError(f"{path}: cannot read the centre prior 'mean_prior' "
                              f"({type(exc).__name__}: {exc})") from exc
    n = ctx.frame_count()
    info = {"type": "prior", "path": str(path), "kind": "prior", "params": 0}
    return info, ((k, prior) for k in range(n))


def _is_teacher(name: str) -> bool:
    return name in ("spatial-teacher", "temporal-teacher") or name.startswith("teacher:")


def checkpoint_path(name: str) -> Optional[Path]:
    """Return the checkpoint a ``--models`` entry names (``default`` or a path), else None."""
    from skd_saliency_ros.core.checkpoint import DEFAULT_MODEL

    if name == "default":
        return Path(DEFAULT_MODEL)
    if name in PRIORS or _is_teacher(name):
        return None
    path = Path(name)
    return path if path.suffix == ".pt" or path.exists() else None


def resolve_model(ctx: _Context, name: str) -> Tuple[Dict[str, Any], Iterator]:
    """Map a ``--models`` entry to (info, iterator of (frame_index, map))."""
    if name in PRIORS:
        return _prior_maps(ctx, name)
    if name == "spatial-teacher":
        return _teacher_maps(ctx, ctx.args.spatial_teacher)
    if name == "temporal-teacher":
        return _teacher_maps(ctx, ctx.args.temporal_teacher)
    if name.startswith("teacher:"):
        return _teacher_maps(ctx, name.split(":", 1)[1])
    path = checkpoint_path(name)
    if path is not None:
        return _checkpoint_maps(ctx, path)
    raise EvaluationError(f"--models: '{name}' is not a model name (default, center, "
                          "center-uav2, spatial-teacher, temporal-teacher, teacher:<spec>) "
                          "nor an existing checkpoint file")


# --------------------------------------------------------------------------- ROC
class PooledROC:
    """ROC pooled over frames: fixated eval pixels vs all eval pixels (AUC-Judd's sets)."""

    BINS = 1000

    def __init__(self):
        self.pos = np.zeros(self.BINS, dtype=np.int64)
        self.neg = np.zeros(self.BINS, dtype=np.int64)

    def add(self, saliency: np.ndarray, points_xy: np.ndarray, video_size, eval_size) -> None:
        """Add one frame: its map (any size) and its fixations in video pixels."""
        from skd_saliency_ros.core.metrics import prepare_saliency

        (w, h), (ew, eh) = video_size, eval_size
        sal = prepare_saliency(saliency, (eh, ew))
        bins = np.minimum((sal * self.BINS).astype(np.int64), self.BINS - 1)
        self.neg += np.bincount(bins.ravel(), minlength=self.BINS)
        if len(points_xy):
            xs = np.clip((points_xy[:, 0] * ew / w).astype(int), 0, ew - 1)
            ys = np.clip((points_xy[:, 1] * eh / h).astype(int), 0, eh - 1)
            self.pos += np.bincount(bins[ys, xs], minlength=self.BINS)

    def curve(self) -> Tuple[np.ndarray, np.ndarray, float]:
        """Return (FPR, TPR, area) with thresholds swept from high to low."""
        tp = np.concatenate([[0], np.cumsum(self.pos[::-1])]) / max(self.pos.sum(), 1)
        fp = np.concatenate([[0], np.cumsum(self.neg[::-1])]) / max(self.neg.sum(), 1)
        return fp, tp, float(np.trapezoid(tp, fp))


# --------------------------------------------------------------------------- scoring
def score_model(ctx: _Context, name: str, protocol) -> Tuple[Dict[str, Any], PooledROC]:
    """Score one model; return its result dict and pooled ROC."""
    from skd_saliency_ros.core.metrics import score_sequence

    info, maps = resolve_model(ctx, name)
    gaze = ctx.gaze
    video_size = (int(gaze.width), int(gaze.height))
    eval_h, eval_w = protocol.eval_shape(gaze)
    eval_size = (eval_w, eval_h)
    roc = PooledROC()
    kept: List[Tuple[int, np.ndarray]] = []
    started = time.time()
    for index, saliency in maps:
        if index >= gaze.n_frames:
            break
        kept.append((index, saliency))
        roc.add(saliency, gaze.fixations(index), video_size, eval_size)
    result = score_sequence(kept, gaze, protocol)
    out = {k: None if v is None else float(v) for k, v in result["mean"].items()}
    out["n_frames"] = int(result["n_frames"])
    out.update(info)
    out["seconds"] = round(time.time() - started, 2)
    return out, roc


def markdown_table(results: Dict[str, Dict[str, Any]], title: str) -> str:
    """Table I layout: one row per model, AUC / sAUC / NSS / SIM / CC (+ KLD, params)."""
    head = "| model | " + " | ".join(c for _, c in TABLE_COLUMNS) + " | params (M) | frames |"
    lines = [f"**{title}**", "", head, "|" + "---|" * (len(TABLE_COLUMNS) + 3)]
    for name, res in results.items():
        params = res.get("params")
        cells = [format_metric(res[k]) for k, _ in TABLE_COLUMNS]
        cells.append(f"{params / 1e6:.3f}" if params else "-")
        cells.append(str(res["n_frames"]))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Higher is better for every column except KLD. Averages over frames with at "
                 "least one fixation; eval maps at 1/4 of the video size (MIT conventions).")
    return "\n".join(lines) + "\n"


def plot_roc(path: Path, rocs: Dict[str, PooledROC], title: str) -> None:
    """All models' pooled ROC curves in one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, roc in rocs.items():
        fp, tp, area = roc.curve()
        ax.plot(fp, tp, label=f"{name} (pooled AUC {area:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("false positive rate (all pixels)")
    ax.set_ylabel("true positive rate (fixations)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _outputs(args: argparse.Namespace, names: List[str], inputs: List[Tuple[str, Path]],
             roc: bool = True) -> Dict[str, Path]:
    """Return the files to write (Markdown, ROC beside the JSON by default).

    The one output-path rule (core/output_paths) before any work: no output on, in or
    around an input (videos, gaze files, checkpoints, the data), none overwritten unasked.
    """
    outs = {}
    if args.json:
        outs["json"] = args.json
        base = args.json.with_suffix("")
        outs["markdown"] = args.markdown or base.with_name(base.name + ".md")
        if roc:
            outs["roc"] = args.roc or base.with_name(base.name + ".roc.png")
    else:
        if args.markdown:
            outs["markdown"] = args.markdown
        if args.roc:
            outs["roc"] = args.roc
    check_outputs([Output(f"--{key}", path) for key, path in outs.items()]
                  + [Output("--cache-dir", args.cache_dir, folder=True, regenerated=True)],
                  inputs=inputs + [("--data", args.data), ("--data-dir", args.data_dir)]
                  + [("--models", checkpoint_path(n)) for n in names],
                  overwrite=args.overwrite)
    return outs


def model_label(name: str, taken) -> str:
    """Table label: the name, or a checkpoint's file stem (with its folder if that is taken)."""
    if name.endswith(".pt") or Path(name).exists():
        path = Path(name)
        label = path.stem
        if label in taken:
            label = f"{path.parent.name}/{path.stem}"
        return label
    return name


def _sources(args: argparse.Namespace) -> List[Tuple[str, Path, Path]]:
    """(name, video, gaze) of every sequence to score: --video/--gaze or a manifest's val."""
    if args.data is not None:
        if args.video is not None or args.gaze is not None:
            raise EvaluationError("give either --data MANIFEST or --video/--gaze, not both")
        from .manifest import load_manifest

        manifest = load_manifest(args.data, args.data_dir)
        return [(s.name, s.path, s.gaze_path) for s in manifest.val]
    if args.video is None or args.gaze is None:
        raise EvaluationError("give --video and --gaze (or --data MANIFEST)")
    if not args.gaze.is_file():
        raise EvaluationError(f"{args.gaze}: no such gaze file")
    return [(args.video.stem, args.video, args.gaze)]


def _score_source(args: argparse.Namespace, video: Path, gaze_path: Path, names: List[str],
                  protocol, rocs: Dict[str, PooledROC]) -> Dict[str, Dict[str, Any]]:
    """Score every model on one video; pool each model's ROC into ``rocs``."""
    ctx = _Context(argparse.Namespace(**{**vars(args), "video": video, "gaze": gaze_path}))
    results = {}
    for name in names:
        label = model_label(name, results)
        results[label], roc = score_model(ctx, name, protocol)
        pooled = rocs.setdefault(label, PooledROC())
        pooled.pos += roc.pos
        pooled.neg += roc.neg
        res = results[label]
        print(f"{video.stem:10s} {label:28s} NSS {res['nss']:.3f}  CC {res['cc']:.3f}  AUC-J "
              f"{res['auc_judd']:.3f}  sAUC {format_metric(res['auc_shuffled'])}  "
              f"({res['n_frames']} frames)", flush=True)
    return results


def mean_results(per_source: Dict[str, Dict[str, Dict[str, Any]]]) -> Dict[str, Dict[str, Any]]:
    """Each model's metrics averaged over the sources (frames summed, info kept)."""
    first = next(iter(per_source.values()))
    out = {}
    for label, res in first.items():
        rows = [src[label] for src in per_source.values()]
        out[label] = {**res, **mean_over_sources(rows, [key for key, _ in TABLE_COLUMNS])}
    return out


# --------------------------------------------------------------------------- fidelity
def _fidelity_clips(args: argparse.Namespace):
    """Load the manifest of the fidelity clips; refuse gaze-mode options and no clips."""
    from .manifest import load_manifest

    if args.video is not None or args.gaze is not None:
        raise EvaluationError("--fidelity scores the fidelity: clips of --data (default: the "
                              "bundle manifest); --video/--gaze are for gaze scoring")
    if args.roc is not None:
        raise EvaluationError("--fidelity draws no ROC (there is no gaze): drop --roc")
    manifest = load_manifest(args.data, args.data_dir)
    if not manifest.fidelity:
        raise EvaluationError(f"{manifest.path}: the manifest has no fidelity: clips "
                              "(docs/TRAINING.md)")
    return manifest


def _fill_fidelity_caches(args: argparse.Namespace, clips, teachers, resolutions) -> None:
    """Teacher maps (reference, ceilings) and student frames of every clip, one decode each."""
    from tqdm import tqdm

    from .datasets import ensure_cache

    bar = tqdm(clips, desc="fidelity caches", unit="clip", disable=not args.progress,
               dynamic_ncols=True)
    for source in bar:
        bar.set_postfix_str(source.name)
        ensure_cache(source, sorted(resolutions), teachers, args.cache_dir, args.max_frames,
                     args.progress)
    bar.close()


def _add_rows(label: str, info: Dict[str, Any], result: Dict[str, Any],
              results: Dict[str, Dict[str, Any]], per_clip: Dict[str, Dict[str, Any]]) -> None:
    """File one model's ``score_clips`` result: its mean row and one row per clip."""
    results[label] = {**result["mean"], **info}
    for clip, row in result["per_clip"].items():
        per_clip[clip][label] = {**row, **info}


def _stored_maps(args: argparse.Namespace, teacher):
    """Return source -> the teacher's cached maps of its first frames (``--max-frames``)."""
    from .datasets import cached_teacher_maps

    def maps(source):
        n = source.n_frames if args.max_frames is None else min(source.n_frames,
                                                                args.max_frames)
        cached = cached_teacher_maps(source, teacher, args.cache_dir)
        if cached is None or len(cached) < n:
            raise EvaluationError(f"{source.name}: the cached maps of teacher {teacher.name} "
                                  f"are missing or short after filling the cache "
                                  f"({args.cache_dir})")
        return cached[:n]
    return maps


def run_fidelity(args: argparse.Namespace, names: List[str]) -> int:
    """``evaluate --fidelity``: every model and its ceiling against the teacher's maps.

    Student maps come from ``resolve_model``, the path of gaze scoring (the runtime's pairing
    and normalisation, training/predict.py); the teacher's and the ceiling's from the cache,
    filled first where missing.
    """
    from skd_saliency_ros.core.checkpoint import read_checkpoint

    from .fidelity import markdown
    from .teachers import get_teacher

    started = time.time()
    _check_fidelity_models(names)
    manifest = _fidelity_clips(args)
    outs = _outputs(args, names, [("fidelity clip", s.path) for s in manifest.fidelity],
                    roc=False)
    reference = get_teacher(args.teacher)
    resolutions = {name: size_of_checkpoint(read_checkpoint(checkpoint_path(name)))
                   for name in names if checkpoint_path(name) is not None}
    sizes = sorted(set(resolutions.values()) | set(args.ceiling_sizes or ()))
    ceilings = {r: get_teacher(f"{args.teacher}@{r.label}") for r in sizes}
    _fill_fidelity_caches(args, manifest.fidelity, [reference, *ceilings.values()],
                          set(resolutions.values()))
    contexts = {s.name: _Context(args, source=s) for s in manifest.fidelity}
    reference_maps = _stored_maps(args, reference)
    results: Dict[str, Dict[str, Any]] = {}
    per_clip: Dict[str, Dict[str, Dict[str, Any]]] = {clip: {} for clip in contexts}
    labels = _score_fidelity_models(names, contexts, reference_maps, results, per_clip)
    _score_ceilings(args, ceilings, contexts, reference_maps, results, per_clip)
    for name, r in resolutions.items():
        _add_gap(labels[name], ceilings[r].name, [results, *per_clip.values()])
    title = args.title or (f"fidelity to {reference.name} on the {len(contexts)} fidelity "
                           f"clips of {manifest.name}: {len(names)} model(s) and the ceiling")
    table = markdown(results, per_clip, title)
    print(table)
    meta = _fidelity_meta(args, manifest, reference, ceilings, started)
    _write_fidelity(outs, {"models": results, "per_clip": per_clip, "meta": meta}, table)
    return 0


def _check_fidelity_models(names: List[str]) -> None:
    """Refuse a ``--models`` entry that fidelity cannot score (a teacher, a typo)."""
    for name in names:
        if checkpoint_path(name) is None and name not in PRIORS:
            raise EvaluationError(f"--fidelity --models: '{name}' is not a checkpoint, "
                                  "default or a centre prior (center, center-uav2); the teacher "
                                  "is --teacher, and its ceiling row comes by itself")


def _score_fidelity_models(names: List[str], contexts: Dict[str, _Context], reference_maps,
                           results: Dict[str, Dict[str, Any]],
                           per_clip: Dict[str, Dict[str, Any]]) -> Dict[str, str]:
    """Score every model on every clip into ``results`` / ``per_clip``; return name -> label."""
    from .fidelity import score_clips

    labels: Dict[str, str] = {}
    for name in names:
        labels[name] = label = model_label(name, set(labels.values()))
        infos: List[Dict[str, Any]] = []

        def student_clips(name=name, infos=infos):
            for clip, ctx in contexts.items():
                info, maps = resolve_model(ctx, name)
                infos.append(info)
                yield clip, np.stack([m for _, m in maps]), reference_maps(ctx.source)

        t0 = time.time()
        result = score_clips(student_clips())
        _add_rows(label, {**infos[0], "seconds": round(time.time() - t0, 2)}, result,
                  results, per_clip)
    return labels


def _score_ceilings(args: argparse.Namespace, ceilings, contexts: Dict[str, _Context],
                    reference_maps, results: Dict[str, Dict[str, Any]],
                    per_clip: Dict[str, Dict[str, Any]]) -> None:
    """Score each ceiling ``<teacher>@R`` (cached maps) against the teacher, as a model row."""
    from .fidelity import score_clips

    for r, ceiling in ceilings.items():
        ceiling_maps = _stored_maps(args, ceiling)
        result = score_clips((clip, ceiling_maps(ctx.source), reference_maps(ctx.source))
                             for clip, ctx in contexts.items())
        _add_rows(ceiling.name, {"type": "ceiling", "teacher": ceiling.name,
                                 "resolution": plain_size(r), "pixels": r.pixels},
                  result, results, per_clip)


def _add_gap(label: str, ceiling: str, tables: List[Dict[str, Dict[str, Any]]]) -> None:
    """Name a model's ceiling in its rows of every table and add its gap to it."""
    from .fidelity import gap_to_ceiling

    for table in tables:
        row = table[label]
        row.update(ceiling=ceiling, gap=gap_to_ceiling(row, table[ceiling]))


def _fidelity_meta(args: argparse.Namespace, manifest, reference, ceilings,
                   started: float) -> Dict[str, Any]:
    """Return what the fidelity JSON records of how it was scored."""
    from .fidelity import FIDELITY_LONG_SIDE, PEAK_PERCENTILE

    return {"mode": "fidelity", "data": str(manifest.path), "manifest": manifest.name,
            "manifest_sha1": manifest.content_hash, "teacher": reference.name,
            "teacher_config": reference.config,
            "ceilings": {str(r): t.name for r, t in ceilings.items()},
            "grid_long_side": FIDELITY_LONG_SIDE, "peak_percentile": PEAK_PERCENTILE,
            "clips": {s.name: {"video": str(s.path), "frames": int(s.n_frames),
                               "fps": float(s.fps)} for s in manifest.fidelity},
            "max_frames": args.max_frames, "models_arg": args.models,
            "pair_gap": args.pair_gap, "seconds": round(time.time() - started, 1)}


def _write_fidelity(outs: Dict[str, Path], result: Dict[str, Any], table: str) -> None:
    """Write the JSON and the Markdown asked for; print their paths."""
    if "json" in outs:
        outs["json"].parent.mkdir(parents=True, exist_ok=True)
        outs["json"].write_text(json.dumps(result, indent=1))
    if "markdown" in outs:
        outs["markdown"].parent.mkdir(parents=True, exist_ok=True)
        outs["markdown"].write_text(table)
    for path in outs.values():
        print(f"wrote {path}")


def _model_names(models: str) -> List[str]:
    """Return the ``--models`` entries, checked: at least one, none twice."""
    names = [n.strip() for n in models.split(",") if n.strip()]
    if not names:
        raise EvaluationError("--models is empty")
    if len(set(names)) != len(names):
        raise EvaluationError(f"--models names a model twice: {models}")
    return names


def run(args: argparse.Namespace) -> int:
    """Score every model on every source; print the tables; write JSON / Markdown / ROC."""
    import torch

    from skd_saliency_ros.core.metrics import EvalProtocol

    torch.set_num_threads(max(1, args.threads))
    if args.models is None:
        args.models = FIDELITY_MODELS if args.fidelity else GAZE_MODELS
    names = _model_names(args.models)
    if args.fidelity:
        return run_fidelity(args, names)
    if args.ceiling_sizes:
        raise EvaluationError("--ceiling-sizes is a --fidelity option (the teacher fed the "
                              "student's input size, against the teacher)")
    sources = _sources(args)
    outs = _outputs(args, names, [(label, path) for _, video, gaze in sources
                                  for label, path in (("video", video), ("gaze", gaze))])
    protocol = EvalProtocol()
    rocs: Dict[str, PooledROC] = {}
    per_source = {name: _score_source(args, video, gaze, names, protocol, rocs)
                  for name, video, gaze in sources}
    results = next(iter(per_source.values())) if len(per_source) == 1 else \
        mean_results(per_source)
    default_title = (f"{sources[0][1].name}: {len(names)} models" if len(sources) == 1 else
                     f"mean over {len(sources)} sources ({', '.join(per_source)}): "
                     f"{len(names)} models")
    title = args.title or default_title
    table = markdown_table(results, title)
    if len(per_source) > 1:
        table += "".join("\n" + markdown_table(res, f"{name}") for name, res in
                         per_source.items())
    print(table)
    meta = {"video": str(sources[0][1]) if len(sources) == 1 else None,
            "gaze": str(sources[0][2]) if len(sources) == 1 else None,
            "data": str(args.data) if args.data else None,
            "sources": {name: {"video": str(v), "gaze": str(g)} for name, v, g in sources},
            "protocol": asdict(protocol), "max_frames": args.max_frames,
            "teacher_resolution": args.teacher_resolution, "models_arg": args.models,
            "pair_gap": args.pair_gap}
    if "json" in outs:
        outs["json"].parent.mkdir(parents=True, exist_ok=True)
        outs["json"].write_text(json.dumps({"models": results, "per_source": per_source,
                                            "meta": meta}, indent=1))
    if "markdown" in outs:
        outs["markdown"].write_text(table)
    if "roc" in outs:
        plot_roc(outs["roc"], rocs, title)
    for path in outs.values():
        print(f"wrote {path}")
    return 0
