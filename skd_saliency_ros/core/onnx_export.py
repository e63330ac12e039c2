"""Export a saliency model to ONNX for the onnxruntime backend.

The file carries what the engine needs to run it without the checkpoint, as ONNX
``metadata_props``: ``input_size`` ("HxW"; plus ``resolution`` "R" when square, as files
before non-square input had), ``kind``, ``arch`` (name), ``arch_spec`` (JSON),
``in_channels`` and ``skd_export_version``.  Input ``frames`` (B, C, H, W) float in [0, 1],
output ``saliency`` (B, 1, H, W) raw map, batch axis dynamic unless asked otherwise.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import onnx
import torch

from skd_saliency_ros.core.atomic import atomic_path
from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.input_size import InputSizeError, parse_input_size, size_of_checkpoint
from skd_saliency_ros.core.onnx_runtime import EXPORT_VERSION, checkpoint_sha256, ort_session
from skd_saliency_ros import __version__

INPUT_NAME = "frames"
OUTPUT_NAME = "saliency"
MIN_OPSET = 17
#: Largest |onnxruntime - torch| accepted on the export self-check.
TOLERANCE = 1e-4


class OnnxExportError(SkdError, RuntimeError):
    """The model could not be exported, or the export does not reproduce torch's output."""


def _export_legacy(model: torch.nn.Module, sample: torch.Tensor, path: str, opset: int,
                   dynamic_batch: bool) -> None:
    with warnings.catch_warnings():
        # Deprecation and tracer notes of the legacy exporter: the graph is static anyway.
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (sample,), path, dynamo=False, opset_version=opset,
                          do_constant_folding=True, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME],
                          dynamic_axes=({INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
                                        if dynamic_batch else None))


def _export_dynamo(model: torch.nn.Module, sample: torch.Tensor, path: str, opset: int,
                   dynamic_batch: bool) -> None:
    shapes = ({0: torch.export.Dim("batch", min=1, max=65536)},) if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (sample,), path, dynamo=True, opset_version=max(opset, 18),
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_shapes=shapes, verbose=False)


def _export_file(model: torch.nn.Module, sample: torch.Tensor, path: str, opset: int,
                 dynamic_batch: bool, exporter: str) -> None:
    """Write the graph: the TorchScript exporter first (small, plain graph), dynamo second.

    The legacy exporter is deprecated in torch 2.9+; "auto" falls back to the dynamo one
    (opset >= 18) the day it is gone.
    """
    errors = []
    steps = {"auto": ("legacy", "dynamo"), "legacy": ("legacy",), "dynamo": ("dynamo",)}
    if exporter not in steps:
        raise OnnxExportError(f"exporter '{exporter}' is not one of {tuple(steps)}")
    for name in steps[exporter]:
        try:
            (_export_legacy if name == "legacy" else _export_dynamo)(
                model, sample, path, opset, dynamic_batch)
            return
        except Exception as exc:  # any exporter failure: try the next, then report all
            errors.append(f"{name}: {type(exc).__name__}: {str(exc).strip()[:500]}")
    raise OnnxExportError("ONNX export failed: " + "; ".join(errors))


def _self_check(path: Path, model: torch.nn.Module, sample: torch.Tensor) -> float:
    """Run the file in onnxruntime on ``sample`` and return max |ort - torch|."""
    session = ort_session(path, threads=1)
    got = session.run(None, {INPUT_NAME: sample.numpy()})[0]
    with torch.inference_mode():
        want = model(sample).numpy()
    return float(np.abs(got - want).max())


