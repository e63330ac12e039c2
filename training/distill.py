"""Step 1 of SKD: distil a spatial or temporal student from its teacher and the humans.

``L = lambda * L_soft(student, teacher map) + (1 - lambda) * L_hard(student, human map)``
(``--loss``, training/losses.py); frames without gaze use the soft term only.  The spatial
student learns from the spatial teacher, the temporal student from the temporal one.  The
spatial-only / temporal-only ablations of the paper are these students evaluated alone.
The defaults are the shipped model's recipe (training/recipe.py), TinyHD-M and lambda 1 among
them; the paper's students take ``--lambda 0.5`` and teachers of their kind.
"""

from __future__ import annotations

import argparse

from skd_saliency_ros.core.models import build_model

from .recipe import SHIPPED_RECIPE, TrainConfig
from .trainer import add_common_arguments, arch_spec, load_data, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m training distill``: the shipped recipe's values by default."""
    parser.add_argument("--student", required=True, choices=("spatial", "temporal"),
                        help="which student to distil")
    add_common_arguments(parser, SHIPPED_RECIPE)


def run(args: argparse.Namespace) -> int:
    """Distil one student; write its checkpoint."""
    config = TrainConfig.from_args(args, args.student, from_scratch=True)  # a seeded init
    teacher = config.spatial_teacher if config.kind == "spatial" else config.temporal_teacher
    meta = {"step": "distill", "teachers": {config.kind: teacher},
            "soft_teachers": [teacher], "init": "default (seeded)"}
    return train(
        config,
        build=lambda: build_model(config.kind, arch_spec(config)),
        data_fn=lambda progress: load_data(config, [teacher], [teacher],
                                           gaze_only=config.lam == 0, progress=progress),
        meta=meta)
