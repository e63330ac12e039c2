"""The training loop shared by step 1 (distil) and step 2 (transfer).

One loop, so both steps get the same guarantees:

* Adam with weight decay, a constant learning rate (as the authors' DIS code), fixed seeds;
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler

from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from skd_saliency_ros.core.models import ARCHITECTURES, count_parameters, with_output

from .losses import LOSSES, OUTPUT_OF_LOSS, distillation_loss, make_criterion
from .predict import predict_maps


class TrainingError(SkdError, RuntimeError):
    """A training run that cannot start or continue (bad arguments, files in the way)."""


# --------------------------------------------------------------------------- arguments
def add_common_arguments(parser: argparse.ArgumentParser, default_lambda: float,
                         default_steps: int) -> None:
    """Options shared by distil and transfer."""
    from .paths import default_cache_dir, default_data_dir
    from .teachers import DEFAULT_SPATIAL, DEFAULT_TEMPORAL

    g = parser.add_argument_group("data")
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
    g.add_argument("--spatial-teacher", default=DEFAULT_SPATIAL,
                   help="spatial teacher spec (default: %(default)s)")
    g.add_argument("--temporal-teacher", default=DEFAULT_TEMPORAL,
                   help="temporal teacher spec (default: %(default)s)")

    g = parser.add_argument_group("model and loss")
    g.add_argument("--arch", default="skd-paper-prior",
                   help=f"architecture name (known now: {', '.join(sorted(ARCHITECTURES))})")
    g.add_argument("--resolution", "-R", type=int, default=64,
                   help="input/output size R (multiple of 4; paper: 32, 64, 128, 256)")
    g.add_argument("--lambda", dest="lam", type=float, default=default_lambda,
                   help="weight of the soft (teacher) term; frames without gaze use the "
                        "soft term only (default: %(default)s)")
    g.add_argument("--loss", choices=LOSSES, default="l2",
                   help="l2: the paper's normalised L2 on a linear output; kld: KL divergence "
                        "to the target on a spatial softmax of the output, the transform "
                        "then stored with the model (training/losses.py; default %(default)s)")
    g.add_argument("--cc-weight", type=float, default=0.0,
                   help="with --loss kld: subtract this times CC(prediction, target)")
    g.add_argument("--nss-weight", type=float, default=0.0,
                   help="with --loss kld: subtract this times NSS against the target density")

    g = parser.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=default_steps,
                   help="optimizer steps in total (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=32, help="global batch (default 32)")
    g.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    g.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant",
                   help="constant, or cosine: decay from --lr to 0 over --steps, so the "
                        "last checkpoint is a settled one rather than one noisy step "
                        "(default %(default)s)")
    g.add_argument("--weight-decay", type=float, default=1e-4,
                   help="Adam weight decay (default 1e-4)")
    g.add_argument("--seed", type=int, default=0, help="seed of init, order and flips")
    g.add_argument("--no-hflip", dest="hflip", action="store_false",
                   help="disable random horizontal flips")
    g.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    g.add_argument("--autocast", choices=("none", "bf16"), default="none",
                   help="bf16: bfloat16 autocast of the forward pass on CPUs with AMX or "
                        "AVX512-BF16 (docs/BENCHMARKS.md has the measured step times)")
    g.add_argument("--channels-last", action="store_true",
                   help="channels-last memory format for weights and batches: the same "
                        "arithmetic, a faster convolution layout on x86 CPUs (BENCHMARKS.md)")
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))

    g = parser.add_argument_group("output")
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


def arch_spec(args: argparse.Namespace) -> Dict[str, Any]:
    """Return the spec to build: ``--arch`` ending in the output transform of ``--loss``."""
    return with_output(args.arch, OUTPUT_OF_LOSS[getattr(args, "loss", "l2")])


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
class TrainData:
    """Everything the loop needs: sample list, validation sources, a data summary."""

    datasets: List[Any]
    samples: List[tuple]          # (dataset index, item index)
    val: List[ValSource]
    summary: Dict[str, Any] = field(default_factory=dict)

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


def load_data(args: argparse.Namespace, teacher_specs: Sequence[str],
              soft_specs: Sequence[str], gaze_only: bool, progress: bool) -> TrainData:
    """Prepare the manifest's training sources (teacher maps cached) and validation sources."""
    from .datasets import PairDataset, prepare_source
    from .manifest import load_manifest
    from .teachers import get_teacher

    manifest = load_manifest(getattr(args, "data", None), args.data_dir)
    train_sources = list(manifest.train)
    if args.train_sources:
        wanted = [n.strip() for n in args.train_sources.split(",") if n.strip()]
        known = {source_name(s): s for s in train_sources}
        missing = [n for n in wanted if n not in known]
        if missing:
            raise TrainingError(f"--train-sources: unknown source(s) {', '.join(missing)}; "
                                f"the training split of {manifest.path} has "
                                f"{', '.join(sorted(known))}")
        train_sources = [known[n] for n in wanted]
    # One teacher may serve both roles (a video-saliency model such as TinyHD): build it once.
    # (each build hashes the model file and opens its session: never twice for one spec)
    built = {spec: get_teacher(spec) for spec in dict.fromkeys([*teacher_specs, *soft_specs])}
    teachers = [built[spec] for spec in dict.fromkeys(teacher_specs)]
    soft_names = list(dict.fromkeys(built[spec].name for spec in soft_specs))

    datasets, samples = [], []
    summary: Dict[str, Any] = {"manifest": {"path": str(manifest.path), "name": manifest.name,
                                            "sha1": manifest.content_hash},
                               "train": [], "val": []}
    if gaze_only:  # hard loss only: sequences without gaze contribute nothing
        train_sources = [s for s in train_sources if getattr(s, "gaze_path", None)]
    for source in train_sources:
        prepared = prepare_source(source, args.resolution, teachers, cache_dir=args.cache_dir,
                                  max_frames=args.max_frames, progress=progress)
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

    val = []
    for source in manifest.val:
        prepared = prepare_source(source, args.resolution, [], cache_dir=args.cache_dir,
                                  max_frames=args.val_max_frames, progress=progress)
        val.append(ValSource(prepared.name, prepared.frames, source.gaze))
        summary["val"].append({"name": prepared.name, "path": str(source.path),
                               "sha1": source.content_hash, "frames": int(len(prepared)),
                               "stride": int(args.val_stride)})
    return TrainData(datasets, samples, val, summary)


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