def export_onnx(model: torch.nn.Module, path: str | os.PathLike, size,
                dynamic_batch: bool = True, overwrite: bool = False, opset: int = MIN_OPSET,
                meta: Optional[Dict[str, Any]] = None, verify: bool = True,
                exporter: str = "auto") -> Path:
    """Export ``model`` at input ``size`` (R or H x W) to ``path`` (atomically); return the path.

    The graph's input is (B, C, H, W) with H and W fixed (the batch axis dynamic unless
    ``dynamic_batch`` is False); a model's prior must already be fused at that size.
    Refuses to replace an existing file unless ``overwrite``.  The written model passes
    ``onnx.checker``; with ``verify`` it is also run once in onnxruntime on a random batch
    and must match torch within TOLERANCE.  ``meta`` adds string metadata_props.
    ``exporter``: "auto" (TorchScript exporter, dynamo if that fails), "legacy" or "dynamo".
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OnnxExportError(f"{path}: a file already exists there; refusing to overwrite it "
                              "(pass overwrite=True / --overwrite to replace it)")
    kind = getattr(model, "kind", None)
    spec = getattr(model, "spec", None)
    if kind is None or spec is None:
        raise OnnxExportError(f"cannot export a {type(model).__name__}: not a saliency model")
    factor = int(getattr(model, "factor", 1))
    try:
        size = parse_input_size(size, "ONNX export input size")
    except InputSizeError as exc:
        raise OnnxExportError(str(exc)) from None
    if not size.divisible_by(factor):
        raise OnnxExportError(f"input {size} must be a multiple of {factor} for "
                              f"architecture '{spec.get('name', '?')}'")
    if opset < MIN_OPSET:
        raise OnnxExportError(f"opset {opset} is below the supported minimum {MIN_OPSET}")
    net = copy.deepcopy(model).cpu().float().eval()
    channels = int(net.in_channels)
    gen = torch.Generator().manual_seed(0)
    sample = torch.rand(2 if dynamic_batch else 1, channels, size.height, size.width,
                        generator=gen)

    with atomic_path(path) as tmp:
        _export_file(net, sample, tmp, opset, dynamic_batch, exporter)
        proto = onnx.load(tmp)
        props = {str(k): str(v) for k, v in (meta or {}).items()}
        # The keys the engine relies on always describe this export (meta cannot override).
        # "resolution" (R) only for a square input: older readers of square files are
        # unchanged, and a non-square file is never read by them as R x R.
        props.update({"input_size": f"{size.height}x{size.width}", "kind": str(kind),
                      **({"resolution": str(size.height)} if size.square else {}),
                      "arch": str(spec.get("name", "custom")), "arch_spec": json.dumps(spec),
                      "in_channels": str(channels), "skd_export_version": str(EXPORT_VERSION),
                      "skd_saliency_ros_version": __version__})
        del proto.metadata_props[:]
        for key, value in props.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.doc_string = (f"skd_saliency_ros {kind} saliency model '{props['arch']}', "
                            f"input {INPUT_NAME} (B,{channels},{size.height},{size.width}) "
                            f"RGB in [0,1], output {OUTPUT_NAME} "
                            f"(B,1,{size.height},{size.width})")
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, tmp)
        if verify:
            err = _self_check(Path(tmp), net, sample)
            if not err <= TOLERANCE:
                raise OnnxExportError(f"{path}: onnxruntime output differs from torch by "
                                      f"{err:.3g} > {TOLERANCE}")
    return path


def export_checkpoint(checkpoint_path: str | os.PathLike, path: str | os.PathLike,
                      overwrite: bool = False, dynamic_batch: bool = True,
                      opset: int = MIN_OPSET) -> Path:
    """Export the model stored in a checkpoint at its stored input size, fused for inference.

    Raises checkpoint.CheckpointError for a missing or wrong checkpoint.  The checkpoint's
    validation metrics and code version travel into the ONNX metadata.
    """
    from skd_saliency_ros.core.checkpoint import load_checkpoint
    from skd_saliency_ros.core.models import fuse_for_inference

    model, payload = load_checkpoint(checkpoint_path)
    # what the engine's torch path runs too: BN folded (every layout), LRN as a banded 1x1
    # conv, the prior a constant; same outputs to float rounding (export_onnx checks it),
    # about 6 % faster in onnxruntime than the plain graph.
    size = size_of_checkpoint(payload)
    model = fuse_for_inference(model, size)
    meta = {"source_checkpoint": Path(checkpoint_path).name,
            "source_checkpoint_sha256": checkpoint_sha256(checkpoint_path),
            "checkpoint_code_version": payload.get("code_version", "?"),
            "checkpoint_meta": json.dumps(payload.get("meta", {}), default=str)}
    return export_onnx(model, path, size, dynamic_batch=dynamic_batch,
                       overwrite=overwrite, opset=opset, meta=meta)
