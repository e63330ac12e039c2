"""Step 1 of SKD: distil a spatial or temporal student from its teacher and the humans.

``L = lambda * L_soft(student, teacher map) + (1 - lambda) * L_hard(student, human map)``
(normalised L2, see training/losses.py); frames without gaze use the soft term only.  The
spatial student learns from the spatial teacher, the temporal student from the temporal one.
The spatial-only / temporal-only ablations of the paper are these students evaluated alone.
"""

from __future__ import annotations

import argparse

from skd_saliency_ros.core.models import build_model

from .trainer import add_common_arguments, arch_spec, load_data, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m training distill``."""
    parser.add_argument("--student", required=True, choices=("spatial", "temporal"),
                        help="which student to distil")
    add_common_arguments(parser, default_lambda=0.5, default_steps=2000)


def run(args: argparse.Namespace) -> int:
    """Distil one student; write its checkpoint."""
    teacher = args.spatial_teacher if args.student == "spatial" else args.temporal_teacher
    meta = {"step": "distill", "teachers": {args.student: teacher},
            "soft_teachers": [teacher], "init": "default (seeded)"}
    return train(
        args, args.student,
        build=lambda: build_model(args.student, arch_spec(args)),
        data_fn=lambda progress: load_data(args, [teacher], [teacher],
                                           gaze_only=args.lam == 0, progress=progress),
        meta=meta)