# --------------------------------------------------------------------------- curves
def write_curves(path: Path, history: Dict[str, list], title: str) -> None:
    """Loss (raw and smoothed) and validation NSS / CC against the step, as one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
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
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- the loop
def resume_path(output: Path) -> Path:
    """Where a run keeps the state that ``--resume`` continues from."""
    return output.with_name(output.stem + ".resume.pt")


def check_outputs(args: argparse.Namespace) -> None:
    """Fail before any work when the output or an old run's state is in the way.

    The one output-path rule (core/output_paths): the checkpoint and the files written beside
    it never land on, in or around an input (data, students), nor on an existing file
    unasked; then the resume rules.
    """
    from skd_saliency_ros.core.output_paths import Output, check_outputs as check_paths

    state = resume_path(args.output)
    base = args.output.with_suffix("")
    check_paths([Output("--output", args.output),
                 Output("history beside --output", base.with_name(base.name + ".history.json")),
                 Output("curves beside --output", base.with_name(base.name + ".curves.png")),
                 Output("resume state beside --output", state, regenerated=True),
                 Output("--cache-dir", args.cache_dir, folder=True, regenerated=True)],
                inputs=[("--data", args.data), ("--data-dir", args.data_dir),
                        ("--spatial", getattr(args, "spatial", None)),
                        ("--temporal", getattr(args, "temporal", None))],
                overwrite=args.overwrite)
    if args.resume:
        if not state.is_file():
            raise TrainingError(f"{state}: no resume state to continue from (--resume)")
        return
    if state.exists() and not args.overwrite:
        raise TrainingError(f"{state}: an earlier run's resume state is there; pass --resume "
                            "to continue it or --overwrite to start over")


LR_SCHEDULES = ("constant", "cosine")
# Options that must not change between an interrupted run and its --resume.
FIXED_ON_RESUME = ("kind", "arch", "resolution", "lam", "batch_size", "lr", "lr_schedule",
                   "weight_decay", "seed", "hflip", "world", "loss", "cc_weight", "nss_weight")
# What a resume state written before an option existed implied.
IMPLIED_BEFORE = {"lr_schedule": "constant", "loss": "l2", "cc_weight": 0.0, "nss_weight": 0.0}


def learning_rate(schedule: str, base: float, step: int, total: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based) of ``total``."""
    if schedule == "constant":
        return base
    if schedule == "cosine":
        return 0.5 * base * (1.0 + math.cos(math.pi * min(step, total) / max(1, total)))
    raise ValueError(f"unknown learning-rate schedule '{schedule}'")


