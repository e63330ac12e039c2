"""One CLI for the offline pipeline: ``python -m training <step> ...``.

Steps, in the order of docs/TRAINING.md: teach (cache teacher maps), distill (step 1, one
student), transfer (step 2, fused model), evaluate (metric tables, ROC plot), export (ONNX).
The speed tables are the benchmarks' (``python -m bench.models``, ``python -m
bench.teacher``: bench/ imports training, never the other way).  Each step is a module with
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when their step
runs, so one step's missing dependency never breaks another.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

from skd_saliency_ros.core.errors import run_reporting_user_errors

STEPS = {
    "teach": ("training.teach", "compute and cache teacher maps for the data bundle"),
    "distill": ("training.distill", "step 1: distil a spatial or temporal student"),
    "transfer": ("training.transfer", "step 2: train the fused model from the two students"),
    "evaluate": ("training.evaluate", "score models on a video with gaze (Table I, ROC)"),
    "export": ("training.export", "export a checkpoint to ONNX"),
    "gaze-import": ("training.gaze_import", "convert a gaze CSV (frame, x, y, observer) to "
                    "the bundle's .npz schema"),
    "contact-sheet": ("training.contact_sheet", "heat maps of several models on frames of "
                      "several clips, one PNG"),
}


def _load_step(name: str):
    module_name = STEPS[name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise SystemExit(f"python -m training {name}: the step module {module_name} is not "
                             "installed in this checkout") from exc
        raise SystemExit(f"python -m training {name}: cannot import {module_name}: "
                         f"missing module '{exc.name}'") from exc
    for attr in ("add_arguments", "run"):
        if not hasattr(module, attr):
            raise SystemExit(f"python -m training {name}: {module_name} lacks {attr}()")
    return module


def main(argv: Optional[List[str]] = None) -> int:
    """Parse ``<step> [options]`` and run the step; user errors exit 2 with one line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    top = argparse.ArgumentParser(
        prog="python -m training", description=__doc__.split("\n\n")[0],
        epilog="steps:\n" + "\n".join(f"  {k:9s} {v[1]}" for k, v in STEPS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("step", choices=sorted(STEPS), metavar="step",
                     help="one of: " + ", ".join(STEPS))
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    if argv[0] not in STEPS:
        top.parse_args(argv[:1])  # argparse prints the choices and exits 2
    name = argv[0]
    module = _load_step(name)
    parser = argparse.ArgumentParser(prog=f"python -m training {name}",
                                     description=STEPS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    return run_reporting_user_errors(f"python -m training {name}", lambda: module.run(args))


if __name__ == "__main__":
    sys.exit(main())
