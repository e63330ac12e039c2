"""``python -m training export``: write a checkpoint as an ONNX file for the onnxruntime backend.

The checkpoint is exported at its stored input size (R x R, or H x W for a non-square model;
the ONNX metadata says ``input_size``).  The export itself is
skd_saliency_ros.core.onnx_export (the runtime's code, so the node's own on-the-fly export
and this command produce the same graph); this step resolves the model, refuses to overwrite
unless asked, and prints how far onnxruntime is from torch on a real frame pair of the data
bundle (the exporter already refuses anything above 1e-4 on noise).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.output_paths import Output, check_outputs
from skd_saliency_ros.core.checkpoint import DEFAULT_MODEL, CheckpointError
from skd_saliency_ros.core.input_size import size_of_checkpoint


class ExportError(SkdError, RuntimeError):
    """The model could not be exported (the CLI prints it as one line, exit 2)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the export step."""
    parser.add_argument("--model", default="default",
                        help="'default' (skd_saliency_ros/weights/skd_default_r64.pt) or a "
                             "checkpoint path")
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--static-batch", action="store_true",
                        help="fix the batch size to 1 (default: dynamic batch axis)")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")


def _model_path(name: str) -> Path:
    if name == "default":
        if not DEFAULT_MODEL.is_file():
            raise ExportError(f"model 'default': {DEFAULT_MODEL} does not exist yet; train it "
                              "first or pass --model PATH.pt")
        return DEFAULT_MODEL
    path = Path(name)
    if not path.is_file():
        raise ExportError(f"model '{name}': no such checkpoint file")
    return path


def _real_pair(size, channels: int) -> np.ndarray | None:
    """Two consecutive frames of the bundle's car10 video at H x W, as the engine feeds them."""
    from skd_saliency_ros.core.maps import resize_area
    from skd_saliency_ros.core.frames import FrameSource, FrameSourceError
    from training.paths import default_data_dir

    try:  # no bundle (or an unreadable clip): the caller falls back to random input
        rgb = list(FrameSource(default_data_dir() / "uav_gaze" / "car10.mp4").frames(0, 2))
    except FrameSourceError:
        return None
    frames = [resize_area(f, size).transpose(2, 0, 1) / 255.0 for f in rgb]
    # channels 0-2: frame t, 3-5: frame t-1 (causal pairing)
    pair = np.concatenate([frames[1], frames[0]])[:channels]
    return pair[None].astype(np.float32)


def run(args) -> int:
    """Export, then compare onnxruntime with torch on a real frame pair."""
    import onnxruntime as ort
    import torch

    from skd_saliency_ros.core.checkpoint import load_checkpoint
    from skd_saliency_ros.core.onnx_export import MIN_OPSET, OnnxExportError, export_checkpoint

    source = _model_path(args.model)
    check_outputs([Output("--out", args.out)], inputs=[("--model", source)],
                  overwrite=args.overwrite)
    if args.out.suffix != ".onnx":
        raise ExportError(f"{args.out}: the output file name must end in .onnx")
    try:
        model, payload = load_checkpoint(source)
    except CheckpointError as exc:
        raise ExportError(f"model '{args.model}': cannot load it: {exc}") from exc
    try:
        path = export_checkpoint(source, args.out, overwrite=args.overwrite,
                                 dynamic_batch=not args.static_batch,
                                 opset=args.opset or MIN_OPSET)
    except (OnnxExportError, CheckpointError) as exc:
        raise ExportError(str(exc)) from exc
    size = size_of_checkpoint(payload)
    sample = _real_pair(size, int(model.in_channels))
    where = "a real car10 frame pair"
    if sample is None:
        sample = np.random.default_rng(0).random(
            (1, int(model.in_channels), *size), dtype=np.float32)
        where = "random input (data bundle not found)"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: sample})[0]
    with torch.inference_mode():
        want = model(torch.from_numpy(sample)).numpy()
    diff = float(np.abs(got - want).max())
    size_kb = os.path.getsize(path) / 1024
    print(f"wrote {path} ({size_kb:.0f} KiB): {payload['kind']} model "
          f"'{payload['arch'].get('name', '?')}' at its trained input {size.label}, input "
          f"(B, {model.in_channels}, {size.height}, {size.width}), "
          f"{'static' if args.static_batch else 'dynamic'} batch")
    print(f"max |onnxruntime - torch| on {where}: {diff:.2e} (limit 1e-4)")
    if not diff <= 1e-4:
        raise ExportError(f"{path}: onnxruntime differs from torch by {diff:.3g} > 1e-4")
    return 0