def train(args: argparse.Namespace, kind: str, build: Callable[[], torch.nn.Module],
          data_fn: Callable[[bool], TrainData], meta: Dict[str, Any]) -> int:
    """Train ``build()`` for ``args.steps`` steps; write ``args.output``.  Returns 0."""
    info = setup_distributed(args.device)
    try:
        return _train(args, kind, build, data_fn, meta, info)
    finally:
        cleanup_distributed()


def _train(args, kind, build, data_fn, meta, info: DistInfo) -> int:
    from tqdm import tqdm

    torch.set_num_threads(max(1, args.threads))
    if args.resolution % 4 or args.resolution < 8:
        raise TrainingError(f"--resolution must be a multiple of 4 and >= 8, "
                            f"got {args.resolution}")
    if args.batch_size % info.world:
        raise TrainingError(f"--batch-size {args.batch_size} does not split evenly over "
                            f"{info.world} processes")
    check_outputs(args)
    progress = args.progress and info.is_main
    config = {"kind": kind, "arch": args.arch, "resolution": args.resolution, "lam": args.lam,
              "batch_size": args.batch_size, "lr": args.lr,
              "lr_schedule": args.lr_schedule, "weight_decay": args.weight_decay,
              "seed": args.seed, "hflip": bool(args.hflip), "world": info.world,
              "loss": args.loss, "cc_weight": args.cc_weight, "nss_weight": args.nss_weight}
    try:
        criterion = make_criterion(args.loss, args.cc_weight, args.nss_weight)
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc
    autocast = args.autocast == "bf16"

    torch.manual_seed(args.seed)
    model = build().to(info.device)
    layout = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=layout)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr,
                                 weight_decay=args.weight_decay)
    history: Dict[str, list] = {"train": [], "val": []}
    step, elapsed_before = 0, 0.0
    state_file = resume_path(args.output)
    if args.resume:
        step, elapsed_before, history = _load_resume(state_file, model, optimizer, kind,
                                                     args, config, info.device)
    # Rank 0 prepares (and caches) the data first, so ranks never race on the cache.
    if info.world > 1 and not info.is_main:
        dist.barrier()
    data = data_fn(progress)
    if info.world > 1 and info.is_main:
        dist.barrier()
    per_rank = args.batch_size // info.world
    sampler = DistributedSampler(data.samples, num_replicas=info.world, rank=info.rank,
                                 shuffle=True, seed=args.seed, drop_last=True)
    batches_per_epoch = len(sampler) // per_rank
    if batches_per_epoch == 0:
        raise TrainingError(f"{len(data.samples)} training samples are fewer than one batch "
                            f"of {args.batch_size}; lower --batch-size")
    net = model
    if info.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device] if info.device.startswith("cuda") else None)

    stop_at = args.steps if args.stop_after is None else min(args.steps, step + args.stop_after)
    bar = tqdm(total=args.steps, initial=step, disable=not progress, desc=f"{kind}",
               dynamic_ncols=True)
    started = time.time()
    order: List[int] = []
    epoch = -1
    net.train()
    while step < stop_at:
        if step // batches_per_epoch != epoch:
            epoch = step // batches_per_epoch
            sampler.set_epoch(epoch)
            order = list(sampler)
        offset = (step % batches_per_epoch) * per_rank
        ids = order[offset:offset + per_rank]
        gen = torch.Generator().manual_seed(args.seed * 1_000_003 + step * 7919 + info.rank)
        flips = (torch.rand(len(ids), generator=gen) < 0.5) if args.hflip \
            else torch.zeros(len(ids), dtype=torch.bool)
        batch = make_batch(data, ids, flips)
        with torch.autocast(info.device.split(":")[0], dtype=torch.bfloat16,
                            enabled=autocast):
            x = batch["x"].to(info.device).contiguous(memory_format=layout)
            out = net(x, raw=True)  # the losses take logits
        loss = distillation_loss(out.float(), batch["soft"].to(info.device),
                                 batch["hard"].to(info.device),
                                 batch["has_gaze"].to(info.device), args.lam, criterion)
        if not torch.isfinite(loss):
            raise TrainingError(f"loss became {loss.item()} at step {step}; lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(args.lr_schedule, args.lr, step, args.steps)
        optimizer.step()
        step += 1
        history["train"].append({"step": step, "loss": float(loss.item())})
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if info.is_main and args.val_every and step % args.val_every == 0 and step < args.steps:
            val = validate(model, data, info.device, args.val_stride)
            if val:
                history["val"].append({"step": step, **val})
                bar.write(f"step {step}: {data.val_name} NSS {val['nss']:.3f} "
                          f"CC {val['cc']:.3f}")
        if info.is_main and (step % args.checkpoint_every == 0 or step == stop_at):
            _save_resume(state_file, model, optimizer, step,
                         elapsed_before + time.time() - started, history, config, args)
    bar.close()
    elapsed = elapsed_before + time.time() - started
    if step < args.steps:
        if info.is_main:
            print(f"stopped after step {step} of {args.steps} (--stop-after); continue with "
                  f"the same command plus --resume (state: {state_file})")
        return 0
    if info.is_main:
        _finish(args, model, data, history, config, meta, elapsed, info)
    return 0


def _save_resume(path, model, optimizer, step, elapsed, history, config, args) -> None:
    extra = {"step": step, "optimizer": optimizer.state_dict(), "elapsed_s": elapsed,
             "history": json.dumps(history), "config": json.dumps(config)}
    save_checkpoint(path, model, args.resolution, meta={"resume_state": True},
                    overwrite=True, extra=extra)


def _load_resume(path, model, optimizer, kind, args, config, device):
    try:
        stored, payload = load_checkpoint(path, kind=kind, arch=arch_spec(args),
                                          resolution=args.resolution)
    except CheckpointError as exc:
        raise TrainingError(f"cannot resume: {exc}") from exc
    extra = payload.get("extra") or {}
    if "optimizer" not in extra:
        raise TrainingError(f"{path}: holds no optimizer state; not a resume state")
    old = json.loads(extra["config"])
    old = {**IMPLIED_BEFORE, **old}
    changed = [f"{k}: {old.get(k)} -> {config[k]}" for k in FIXED_ON_RESUME
               if old.get(k) != config[k]]
    if changed:
        raise TrainingError(f"{path}: cannot resume with different settings ("
                            + "; ".join(changed) + ")")
    model.load_state_dict(stored.state_dict())
    model.to(device)
    optimizer.load_state_dict(extra["optimizer"])
    step = int(extra["step"])
    if step > args.steps:
        raise TrainingError(f"{path}: already at step {step}, beyond --steps {args.steps}")
    return step, float(extra.get("elapsed_s", 0.0)), json.loads(extra["history"])


def _finish(args, model, data, history, config, meta, elapsed, info) -> None:
    """Validate on every frame of the validation sources; write checkpoint, curves, history."""
    val = validate(model, data, info.device, args.val_stride, full=True)
    if val:
        history["val"].append({"step": args.steps, "full": True, **val})
    full_meta = dict(meta)
    full_meta.update({
        "kind": config["kind"], "arch": args.arch, "resolution": args.resolution,
        "lambda": args.lam, "loss": args.loss, "cc_weight": args.cc_weight,
        "nss_weight": args.nss_weight, "output": model.spec["output"],
        "autocast": args.autocast, "channels_last": bool(args.channels_last),
        "steps": args.steps, "batch_size": args.batch_size,
        "lr": args.lr, "lr_schedule": args.lr_schedule, "weight_decay": args.weight_decay,
        "seed": args.seed, "hflip": bool(args.hflip), "world_size": info.world,
        "threads": args.threads, "device": info.device, "parameters": count_parameters(model),
        "data": data.summary, "validation": {"sequence": data.val_name, **(val or {})},
        "train_time_s": round(elapsed, 1), "final_loss": _recent_loss(history),
        "command": _command_line(),
    })
    save_checkpoint(args.output, model, args.resolution, meta=full_meta,
                    overwrite=args.overwrite)
    base = args.output.with_suffix("")
    history_path = base.with_name(base.name + ".history.json")
    history_path.write_text(json.dumps({"meta": full_meta, "history": history}, indent=1))
    write_curves(base.with_name(base.name + ".curves.png"), history,
                 f"{config['kind']} {args.arch} R={args.resolution} lambda={args.lam} "
                 f"loss={args.loss}")
    msg = f"wrote {args.output} ({elapsed / 60:.1f} min)"
    if val:
        msg += (f"; {data.val_name} NSS {val['nss']:.3f} CC {val['cc']:.3f} "
                f"AUC-J {val['auc_judd']:.3f}")
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
