"""Step 2 of SKD: the fused spatiotemporal model, initialised from the two students.

The two streams are copied from the trained students' first eight layers, the fusion
sub-network starts from a truncated normal (``SpatioTemporalNet.from_students``), and the
whole model is trained on the hard (human) loss: ``--lambda 0`` by default, so only frames
with gaze are used.  ``--lambda > 0`` adds a soft term against the spatial and temporal
teachers (combined by ``PairDataset``) and lets gaze-less clips in.
``--from-scratch`` is the paper's "no separate distillation" ablation: the same step 2
training, from a default (seeded) initialisation instead of the students.
"""

from __future__ import annotations

import argparse

import torch

from skd_saliency_ros.core.checkpoint import CheckpointError, load_checkpoint
from skd_saliency_ros.core.models import SpatioTemporalNet, build_model

from .trainer import TrainingError, add_common_arguments, arch_spec, load_data, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m training transfer``."""
    parser.add_argument("--spatial", type=str, default=None,
                        help="trained spatial student checkpoint (from distill)")
    parser.add_argument("--temporal", type=str, default=None,
                        help="trained temporal student checkpoint (from distill)")
    parser.add_argument("--from-scratch", action="store_true",
                        help="ablation: ignore the students, start from a default init")
    add_common_arguments(parser, default_lambda=0.0, default_steps=1000)


def _students(args: argparse.Namespace):
    """Load both students, checking kind, architecture and resolution."""
    students = []
    for kind, path in (("spatial", args.spatial), ("temporal", args.temporal)):
        if not path:
            raise TrainingError(f"--{kind} CHECKPOINT is required (or pass --from-scratch)")
        try:
            model, payload = load_checkpoint(path, kind=kind, arch=arch_spec(args),
                                             resolution=args.resolution)
        except CheckpointError as exc:
            raise TrainingError(f"--{kind}: {exc}") from exc
        students.append((model, payload))
    return students


def run(args: argparse.Namespace) -> int:
    """Train the fused model; write its checkpoint."""
    students = None if args.from_scratch else _students(args)
    teachers = [args.spatial_teacher, args.temporal_teacher]
    meta = {"step": "transfer", "from_scratch": bool(args.from_scratch),
            "teachers": {"spatial": args.spatial_teacher, "temporal": args.temporal_teacher},
            "soft_teachers": teachers if args.lam > 0 else []}
    if students:
        meta["init"] = "students"
        meta["students"] = {kind: {"path": str(path), "meta": payload.get("meta", {})}
                            for kind, path, (_, payload) in
                            zip(("spatial", "temporal"), (args.spatial, args.temporal),
                                students)}
    else:
        meta["init"] = "default (seeded)"

    def build():
        if students is None:
            return build_model("fused", arch_spec(args))
        gen = torch.Generator().manual_seed(args.seed)
        return SpatioTemporalNet.from_students(students[0][0], students[1][0],
                                               arch=arch_spec(args), generator=gen)

    return train(
        args, "fused", build=build,
        data_fn=lambda progress: load_data(args, teachers, teachers,
                                           gaze_only=args.lam == 0, progress=progress),
        meta=meta)
