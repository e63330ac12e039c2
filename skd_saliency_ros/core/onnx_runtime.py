"""Running exported models with onnxruntime, without the ``onnx`` package.

Exporting (onnx_export) needs torch's exporter and the ``onnx`` package; *running* an
exported file needs only onnxruntime.  Keeping the two apart lets the node start on its
default path (the shipped, pre-exported default model) with what rosdep installs: ``onnx``
has no rosdep key.
"""

from __future__ import annotations

import os

from skd_saliency_ros.core.hashing import file_hexdigest

#: Version of the export recipe; 2: the inference-fused model (BN folded, LRN as 1x1 conv).
EXPORT_VERSION = 2


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a checkpoint file: ties an exported ONNX file to the weights it came from."""
    return file_hexdigest(path, "sha256")


def ort_session(path: str | os.PathLike, threads: int = 0, device: str = "cpu"):
    """Open an onnxruntime session with the options every part of the package runs with.

    One thread pool of ``threads`` (0: onnxruntime's default, all cores), sequential
    execution, all graph optimisations, and no spinning: idle pool threads would otherwise
    busy-wait between frames, taking CPU from the rest of the drone's software for a few
    microseconds of latency.  The engine, the benchmarks and the teachers all use it, so a
    benchmark times what the node runs.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or 0)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = ["CPUExecutionProvider"]
    if device == "cuda":
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), opts, providers=providers)
