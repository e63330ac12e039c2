"""Step 2 of SKD: the fused spatiotemporal model, from the two students or from scratch.

With ``--spatial`` and ``--temporal``, the two streams are copied from the trained students'
first eight layers and the fusion sub-network starts from a truncated normal
(``SpatioTemporalNet.from_students``).  ``--lambda 0`` is the paper's step 2, the hard (human)
loss only, so only frames with gaze are used; ``--lambda > 0`` adds a soft term against the
spatial and temporal teachers (combined by ``PairDataset``) and lets gaze-less clips in.
Without students (or with ``--from-scratch``, the paper's "no separate distillation"
ablation) the same training starts from a default (seeded) initialisation.  Every default is
the shipped model's recipe (training/recipe.py): from scratch, TinyHD-M in both teacher
roles, lambda 1, so ``transfer -o X.pt`` trains the shipped default again.
"""

from __future__ import annotations

import argparse

import torch

from skd_saliency_ros.core.checkpoint import CheckpointError, load_checkpoint
from skd_saliency_ros.core.models import SpatioTemporalNet, build_model

from .recipe import SHIPPED_RECIPE, TrainConfig
from .trainer import TrainingError, add_common_arguments, arch_spec, load_data, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m training transfer``: the shipped recipe's values by default."""
    parser.add_argument("--spatial", type=str, default=None,
                        help="trained spatial student checkpoint (from distill)")
    parser.add_argument("--temporal", type=str, default=None,
                        help="trained temporal student checkpoint (from distill)")
    without = "from scratch" if SHIPPED_RECIPE.from_scratch else "refused"
    parser.add_argument("--from-scratch", action="store_true", default=None,
                        help="start from a seeded default init, ignoring --spatial/--temporal "
                             "(the paper's 'no separate distillation' ablation); without "
                             f"either student, the recipe's init: {without}")
    add_common_arguments(parser, SHIPPED_RECIPE)


def from_scratch(args: argparse.Namespace) -> bool:
    """Return whether the fused model starts from a seeded init rather than the students.

    ``--from-scratch`` says so; both students given say not; neither: the recipe decides.
    """
    if args.from_scratch:
        return True
    given = [kind for kind in ("spatial", "temporal") if getattr(args, kind)]
    if not given and SHIPPED_RECIPE.from_scratch:
        return True
    for kind in ("spatial", "temporal"):
        if kind not in given:
            raise TrainingError(f"--{kind} CHECKPOINT is required (or pass --from-scratch)")
    return False


def _students(config: TrainConfig):
    """Load both students, checking kind, architecture and resolution."""
    students = []
    for kind, path in (("spatial", config.spatial), ("temporal", config.temporal)):
        try:
            model, payload = load_checkpoint(path, kind=kind, arch=arch_spec(config),
                                             resolution=config.resolution)
        except CheckpointError as exc:
            raise TrainingError(f"--{kind}: {exc}") from exc
        students.append((model, payload))
    return students


def run(args: argparse.Namespace) -> int:
    """Train the fused model; write its checkpoint."""
    config = TrainConfig.from_args(args, "fused", from_scratch=from_scratch(args))
    students = None if config.from_scratch else _students(config)
    teachers = [config.spatial_teacher, config.temporal_teacher]
    meta = {"step": "transfer", "from_scratch": config.from_scratch,
            "teachers": {"spatial": config.spatial_teacher,
                         "temporal": config.temporal_teacher},
            "soft_teachers": teachers if config.lam > 0 else []}
    if students:
        meta["init"] = "students"
        meta["students"] = {kind: {"path": str(path), "meta": payload.get("meta", {})}
                            for kind, path, (_, payload) in
                            zip(("spatial", "temporal"), (config.spatial, config.temporal),
                                students)}
    else:
        meta["init"] = "default (seeded)"

    def build():
        if students is None:
            return build_model("fused", arch_spec(config))
        gen = torch.Generator().manual_seed(config.seed)
        return SpatioTemporalNet.from_students(students[0][0], students[1][0],
                                               arch=arch_spec(config), generator=gen)

    return train(
        config, build=build,
        data_fn=lambda progress: load_data(config, teachers, teachers,
                                           gaze_only=config.lam == 0, progress=progress),
        meta=meta)
