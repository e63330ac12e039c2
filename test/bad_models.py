"""Real ONNX models that load in onnxruntime but cannot serve, built with the ``onnx`` package.

Each is a small valid graph (``onnx.checker`` passes, onnxruntime opens it) with the input
and metadata an exported model has (core/onnx_export.py): input ``frames`` (B, 6, R, R),
output ``saliency``, metadata_props ``resolution``, ``kind``, ``arch``, ``in_channels``.
What is wrong with each is one thing: the input type, the output rank, the output values,
or the metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _const(name: str, value, dtype=np.float32) -> onnx.NodeProto:
    """Return a Constant node holding ``value``."""
    return helper.make_node("Constant", [], [name],
                            value=numpy_helper.from_array(np.asarray(value, dtype), name))


def _first_channel(source: str) -> List[onnx.NodeProto]:
    """Nodes slicing channel 0 of ``source`` into ``ch0`` (B, 1, R, R): a raw map."""
    return [_const("starts", [0], np.int64), _const("ends", [1], np.int64),
            _const("axes", [1], np.int64),
            helper.make_node("Slice", [source, "starts", "ends", "axes"], ["ch0"])]


def write_model(path: Path, nodes: Sequence[onnx.NodeProto], out: str, out_shape,
                resolution: int = 32, input_type: int = TensorProto.FLOAT,
                input_shape=None, out_type: int = TensorProto.FLOAT,
                meta: Optional[Dict[str, str]] = None) -> Path:
    """Save a graph from input ``frames`` to output ``out`` with the export's metadata."""
    shape = input_shape or ["batch", 6, resolution, resolution]
    graph = helper.make_graph(
        list(nodes), "bad_model",
        [helper.make_tensor_value_info("frames", input_type, shape)],
        [helper.make_tensor_value_info(out, out_type, out_shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    props = {"resolution": str(resolution), "kind": "fused", "arch": "bad-test-model",
             "in_channels": "6"}
    props.update(meta or {})
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


def float16_input(path: Path, resolution: int = 32) -> Path:
    """Write a model with a float16 input: the engine feeds float32, every run is refused."""
    nodes = [helper.make_node("Cast", ["frames"], ["f32"], to=TensorProto.FLOAT)]
    nodes += _first_channel("f32")
    return write_model(path, nodes, "ch0", ["batch", 1, resolution, resolution], resolution,
                       input_type=TensorProto.FLOAT16)


def rank1_output(path: Path, resolution: int = 32) -> Path:
    """Write a model with output shape (B,): one number per frame instead of a map."""
    nodes = [helper.make_node("ReduceMean", ["frames"], ["score"], axes=[1, 2, 3],
                              keepdims=0)]
    return write_model(path, nodes, "score", ["batch"], resolution)


def log_of_negative(path: Path, resolution: int = 32) -> Path:
    """Write Log(x - 2), x in [0, 1]: NaN for every pixel of every frame."""
    nodes = _first_channel("frames") + [
        _const("two", 2.0), helper.make_node("Sub", ["ch0", "two"], ["shifted"]),
        helper.make_node("Log", ["shifted"], ["saliency"])]
    return write_model(path, nodes, "saliency", ["batch", 1, resolution, resolution],
                       resolution)


def divide_by_zero(path: Path, resolution: int = 32) -> Path:
    """Write x / 0: inf where x > 0, NaN where x = 0."""
    nodes = _first_channel("frames") + [
        _const("zero", 0.0), helper.make_node("Div", ["ch0", "zero"], ["saliency"])]
    return write_model(path, nodes, "saliency", ["batch", 1, resolution, resolution],
                       resolution)


def false_resolution(path: Path, resolution: int = 32) -> Path:
    """Write a graph fixed at R x R whose metadata claims 2R: the engine feeds 2R."""
    nodes = _first_channel("frames")
    return write_model(path, nodes, "ch0", ["batch", 1, resolution, resolution], resolution,
                       input_shape=["batch", 6, resolution, resolution],
                       meta={"resolution": str(2 * resolution)})


def int_output(path: Path, resolution: int = 32) -> Path:
    """Write an integer map (Cast to int32): not the float map the engine normalises."""
    nodes = _first_channel("frames") + [
        helper.make_node("Cast", ["ch0"], ["saliency"], to=TensorProto.INT32)]
    return write_model(path, nodes, "saliency", ["batch", 1, resolution, resolution],
                       resolution, out_type=TensorProto.INT32)


def nan_off_grey(path: Path, resolution: int = 32) -> Path:
    """Write sqrt(0.01 - (x - 0.5)^2): finite near mid-grey, NaN where a pixel is off by > 0.1.

    It passes the engine's load check (a mid-grey frame pair) and gives NaN on real camera
    frames, which always have darker or brighter pixels: the case the node must catch per
    frame.
    """
    nodes = _first_channel("frames") + [
        _const("half", 0.5), _const("hundredth", 0.01),
        helper.make_node("Sub", ["ch0", "half"], ["d"]),
        helper.make_node("Mul", ["d", "d"], ["d2"]),
        helper.make_node("Sub", ["hundredth", "d2"], ["room"]),
        helper.make_node("Sqrt", ["room"], ["saliency"])]
    return write_model(path, nodes, "saliency", ["batch", 1, resolution, resolution],
                       resolution)


def fails_off_grey(path: Path, resolution: int = 32) -> Path:
    """Write a lookup table indexed by 1000 |x - 0.5|: an error wherever a pixel is off by > 0.1.

    Gather refuses an index past its 100 entries, so onnxruntime raises on real camera
    frames while the mid-grey load check runs: a model that fails at run time only.
    """
    nodes = _first_channel("frames") + [
        _const("half", 0.5), _const("scale", 1000.0), _const("table", np.zeros(100)),
        helper.make_node("Sub", ["ch0", "half"], ["d"]),
        helper.make_node("Abs", ["d"], ["ad"]),
        helper.make_node("Mul", ["ad", "scale"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["index"], to=TensorProto.INT64),
        helper.make_node("Gather", ["table", "index"], ["saliency"], axis=0)]
    return write_model(path, nodes, "saliency", ["batch", 1, resolution, resolution],
                       resolution)


#: name -> builder of every model the engine must refuse at load.
UNSERVABLE = {"float16 input": float16_input, "rank-1 output": rank1_output,
              "NaN output (log of a negative)": log_of_negative,
              "inf/NaN output (division by zero)": divide_by_zero,
              "false resolution metadata": false_resolution,
              "integer output": int_output}
