"""Ablation: copy a trained ``*-prior`` checkpoint with its learned prior map set to zero.

``python -m training.ablate_prior IN.pt OUT.pt`` -- the copy is the same network without the
position map it learned (no retraining), to measure what that map contributes; docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import torch

from skd_saliency_ros.core.input_size import size_of_checkpoint
from skd_saliency_ros.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from skd_saliency_ros.core.output_paths import Output, OutputPathError, check_outputs


def main(argv: Optional[List[str]] = None) -> int:
    """Write OUT with the prior map of IN zeroed; refuse models without a learned prior."""
    parser = argparse.ArgumentParser(prog="python -m training.ablate_prior",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("output")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        check_outputs([Output("output", args.output)], inputs=[("source", args.source)],
                      overwrite=args.overwrite)
        model, payload = load_checkpoint(args.source)
        if getattr(model, "prior", None) is None:
            raise CheckpointError(f"{args.source}: architecture "
                                  f"'{payload['arch'].get('name')}' has no learned prior")
        with torch.no_grad():
            model.prior.map.zero_()
        meta = dict(payload.get("meta", {}),
                    ablation=f"learned prior map of {args.source} set to zero")
        save_checkpoint(args.output, model, size_of_checkpoint(payload), meta=meta,
                        overwrite=args.overwrite)
    except (CheckpointError, OutputPathError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
