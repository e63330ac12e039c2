"""What a training run is configured with: the shipped recipe, one run's config, its stored form.

``SHIPPED_RECIPE`` is the one definition of the defaults of ``python -m training transfer``
and ``distill``: the settings that trained the shipped default model
``skd_saliency_ros/weights/skd_default_r64.pt`` (docs/RESULTS.md, top; its card
``skd_default_r64.json``), so ``python -m training transfer -o runs/mine.pt`` trains that
model again: the fused ``skd-paper`` net from a seeded init, distilled from TinyHD-M's maps
in both teacher roles (lambda 1, soft loss only), the paper's normalised L2 loss, Adam 1e-3
with a cosine decay over 4,000 steps of batch 32, R = 64, seed 0, float32.
test/test_training.py checks every field against that checkpoint's saved config.

``TrainConfig`` is one run's settings, built once from the parsed arguments and passed down
the training loop instead of the argparse Namespace; the final checkpoint keeps it whole as
``meta["config"]`` and a resume state as ``extra["config"]`` (JSON).  ``stored_config``
reads the settings back from every layout a checkpoint has had (older ones kept them as flat
``meta`` keys, ``lambda`` and ``world_size`` among them).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Dict, Optional


@dataclass(frozen=True)
class Recipe:
    """The settings that decide the trained weights (threads, device and cadence do not)."""

    spatial_teacher: str      # soft target of the spatial student / stream
    temporal_teacher: str     # soft target of the temporal student / stream
    arch: str                 # skd_saliency_ros.core.models.ARCHITECTURES name
    resolution: Any           # input / output size: R (int) or "HxW" (core.input_size.plain_size)
    lam: float                # weight of the soft (teacher) term
    loss: str                 # training/losses.py LOSSES
    cc_weight: float          # with loss kld: minus this times CC
    nss_weight: float         # with loss kld: minus this times NSS
    steps: int
    batch_size: int           # global, over every process
    lr: float
    lr_schedule: str          # constant | cosine
    weight_decay: float
    seed: int
    hflip: bool
    autocast: str             # none | bf16 (bf16 left the recipe: docs/RESULTS.md)
    from_scratch: bool        # transfer without students: a seeded init (else they are required)


#: The recipe of the shipped default model (skd_saliency_ros/weights/skd_default_r64.pt).
SHIPPED_RECIPE = Recipe(
    spatial_teacher="tinyhd-m", temporal_teacher="tinyhd-m", arch="skd-paper", resolution=64,
    lam=1.0,
    # The loss of the shipped default: the paper's normalised L2. When a model trained with
    # "kld" ships instead (docs/SELECTION_RULE.md, shipping round), this is the line to change
    # (with the weights: test_shipped_default_was_trained_with_the_recipe compares the two).
    loss="l2",
    cc_weight=0.0, nss_weight=0.0, steps=4000, batch_size=32, lr=1e-3,
    lr_schedule="cosine", weight_decay=1e-4, seed=0, hflip=True, autocast="none",
    from_scratch=True)


@dataclass(frozen=True)
class TrainConfig(Recipe):
    """One training run's settings: a recipe plus the data, the machine and the session."""

    kind: str                          # spatial | temporal | fused
    data: Optional[Path]               # dataset manifest (None: the bundle's)
    data_dir: Path
    cache_dir: Path
    train_sources: Optional[str]       # comma-separated subset of the training split
    max_frames: Optional[int]
    val_max_frames: Optional[int]
    val_stride: int
    threads: int
    channels_last: bool
    device: str                        # auto | cpu | cuda (as asked; meta "device": as used)
    output: Path
    overwrite: bool
    resume: bool
    checkpoint_every: int
    val_every: int
    stop_after: Optional[int]
    progress: bool
    spatial: Optional[str] = None      # transfer: the student checkpoints it starts from
    temporal: Optional[str] = None
    # Also validate on fidelity to the teacher on the manifest's fidelity: clips (trainer.py);
    # None: every frame of each clip / training/fidelity.py DEFAULT_TEACHER.
    val_fidelity: bool = False
    val_fidelity_frames: Optional[int] = None
    val_fidelity_teacher: Optional[str] = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, kind: str, **resolved: Any) -> "TrainConfig":
        """Build the config from parsed arguments; ``resolved`` sets what the step decided."""
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        values.update(kind=kind, **resolved)
        return cls(**values)

    def to_dict(self) -> Dict[str, Any]:
        """Plain-typed dict (paths as strings): what a checkpoint stores."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}

    def flat_meta(self) -> Dict[str, Any]:
        """Return the flat ``meta`` keys checkpoints had before the config was stored whole.

        Still written, for the readers of that layout (tools, cards, ONNX metadata).
        """
        return {FLAT_META_NAMES.get(k, k): getattr(self, k) for k in FLAT_META_FIELDS}


# The config fields older checkpoints kept as flat meta keys, and the keys that differ in name.
FLAT_META_FIELDS = ("kind", "arch", "resolution", "lam", "loss", "cc_weight", "nss_weight",
                    "autocast", "channels_last", "steps", "batch_size", "lr", "lr_schedule",
                    "weight_decay", "seed", "hflip", "threads")
FLAT_META_NAMES = {"lam": "lambda", "world": "world_size"}
# What a checkpoint written before an option existed was trained with.
IMPLIED_BEFORE = {"lr_schedule": "constant", "loss": "l2", "cc_weight": 0.0,
                  "nss_weight": 0.0, "autocast": "none", "val_fidelity": False,
                  "val_fidelity_frames": None, "val_fidelity_teacher": None}


def stored_config(payload: Dict[str, Any]) -> Dict[str, Any]:
    """Return a checkpoint's training settings by TrainConfig field name, from any layout.

    * ``meta["config"]``: the TrainConfig dict (final checkpoints from now on);
    * ``extra["config"]``: JSON of the config (resume states; older ones hold only the
      options fixed on resume);
    * otherwise flat ``meta`` keys (``lambda``, ``world_size``, ``teachers`` ...), as the
      shipped default has them.

    Options that did not exist yet get the value they implied (``IMPLIED_BEFORE``); ``world``
    (processes) is included where the checkpoint says.
    """
    meta = payload.get("meta") or {}
    extra = payload.get("extra") or {}
    if isinstance(meta.get("config"), dict):
        found = dict(meta["config"])
        if "world_size" in meta:
            found.setdefault("world", meta["world_size"])
    elif "config" in extra:
        found = json.loads(extra["config"])
    else:
        found = _from_flat_meta(meta)
    return {**IMPLIED_BEFORE, **found}


def _from_flat_meta(meta: Dict[str, Any]) -> Dict[str, Any]:
    """Config fields from the flat meta keys of a checkpoint saved before ``meta["config"]``."""
    keys = {name: FLAT_META_NAMES.get(name, name) for name in (*FLAT_META_FIELDS, "world")}
    found = {name: meta[key] for name, key in keys.items() if key in meta}
    teachers = meta.get("teachers") or {}
    for role in ("spatial", "temporal"):
        if role in teachers:
            found[f"{role}_teacher"] = teachers[role]
    if "from_scratch" in meta:      # transfer
        found["from_scratch"] = bool(meta["from_scratch"])
    elif "init" in meta:            # distill: always a seeded init
        found["from_scratch"] = meta["init"] != "students"
    return found
