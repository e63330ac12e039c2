"""The training loop shared by step 1 (distil) and step 2 (transfer).

One loop, so both steps get the same guarantees:

* the shipped model's recipe as the defaults (training/recipe.py ``SHIPPED_RECIPE``), one
  typed ``TrainConfig`` built from the arguments and passed down, stored whole in the
  checkpoint (``meta["config"]``);
* Adam with weight decay, a constant learning rate (as the authors' DIS code) or a cosine
  decay (the recipe's), fixed seeds;
* repeatable: the model init is seeded, each epoch's order comes from ``DistributedSampler``
  seeded by (seed, epoch), and each step's flips from a generator seeded by (seed, step), so a
  resumed run continues exactly where the interrupted one would have gone;
* ``<output>.resume.pt`` every ``--checkpoint-every`` steps, with the optimizer state, the step
  and the curves; ``--resume`` continues from it (also to extend a finished run: raise
  ``--steps``); ``--stop-after`` ends a session early on purpose, leaving that state behind;
* validation on the manifest's held-out sources (the bundle: group2; several are each
  reported, with their mean) with ``metrics.score_sequence`` every
  ``--val-every`` steps and at the end; the final model is the *last* step, never the
  best-on-validation one, so the validation numbers stay honest;
* with ``--val-fidelity``, each validation also scores fidelity to the teacher on the
  manifest's held-out ``fidelity:`` clips, the way ``evaluate --fidelity`` does
  (``validate_fidelity``): gaze on one video cannot choose the training length, fidelity can;
* a loss / metric curve PNG and a JSON history beside the output;
* DistributedDataParallel when launched by ``torchrun`` (gloo on CPU, NCCL on CUDA): the
  global batch is split across processes and only rank 0 validates and writes files.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler

from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from skd_saliency_ros.core.input_size import InputSizeError, parse_input_size, size_argument
from skd_saliency_ros.core.models import ARCHITECTURES, count_parameters, with_output

from .fidelity import DEFAULT_TEACHER as DEFAULT_FIDELITY_TEACHER
from .losses import LOSSES, OUTPUT_OF_LOSS, distillation_loss, make_criterion
from .predict import predict_maps
from .recipe import SHIPPED_RECIPE, Recipe, TrainConfig, stored_config


class TrainingError(SkdError, RuntimeError):
    """A training run that cannot start or continue (bad arguments, files in the way)."""


# --------------------------------------------------------------------------- arguments
def add_common_arguments(parser: argparse.ArgumentParser, recipe: Recipe = SHIPPED_RECIPE,
                         default_lambda: Optional[float] = None,
                         default_steps: Optional[int] = None) -> None:
    """Options shared by distil and transfer; the recipe's values are their defaults.

    ``default_lambda`` / ``default_steps`` override two of them (bench/train_step.py's way).
    """
    if default_lambda is not None:
        recipe = replace(recipe, lam=default_lambda)
    if default_steps is not None:
        recipe = replace(recipe, steps=default_steps)
    _add_data_arguments(parser.add_argument_group("data"), recipe)
    _add_model_arguments(parser.add_argument_group("model and loss"), recipe)
    _add_optimisation_arguments(parser.add_argument_group("optimisation"), recipe)
    _add_output_arguments(parser.add_argument_group("output"))


def _add_data_arguments(g, recipe: Recipe) -> None:
    from .paths import default_cache_dir, default_data_dir

    g.add_argument("--data", type=Path, default=None, metavar="MANIFEST",
                   help="dataset manifest (YAML) listing training and validation sources "
                        "(docs/TRAINING.md; default: the shared bundle's "
                        "config/datasets/bundle.yaml)")
    g.add_argument("--data-dir", type=Path, default=default_data_dir(),
                   help="shared data bundle, {data_dir} in manifests (default: "
                        "$SKD_DATA_DIR or ../shared/data)")
    g.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                   help="teacher-map / frame cache (default: %(default)s)")
    g.add_argument("--train-sources", default=None,
                   help="comma-separated names of training sources to use "
                        "(default: the manifest's whole training split)")
    g.add_argument("--max-frames", type=int, default=None,
                   help="use at most this many frames of each training sequence")
    g.add_argument("--val-max-frames", type=int, default=None,
                   help="use at most this many frames of each validation source")
    g.add_argument("--val-stride", type=int, default=4,
                   help="validate on every n-th frame during training (default 4)")
    g.add_argument("--val-fidelity", action="store_true",
                   help="at every validation also score fidelity to the teacher (CC, KLD, "
                        "NSS at its peaks) on the manifest's fidelity: clips, as evaluate "
                        "--fidelity does; needs the teacher's maps of those clips in the "
                        "cache (python -m training teach --split fidelity)")
    g.add_argument("--val-fidelity-frames", type=int, default=None, metavar="N",
                   help="with --val-fidelity: score N frames spread evenly over each clip at "
                        "the validations during training (default: every frame; the final "
                        "validation always scores every frame)")
    g.add_argument("--val-fidelity-teacher", default=None, metavar="SPEC",
                   help="with --val-fidelity: the teacher whose cached maps are the reference "
                        f"(default: {DEFAULT_FIDELITY_TEACHER}, evaluate --fidelity's)")
    g.add_argument("--spatial-teacher", default=recipe.spatial_teacher,
                   help="spatial teacher spec (default: %(default)s)")
    g.add_argument("--temporal-teacher", default=recipe.temporal_teacher,
                   help="temporal teacher spec (default: %(default)s)")


def _add_model_arguments(g, recipe: Recipe) -> None:
    g.add_argument("--arch", default=recipe.arch,
                   help=f"architecture name (known now: {', '.join(sorted(ARCHITECTURES))}; "
                        "default: %(default)s)")
    g.add_argument("--resolution", "-R", type=size_argument, default=recipe.resolution,
                   help="input/output size: R (square; paper: 32, 64, 128, 256) or HxW "
                        "(height x width, e.g. 48x80 for 16:9 cameras); multiples of 4; "
                        "frames are area-resized whole to it, never cropped (default: "
                        "%(default)s)")
    g.add_argument("--lambda", dest="lam", type=float, default=recipe.lam,
                   help="weight of the soft (teacher) term; frames without gaze use the "
                        "soft term only (default: %(default)s)")
    g.add_argument("--loss", choices=LOSSES, default=recipe.loss,
                   help="l2: the paper's normalised L2 on a linear output; kld: KL divergence "
                        "to the target on a spatial softmax of the output, the transform "
                        "then stored with the model (training/losses.py; default: "
                        "%(default)s)")
    g.add_argument("--cc-weight", type=float, default=recipe.cc_weight,
                   help="with --loss kld: subtract this times CC(prediction, target) "
                        "(default: %(default)s)")
    g.add_argument("--nss-weight", type=float, default=recipe.nss_weight,
                   help="with --loss kld: subtract this times NSS against the target density "
                        "(default: %(default)s)")


def _add_optimisation_arguments(g, recipe: Recipe) -> None:
    g.add_argument("--steps", type=int, default=recipe.steps,
                   help="optimizer steps in total (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=recipe.batch_size,
                   help="global batch (default: %(default)s)")
    g.add_argument("--lr", type=float, default=recipe.lr,
                   help="Adam learning rate (default: %(default)s)")
    g.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=recipe.lr_schedule,
                   help="constant, or cosine: decay from --lr to 0 over --steps, so the "
                        "last checkpoint is a settled one rather than one noisy step "
                        "(default: %(default)s)")
    g.add_argument("--weight-decay", type=float, default=recipe.weight_decay,
                   help="Adam weight decay (default: %(default)s)")
    g.add_argument("--seed", type=int, default=recipe.seed,
                   help="seed of init, order and flips (default: %(default)s)")
    g.add_argument("--no-hflip", dest="hflip", action="store_false", default=recipe.hflip,
                   help="disable random horizontal flips")
    g.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    g.add_argument("--autocast", choices=("none", "bf16"), default=recipe.autocast,
                   help="bf16: bfloat16 autocast of the forward pass on CPUs with AMX or "
                        "AVX512-BF16 (docs/BENCHMARKS.md has the measured step times; "
                        "default: %(default)s)")
    g.add_argument("--channels-last", action="store_true",
                   help="channels-last memory format for weights and batches: the same "
                        "arithmetic, a faster convolution layout on x86 CPUs (BENCHMARKS.md)")
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def _add_output_arguments(g) -> None:
    g.add_argument("--output", "-o", type=Path, required=True, help="checkpoint to write")
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing output checkpoint (and its resume state)")
    g.add_argument("--resume", action="store_true",
                   help="continue from <output>.resume.pt (also to extend a run: raise --steps)")
    g.add_argument("--checkpoint-every", type=int, default=200,
                   help="write the resume state every n steps (default 200)")
    g.add_argument("--val-every", type=int, default=500,
                   help="validate every n steps (0: only at the end; default 500)")
    g.add_argument("--stop-after", type=int, default=None,
                   help="stop this session after n steps, leaving the resume state "
                        "(for a machine shared in time slots)")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no tqdm progress bars")


def arch_spec(config: TrainConfig) -> Dict[str, Any]:
    """Return the spec to build: ``arch`` ending in the output transform of ``loss``.

    Takes a TrainConfig (or any object with ``arch`` and ``loss``, as bench/train_step.py's
    parsed arguments).
    """
    return with_output(config.arch, OUTPUT_OF_LOSS[getattr(config, "loss", "l2")])


# --------------------------------------------------------------------------- distributed
@dataclass
class DistInfo:
    """Where this process sits in a torchrun launch (world 1 when not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that validates and writes files."""
        return self.rank == 0


def setup_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when torchrun set WORLD_SIZE > 1; pick the device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError("--device cuda asked for, but torch sees no CUDA device")
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        device = f"cuda:{local_rank % torch.cuda.device_count()}"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(rank=rank, world=world, local_rank=local_rank, device=device)


def cleanup_distributed() -> None:
    """Leave the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# --------------------------------------------------------------------------- data
@dataclass
class ValSource:
    """One validation source: its frames at R and its gaze."""

    name: str
    frames: np.ndarray
    gaze: Any


@dataclass
class FidelityClip:
    """One held-out fidelity clip: its frames at R and its teacher's cached maps."""

    name: str
    frames: np.ndarray            # (N, R, R, 3) uint8
    reference: np.ndarray         # (N, h, w) uint8: the teacher on the full frames
    indices: np.ndarray           # the frames scored during training (--val-fidelity-frames)


@dataclass
class TrainData:
    """Everything the loop needs: sample list, validation sources, a data summary."""

    datasets: List[Any]
    samples: List[tuple]          # (dataset index, item index)
    val: List[ValSource]
    summary: Dict[str, Any] = field(default_factory=dict)
    fidelity: List[FidelityClip] = field(default_factory=list)   # empty: no --val-fidelity
    fidelity_teacher: Optional[str] = None                       # the reference's name

    @property
    def val_name(self) -> str:
        """The validation sources' names, joined (``group2`` for the bundle)."""
        return "+".join(v.name for v in self.val)


def source_name(source: Any) -> str:
    """Display name of a VideoSource."""
    return str(getattr(source, "name", None) or Path(source.path).stem)


def weighted_items(n: int, weight: float) -> np.ndarray:
    """Item indices of a source of ``n`` frames drawn ``weight`` times as often as others.

    Deterministic: weight 2 lists every frame twice, 0.5 every other frame, 1.5 every frame
    once and every other frame again.
    """
    count = max(1, int(round(n * float(weight))))
    return (np.arange(count) * n // count if count <= n else np.arange(count) % n
            ).astype(np.int64)


def load_data(config: TrainConfig, teacher_specs: Sequence[str],
              soft_specs: Sequence[str], gaze_only: bool, progress: bool) -> TrainData:
    """Prepare the manifest's training sources (teacher maps cached) and validation sources.

    ``config`` is a TrainConfig (or anything with its data fields, as bench/train_step.py's
    parsed arguments).
    """
    from .datasets import PairDataset, prepare_source
    from .manifest import load_manifest
    from .teachers import get_teacher

    manifest = load_manifest(getattr(config, "data", None), config.data_dir)
    train_sources = _train_sources(config, manifest)
    fidelity_spec = fidelity_teacher_spec(config)
    # One teacher may serve both roles (a video-saliency model such as TinyHD): build it once.
    # (each build hashes the model file and opens its session: never twice for one spec)
    built = {spec: get_teacher(spec) for spec in dict.fromkeys(
        [*teacher_specs, *soft_specs, *([fidelity_spec] if fidelity_spec else [])])}
    # refused (missing teacher maps, no fidelity split) before any training frame is labelled
    fidelity = _load_fidelity(config, manifest, built.get(fidelity_spec), progress)
    teachers = [built[spec] for spec in dict.fromkeys(teacher_specs)]
    soft_names = list(dict.fromkeys(built[spec].name for spec in soft_specs))

    datasets, samples = [], []
    summary: Dict[str, Any] = {"manifest": {"path": str(manifest.path), "name": manifest.name,
                                            "sha1": manifest.content_hash},
                               "train": [], "val": [], **_fidelity_summary(fidelity, built,
                                                                           fidelity_spec)}
    if gaze_only:  # hard loss only: sequences without gaze contribute nothing
        train_sources = [s for s in train_sources if getattr(s, "gaze_path", None)]
    for source in train_sources:
        prepared = prepare_source(source, config.resolution, teachers, cache_dir=config.cache_dir,
                                  max_frames=config.max_frames, progress=progress)
        ds = PairDataset(prepared, soft_names, hflip=False)
        has_gaze = np.asarray(prepared.has_gaze, dtype=bool)
        keep = np.nonzero(has_gaze)[0] if gaze_only else np.arange(len(ds))
        weight = manifest.weights.get(source.name, 1.0)
        if len(keep) and weight != 1.0:
            keep = keep[weighted_items(len(keep), weight)]
        summary["train"].append({"name": prepared.name, "path": str(source.path),
                                 "sha1": source.content_hash, "frames": int(len(ds)),
                                 "gaze_frames": int(has_gaze.sum()), "weight": weight,
                                 "used": int(len(keep))})
        if len(keep):
            samples += [(len(datasets), int(i)) for i in keep]
            datasets.append(ds)
    if not samples:
        raise TrainingError("no training samples: " + (
            "hard-loss training (lambda 0) needs sequences with gaze, and none was selected"
            if gaze_only else "the selected sequences are empty"))

    return TrainData(datasets, samples, _load_val(config, manifest, summary, progress), summary,
                     fidelity, built[fidelity_spec].name if fidelity_spec else None)


def _train_sources(config: TrainConfig, manifest) -> List[Any]:
    """Return the manifest's training split, or its ``--train-sources`` subset (checked)."""
    train_sources = list(manifest.train)
    if config.train_sources:
        wanted = [n.strip() for n in config.train_sources.split(",") if n.strip()]
        known = {source_name(s): s for s in train_sources}
        missing = [n for n in wanted if n not in known]
        if missing:
            raise TrainingError(f"--train-sources: unknown source(s) {', '.join(missing)}; "
                                f"the training split of {manifest.path} has "
                                f"{', '.join(sorted(known))}")
        train_sources = [known[n] for n in wanted]
    return train_sources


def fidelity_teacher_spec(config: TrainConfig) -> Optional[str]:
    """Return the teacher spec ``--val-fidelity`` scores against (None: not asked)."""
    if not getattr(config, "val_fidelity", False):
        return None
    return getattr(config, "val_fidelity_teacher", None) or DEFAULT_FIDELITY_TEACHER


def _load_fidelity(config: TrainConfig, manifest, teacher,
                   progress: bool) -> List[FidelityClip]:
    """Frames at R and the teacher's cached maps of every fidelity clip (``--val-fidelity``).

    Refuses a manifest without a ``fidelity:`` split and teacher maps that are missing or
    cover less than the whole clip: labelling 1,800 frames with TinyHD is ``teach``'s job
    (minutes), not something to start unasked before a training run.
    """
    from .datasets import cached_teacher_maps, prepare_source
    from .fidelity import even_frames

    if teacher is None:
        return []
    if not manifest.fidelity:
        raise TrainingError(f"--val-fidelity: {manifest.path} has no fidelity: split (held-out "
                            "clips, docs/TRAINING.md); add one or drop --val-fidelity")
    stored = {s.name: cached_teacher_maps(s, teacher, config.cache_dir)
              for s in manifest.fidelity}
    short = [f"{s.name} ({0 if stored[s.name] is None else len(stored[s.name])} of "
             f"{s.n_frames} frames)" for s in manifest.fidelity
             if stored[s.name] is None or len(stored[s.name]) < s.n_frames]
    if short:
        data = f" --data {config.data}" if getattr(config, "data", None) else ""
        raise TrainingError(
            f"--val-fidelity: the {teacher.name} maps of {len(short)} of the "
            f"{len(manifest.fidelity)} fidelity clip(s) are not in the cache {config.cache_dir}: "
            f"{', '.join(short)}; label them first: python -m training teach{data} --split "
            f"fidelity --teachers {fidelity_teacher_spec(config)} -R {config.resolution} "
            f"--cache-dir {config.cache_dir}")
    clips = []
    for source in manifest.fidelity:
        frames = prepare_source(source, config.resolution, [], cache_dir=config.cache_dir,
                                progress=progress).frames
        clips.append(FidelityClip(source.name, frames, stored[source.name][:source.n_frames],
                                  even_frames(len(frames), config.val_fidelity_frames)))
    return clips


def _fidelity_summary(clips: List[FidelityClip], built: Dict[str, Any],
                      spec: Optional[str]) -> Dict[str, Any]:
    """Return the data summary's ``fidelity`` entry: teacher, clips, frames scored (or {})."""
    if not clips:
        return {}
    return {"fidelity": {"teacher": built[spec].name, "spec": spec, "clips": [
        {"name": c.name, "frames": int(len(c.frames)), "scored": int(len(c.indices))}
        for c in clips]}}


def _load_val(config: TrainConfig, manifest, summary: Dict[str, Any],
              progress: bool) -> List[ValSource]:
    """Frames at R and gaze of the manifest's validation sources, each noted in ``summary``."""
    from .datasets import prepare_source

    val = []
    for source in manifest.val:
        prepared = prepare_source(source, config.resolution, [], cache_dir=config.cache_dir,
                                  max_frames=config.val_max_frames, progress=progress)
        val.append(ValSource(prepared.name, prepared.frames, source.gaze))
        summary["val"].append({"name": prepared.name, "path": str(source.path),
                               "sha1": source.content_hash, "frames": int(len(prepared)),
                               "stride": int(config.val_stride)})
    return val


def make_batch(data: TrainData, sample_ids: Sequence[int], flips: torch.Tensor) -> Dict:
    """Stack dataset items into tensors; flip the chosen samples left-right (x and maps)."""
    items = [data.datasets[d][i] for d, i in (data.samples[k] for k in sample_ids)]
    batch = {key: torch.stack([torch.as_tensor(it[key]) for it in items]).float()
             for key in ("x", "soft", "hard")}
    batch["has_gaze"] = torch.as_tensor([bool(it["has_gaze"]) for it in items])
    if flips.any():
        for key in ("x", "soft", "hard"):
            batch[key][flips] = batch[key][flips].flip(-1)
    return batch


# --------------------------------------------------------------------------- validation
def validate(model: torch.nn.Module, data: TrainData, device: str, stride: int,
             full: bool = False) -> Optional[Dict[str, Any]]:
    """Metrics on every validation source (every ``stride``-th frame unless ``full``).

    The top-level keys are the mean over the sources (one source: its own numbers);
    ``per_source`` holds each source's.
    """
    from skd_saliency_ros.core.metrics import EvalProtocol, mean_over_sources, score_sequence

    if not data.val:
        return None
    was_training = model.training
    per_source = {}
    for source in data.val:
        indices = range(0, len(source.frames), 1 if full else max(1, stride))
        maps = list(predict_maps(model, source.frames, indices, device=device))
        result = score_sequence(maps, source.gaze, EvalProtocol())
        per_source[source.name] = {**{k: float(v) for k, v in result["mean"].items()},
                                   "n_frames": int(result["n_frames"])}
    model.train(was_training)
    rows = list(per_source.values())
    out: Dict[str, Any] = mean_over_sources(rows, [k for k in rows[0] if k != "n_frames"])
    out["per_source"] = per_source
    return out


def validate_fidelity(model: torch.nn.Module, data: TrainData, device: str,
                      full: bool = False) -> Optional[Dict[str, Any]]:
    """Fidelity to the teacher on the fidelity clips (``--val-fidelity``), else None.

    What ``evaluate --fidelity`` scores for a checkpoint: the maps of ``predict_maps`` (frame
    t paired with t-1, normalised as the engine does) against the teacher's cached maps, by
    ``fidelity.score_clips``; on each clip's ``indices`` (``--val-fidelity-frames``), or on
    every frame when ``full``.  The top-level keys are the mean over the clips (each once).
    """
    from .fidelity import score_clips

    if not data.fidelity:
        return None
    was_training = model.training

    def clips():
        for clip in data.fidelity:
            indices = np.arange(len(clip.frames)) if full else clip.indices
            maps = predict_maps(model, clip.frames, indices, device=device)
            yield clip.name, np.stack([m for _, m in maps]), clip.reference[indices]

    result = score_clips(clips())
    model.train(was_training)
    return {**result["mean"], "teacher": data.fidelity_teacher, "per_clip": result["per_clip"]}


def validate_all(model: torch.nn.Module, data: TrainData, device: str, stride: int,
                 full: bool = False) -> Optional[Dict[str, Any]]:
    """Gaze validation (``validate``) with the fidelity scores under ``fidelity`` when asked."""
    val = validate(model, data, device, stride, full)
    fidelity = validate_fidelity(model, data, device, full)
    if fidelity is not None:
        val = {**(val or {}), "fidelity": fidelity}
    return val


def fidelity_text(val: Dict[str, Any]) -> str:
    """Return the log line's fidelity part, `` fidelity CC 0.851 KLD 0.210`` (or "")."""
    if "fidelity" not in val:
        return ""
    return f" fidelity CC {val['fidelity']['cc']:.3f} KLD {val['fidelity']['kld']:.3f}"


# --------------------------------------------------------------------------- curves
def write_curves(path: Path, history: Dict[str, list], title: str) -> None:
    """Loss (raw and smoothed), validation NSS / CC and fidelity against the step, one PNG.

    The fidelity panel (CC left, KLD right) is drawn when any validation has fidelity scores
    (``--val-fidelity``; a resumed run may have them from some step on only).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fidelity = [h for h in history["val"] if "fidelity" in h]
    fig, axes = plt.subplots(1, 3 if fidelity else 2, figsize=(16 if fidelity else 11, 4))
    ax1, ax2 = axes[:2]
    steps = [h["step"] for h in history["train"]]
    loss = np.array([h["loss"] for h in history["train"]], dtype=float)
    if len(loss):
        ax1.plot(steps, loss, alpha=0.3, label="loss")
        alpha, ema, smooth = 0.05, loss[0], []
        for value in loss:
            ema = (1 - alpha) * ema + alpha * value
            smooth.append(ema)
        ax1.plot(steps, smooth, label="loss (EMA 0.05)")
    ax1.set_xlabel("step")
    ax1.set_ylabel("training loss")
    ax1.set_yscale("log")
    ax1.legend()
    vsteps = [h["step"] for h in history["val"]]
    for key in ("nss", "cc"):
        ax2.plot(vsteps, [h[key] for h in history["val"]], marker="o", label=key.upper())
    ax2.set_xlabel("step")
    ax2.set_ylabel("validation (mean over sources)")
    ax2.legend()
    if fidelity:
        _plot_fidelity(axes[2], fidelity)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_fidelity(ax, entries: List[Dict[str, Any]]) -> None:
    """Fidelity CC (left axis) and KLD (right axis, lower is better) against the step."""
    steps = [h["step"] for h in entries]
    ax.plot(steps, [h["fidelity"]["cc"] for h in entries], marker="o", color="C2", label="CC")
    ax.set_xlabel("step")
    ax.set_ylabel(f"fidelity CC to {entries[-1]['fidelity'].get('teacher')} (mean over clips)")
    right = ax.twinx()
    right.plot(steps, [h["fidelity"]["kld"] for h in entries], marker="s", color="C3",
               label="KLD")
    right.set_ylabel("fidelity KLD (lower is better)")
    lines = ax.get_lines() + right.get_lines()
    ax.legend(lines, [line.get_label() for line in lines])


# --------------------------------------------------------------------------- the loop
def resume_path(output: Path) -> Path:
    """Where a run keeps the state that ``--resume`` continues from."""
    return output.with_name(output.stem + ".resume.pt")


def check_outputs(config: TrainConfig) -> None:
    """Fail before any work when the output or an old run's state is in the way.

    The one output-path rule (core/output_paths): the checkpoint and the files written beside
    it never land on, in or around an input (data, students), nor on an existing file
    unasked; then the resume rules.
    """
    from skd_saliency_ros.core.output_paths import Output, check_outputs as check_paths

    state = resume_path(config.output)
    base = config.output.with_suffix("")
    check_paths([Output("--output", config.output),
                 Output("history beside --output", base.with_name(base.name + ".history.json")),
                 Output("curves beside --output", base.with_name(base.name + ".curves.png")),
                 Output("resume state beside --output", state, regenerated=True),
                 Output("--cache-dir", config.cache_dir, folder=True, regenerated=True)],
                inputs=[("--data", config.data), ("--data-dir", config.data_dir),
                        ("--spatial", config.spatial), ("--temporal", config.temporal)],
                overwrite=config.overwrite)
    if config.resume:
        if not state.is_file():
            raise TrainingError(f"{state}: no resume state to continue from (--resume)")
        return
    if state.exists() and not config.overwrite:
        raise TrainingError(f"{state}: an earlier run's resume state is there; pass --resume "
                            "to continue it or --overwrite to start over")


LR_SCHEDULES = ("constant", "cosine")
# Options that must not change between an interrupted run and its --resume.
FIXED_ON_RESUME = ("kind", "arch", "resolution", "lam", "batch_size", "lr", "lr_schedule",
                   "weight_decay", "seed", "hflip", "world", "loss", "cc_weight", "nss_weight")


def learning_rate(schedule: str, base: float, step: int, total: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based) of ``total``."""
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return 0.5 * base * (1.0 + math.cos(math.pi * min(step, total) / max(1, total)))
    raise ValueError(f"unknown learning-rate schedule '{schedule}'")


def train(config: TrainConfig, build: Callable[[], torch.nn.Module],
          data_fn: Callable[[bool], TrainData], meta: Dict[str, Any]) -> int:
    """Train ``build()`` for ``config.steps`` steps; write ``config.output``.  Returns 0."""
    info = setup_distributed(config.device)
    try:
        return _train(config, build, data_fn, meta, info)
    finally:
        cleanup_distributed()


@dataclass
class RunState:
    """Where a run stands: optimizer steps done, seconds of earlier sessions, the curves."""

    step: int = 0
    elapsed_before: float = 0.0
    history: Dict[str, list] = field(default_factory=lambda: {"train": [], "val": []})


@dataclass
class Trainee:
    """The model being trained and what updates it, on this process's device."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    criterion: Callable
    layout: torch.memory_format
    net: Optional[torch.nn.Module] = None   # the model, or its DDP wrapper


def _train(config: TrainConfig, build, data_fn, meta, info: DistInfo) -> int:
    """Run on this process: check, build, resume, train, then write (rank 0)."""
    torch.set_num_threads(max(1, config.threads))
    _check_run(config, info)
    check_outputs(config)
    progress = config.progress and info.is_main
    trainee = _make_trainee(config, build, info)
    done = RunState()
    state_file = resume_path(config.output)
    if config.resume:
        done = _load_resume(state_file, trainee, config, info)
    # Rank 0 prepares (and caches) the data first, so ranks never race on the cache.
    if info.world > 1 and not info.is_main:
        dist.barrier()
    data = data_fn(progress)
    if info.world > 1 and info.is_main:
        dist.barrier()
    order = BatchOrder(data, config, info)
    trainee.net = _parallel(trainee.model, info)
    elapsed = _run_steps(config, info, trainee, order, done, state_file, progress)
    if done.step < config.steps:
        if info.is_main:
            print(f"stopped after step {done.step} of {config.steps} (--stop-after); continue "
                  f"with the same command plus --resume (state: {state_file})")
        return 0
    if info.is_main:
        _finish(config, trainee.model, data, done.history, meta, elapsed, info)
    return 0


def _check_run(config: TrainConfig, info: DistInfo) -> None:
    """Refuse a resolution the nets cannot take, a batch that does not split, stray options."""
    if not config.val_fidelity:
        for name in ("val_fidelity_frames", "val_fidelity_teacher"):
            if getattr(config, name) is not None:
                raise TrainingError(f"--{name.replace('_', '-')} needs --val-fidelity")
    if config.val_fidelity_frames is not None and config.val_fidelity_frames < 1:
        raise TrainingError(f"--val-fidelity-frames must be >= 1, got "
                            f"{config.val_fidelity_frames}")
    try:
        parse_input_size(config.resolution, "--resolution")
    except InputSizeError as exc:
        raise TrainingError(str(exc)) from None
    if config.batch_size % info.world:
        raise TrainingError(f"--batch-size {config.batch_size} does not split evenly over "
                            f"{info.world} processes")


def _make_trainee(config: TrainConfig, build, info: DistInfo) -> Trainee:
    """Build the loss, then the seeded model (in its memory layout) and its Adam."""
    try:
        criterion = make_criterion(config.loss, config.cc_weight, config.nss_weight)
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc
    torch.manual_seed(config.seed)
    model = build().to(info.device)
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr,
                                 weight_decay=config.weight_decay)
    return Trainee(model, optimizer, criterion, layout)


def _parallel(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """Return the model, wrapped in DistributedDataParallel under torchrun."""
    if info.world == 1:
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[info.device] if info.device.startswith("cuda") else None)


class BatchOrder:
    """The batch of this process at each step: repeatable, so a resumed run draws the same.

    Each epoch's order comes from ``DistributedSampler`` seeded by (seed, epoch), each step's
    flips from a generator seeded by (seed, step, rank).
    """

    def __init__(self, data: TrainData, config: TrainConfig, info: DistInfo):
        self.data, self.config, self.rank = data, config, info.rank
        self.per_rank = config.batch_size // info.world
        self.sampler = DistributedSampler(data.samples, num_replicas=info.world,
                                          rank=info.rank, shuffle=True, seed=config.seed,
                                          drop_last=True)
        self.per_epoch = len(self.sampler) // self.per_rank
        if self.per_epoch == 0:
            raise TrainingError(f"{len(data.samples)} training samples are fewer than one "
                                f"batch of {config.batch_size}; lower --batch-size")
        self._epoch, self._order = -1, []

    def batch(self, step: int) -> Dict:
        """Tensors of step ``step`` (0-based), flips applied."""
        if step // self.per_epoch != self._epoch:
            self._epoch = step // self.per_epoch
            self.sampler.set_epoch(self._epoch)
            self._order = list(self.sampler)
        offset = (step % self.per_epoch) * self.per_rank
        ids = self._order[offset:offset + self.per_rank]
        gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step * 7919
                                            + self.rank)
        flips = (torch.rand(len(ids), generator=gen) < 0.5) if self.config.hflip \
            else torch.zeros(len(ids), dtype=torch.bool)
        return make_batch(self.data, ids, flips)


def _run_steps(config: TrainConfig, info: DistInfo, trainee: Trainee, order: BatchOrder,
               done: RunState, state_file: Path, progress: bool) -> float:
    """Train up to ``--steps`` (or ``--stop-after``), validating and saving on the way.

    Returns the seconds of all sessions so far.
    """
    from tqdm import tqdm

    stop_at = config.steps if config.stop_after is None else \
        min(config.steps, done.step + config.stop_after)
    bar = tqdm(total=config.steps, initial=done.step, disable=not progress,
               desc=f"{config.kind}", dynamic_ncols=True)
    started = time.time()
    trainee.net.train()
    while done.step < stop_at:
        loss = _optimizer_step(config, info, trainee, order.batch(done.step), done.step)
        done.step += 1
        step = done.step
        done.history["train"].append({"step": step, "loss": loss})
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        if info.is_main and config.val_every and step % config.val_every == 0 \
                and step < config.steps:
            val = validate_all(trainee.model, order.data, info.device, config.val_stride)
            if val:
                done.history["val"].append({"step": step, **val})
                bar.write(f"step {step}: {order.data.val_name} NSS {val['nss']:.3f} "
                          f"CC {val['cc']:.3f}{fidelity_text(val)}")
        if info.is_main and (step % config.checkpoint_every == 0 or step == stop_at):
            _save_resume(state_file, trainee, done, done.elapsed_before + time.time() - started,
                         config, info)
    bar.close()
    return done.elapsed_before + time.time() - started


def _optimizer_step(config: TrainConfig, info: DistInfo, trainee: Trainee, batch: Dict,
                    step: int) -> float:
    """One forward, backward and Adam step at the scheduled rate; return the loss."""
    device = info.device
    with torch.autocast(device.split(":")[0], dtype=torch.bfloat16,
                        enabled=config.autocast == "bf16"):
        x = batch["x"].to(device).contiguous(memory_format=trainee.layout)
        out = trainee.net(x, raw=True)  # the losses take logits
    loss = distillation_loss(out.float(), batch["soft"].to(device), batch["hard"].to(device),
                             batch["has_gaze"].to(device), config.lam, trainee.criterion)
    if not torch.isfinite(loss):
        raise TrainingError(f"loss became {loss.item()} at step {step}; lower --lr")
    trainee.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for group in trainee.optimizer.param_groups:
        group["lr"] = learning_rate(config.lr_schedule, config.lr, step, config.steps)
    trainee.optimizer.step()
    return float(loss.item())


def _resume_config(config: TrainConfig, info: DistInfo) -> Dict[str, Any]:
    """Return what a resume state stores of the run: the whole config and the world."""
    return {**config.to_dict(), "world": info.world}


def _save_resume(path: Path, trainee: Trainee, done: RunState, elapsed: float,
                 config: TrainConfig, info: DistInfo) -> None:
    extra = {"step": done.step, "optimizer": trainee.optimizer.state_dict(),
             "elapsed_s": elapsed, "history": json.dumps(done.history),
             "config": json.dumps(_resume_config(config, info))}
    save_checkpoint(path, trainee.model, config.resolution, meta={"resume_state": True},
                    overwrite=True, extra=extra)


def _load_resume(path: Path, trainee: Trainee, config: TrainConfig, info: DistInfo) -> RunState:
    """Load the model and optimizer state; refuse a state of other fixed settings.

    Reads resume states of every layout (``stored_config``): the ones written before the
    config was stored whole hold just the options of ``FIXED_ON_RESUME``.
    """
    try:
        stored, payload = load_checkpoint(path, kind=config.kind, arch=arch_spec(config),
                                          resolution=config.resolution)
    except CheckpointError as exc:
        raise TrainingError(f"cannot resume: {exc}") from exc
    extra = payload.get("extra") or {}
    if "optimizer" not in extra:
        raise TrainingError(f"{path}: holds no optimizer state; not a resume state")
    old, now = stored_config(payload), _resume_config(config, info)
    changed = [f"{k}: {old.get(k)} -> {now[k]}" for k in FIXED_ON_RESUME
               if old.get(k) != now[k]]
    if changed:
        raise TrainingError(f"{path}: cannot resume with different settings ("
                            + "; ".join(changed) + ")")
    trainee.model.load_state_dict(stored.state_dict())
    trainee.model.to(info.device)
    trainee.optimizer.load_state_dict(extra["optimizer"])
    step = int(extra["step"])
    if step > config.steps:
        raise TrainingError(f"{path}: already at step {step}, beyond --steps {config.steps}")
    return RunState(step, float(extra.get("elapsed_s", 0.0)), json.loads(extra["history"]))


def _finish(config: TrainConfig, model, data, history, meta, elapsed, info) -> None:
    """Validate on every frame of the validation sources; write checkpoint, curves, history."""
    val = validate_all(model, data, info.device, config.val_stride, full=True)
    if val:
        history["val"].append({"step": config.steps, "full": True, **val})
    full_meta = {**meta, **config.flat_meta(), "config": config.to_dict()}
    full_meta.update({
        "output": model.spec["output"], "world_size": info.world, "device": info.device,
        "parameters": count_parameters(model),
        "data": data.summary, "validation": {"sequence": data.val_name, **(val or {})},
        "train_time_s": round(elapsed, 1), "final_loss": _recent_loss(history),
        "command": _command_line(),
    })
    save_checkpoint(config.output, model, config.resolution, meta=full_meta,
                    overwrite=config.overwrite)
    base = config.output.with_suffix("")
    history_path = base.with_name(base.name + ".history.json")
    history_path.write_text(json.dumps({"meta": full_meta, "history": history}, indent=1))
    write_curves(base.with_name(base.name + ".curves.png"), history,
                 f"{config.kind} {config.arch} R={config.resolution} lambda={config.lam} "
                 f"loss={config.loss}")
    msg = f"wrote {config.output} ({elapsed / 60:.1f} min)"
    if val:
        msg += (f"; {data.val_name} NSS {val['nss']:.3f} CC {val['cc']:.3f} "
                f"AUC-J {val['auc_judd']:.3f}{fidelity_text(val)}")
    print(msg)


def _recent_loss(history: Dict[str, list], window: int = 50) -> Optional[float]:
    losses = [h["loss"] for h in history["train"][-window:]]
    return float(np.mean(losses)) if losses else None


def _command_line() -> str:
    """Return the command as typed (``python -m training ...``, not the __main__.py path)."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(os.path.join("training", "__main__.py")):
        argv = ["python", "-m", "training"] + argv[1:]
    return " ".join(argv)
