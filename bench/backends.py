"""Models and inference backends of the speed benchmark (``python -m bench.models``).

One job: turn a model name into a loaded model, and a (model, backend, input size, batch,
threads) cell into a zero-argument callable that runs one inference, so bench/models.py can
time every backend the same way.  An input size is R (R x R) or H x W (anything
core.input_size parses); a checkpoint's own trained size is in ``info["trained_resolution"]``
(R as before when square, else "HxW").  A model that cannot be loaded or a backend that is
not installed raises BenchError with the reason; nothing is silently skipped.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from skd_saliency_ros.core.input_size import InputSize, parse_input_size, plain_size, \
    size_of_checkpoint
from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.checkpoint import CheckpointError, DEFAULT_MODEL, load_checkpoint
from skd_saliency_ros.core.models import (ARCHITECTURES, build_model, count_parameters,
                                          fold_batchnorm)

#: CPU backends, then the GPU one.  "torch" is what SaliencyEngine(backend="torch") runs.
CPU_BACKENDS = ("torch", "torch-jit", "onnxruntime")
GPU_BACKENDS = ("cuda-fp16",)
BACKENDS = CPU_BACKENDS + GPU_BACKENDS
BACKEND_NOTES = {
    "torch": "torch eager, float32, fused for inference (BN folded, LRN as 1x1 conv, constant "
             "prior), channels-last: what SaliencyEngine(backend='torch') runs",
    "torch-jit": "BN folded into the convs, torch.jit.trace + freeze, float32",
    "onnxruntime": "ONNX export (skd_saliency_ros.core.onnx_export), CPUExecutionProvider, "
                   "ORT_ENABLE_ALL",
    "cuda-fp16": "CUDA, BN folded, float16, channels_last, replayed as a CUDA graph",
}


class BenchError(SkdError, RuntimeError):
    """A model or backend the benchmark was asked for and cannot measure."""


@dataclass
class BenchModel:
    """A loaded fused (or student) model plus where it came from."""

    label: str
    source: str
    model: torch.nn.Module
    info: Dict[str, Any] = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        """3 for a spatial student, 6 for temporal and fused models."""
        return int(self.model.in_channels)


def load_bench_model(name: str, label: Optional[str] = None,
                     seed: int = 0) -> BenchModel:
    """Resolve ``name``: an architecture (random weights), "default", or a checkpoint path.

    Speed does not depend on the weights' values, so architectures are measured with
    seeded random weights; "default" is checkpoint.DEFAULT_MODEL and must exist.
    """
    if name in ARCHITECTURES:
        torch.manual_seed(seed)
        model = build_model("fused", name).eval()
        return BenchModel(label or name, f"architecture '{name}' (random weights)", model,
                          {"kind": "fused", "arch": name, "trained_resolution": None})
    if name == "default":
        path = DEFAULT_MODEL
        if not path.is_file():
            raise BenchError(
                f"model 'default': {path} does not exist yet (the trained default model); "
                "train it first (python -m training transfer ...) or benchmark architectures "
                f"instead, e.g. --models {','.join(ARCHITECTURES)}")
    else:
        path = Path(name)
        if path.suffix == ".onnx":
            raise BenchError(f"model '{name}': give the .pt checkpoint, not an ONNX file; the "
                             "bench exports it itself for the onnxruntime backend")
        if not path.is_file():
            raise BenchError(f"model '{name}': not an architecture "
                             f"({', '.join(ARCHITECTURES)}), not 'default', and no such file")
    try:
        model, payload = load_checkpoint(path)
    except CheckpointError as exc:
        raise BenchError(f"model '{name}': cannot load it: {exc}") from exc
    arch = payload["arch"].get("name", "custom")
    return BenchModel(label or (name if name == "default" else path.stem), str(path),
                      model.eval(),
                      {"kind": payload["kind"], "arch": arch,
                       "trained_resolution": plain_size(size_of_checkpoint(payload))})


def _forward_with_hook(model: torch.nn.Module, x: torch.Tensor, hook) -> None:
    handles = [m.register_forward_hook(lambda _m, _i, out: hook(out))
               for m in model.modules() if not list(m.children())]
    try:
        hook(x)
        with torch.inference_mode():
            hook(model(x))
    finally:
        for handle in handles:
            handle.remove()


def activation_bytes(model: torch.nn.Module, in_channels: int, size) -> Tuple[int, int]:
    """(total, peak) bytes of the activations of one batch-1 float32 forward pass.

    total: the input plus every leaf module's output, in-place results counted once (what an
    implementation that keeps every activation would hold).  peak: the most bytes of those
    tensors alive at once, sampled after each leaf module (a tensor stays alive while Python
    holds a reference to it; op-internal scratch such as im2col buffers is not counted).
    """
    x = torch.rand(1, in_channels, *parse_input_size(size, "bench input size"))
    kept: Dict[int, Tuple[torch.Tensor, int]] = {}  # holding them stops address reuse

    def keep(out):
        if isinstance(out, torch.Tensor):
            storage = out.untyped_storage()
            kept[storage.data_ptr()] = (out, storage.nbytes())
    _forward_with_hook(model, x, keep)
    total = sum(n for _, n in kept.values())
    kept.clear()

    live: Dict[int, Tuple[weakref.ref, int]] = {}
    peak = [0]

    def sample(out):
        if isinstance(out, torch.Tensor):
            storage = out.untyped_storage()
            live[storage.data_ptr()] = (weakref.ref(out), storage.nbytes())
            peak[0] = max(peak[0], sum(n for ref, n in live.values() if ref() is not None))
    _forward_with_hook(model, x, sample)
    return int(total), int(peak[0])


def model_stats(bench_model: BenchModel, size) -> Dict[str, float]:
    """Parameters (count, MB float32) and activation memory (MB: total, peak) at one size."""
    params = count_parameters(bench_model.model)
    total, peak = activation_bytes(bench_model.model, bench_model.in_channels, size)
    return {"params": params, "params_mb": params * 4 / 1e6, "act_mem_mb": total / 1e6,
            "act_peak_mb": peak / 1e6}


def check_backends(names: List[str]) -> Tuple[List[str], Dict[str, str]]:
    """Resolve a backend list; "auto" = every installed one.  Return (usable, skipped->why).

    An explicitly requested backend that is unknown or not installed raises BenchError.
    """
    skipped: Dict[str, str] = {}
    wanted = list(BACKENDS) if names == ["auto"] else names
    usable = []
    for name in wanted:
        if name not in BACKENDS:
            raise BenchError(f"unknown backend '{name}'; known: {', '.join(BACKENDS)} "
                             "(or auto)")
        why = backend_missing(name)
        if why is None:
            usable.append(name)
        elif names == ["auto"]:
            skipped[name] = why
        else:
            raise BenchError(f"backend '{name}' was requested but is not available: {why}")
    if not usable:
        raise BenchError("no backend available to measure")
    return usable, skipped


def backend_missing(name: str) -> Optional[str]:
    """Why ``name`` cannot run here, or None when it can."""
    if name == "onnxruntime":
        try:
            import onnxruntime  # noqa: F401
            import onnx  # noqa: F401
        except ImportError as exc:
            return f"cannot import {exc.name or 'onnxruntime'} (pip install onnxruntime onnx)"
    if name in GPU_BACKENDS and not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return None


class CellRunner:
    """Builds the callable for one cell, caching per-(model, size) artefacts (ONNX files)."""

    def __init__(self, workdir: Optional[str] = None):
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="skd_bench_")
        self.workdir = Path(workdir or self._tmp.name)
        self._onnx: Dict[Tuple[str, InputSize], Path] = {}
        self._folded: Dict[str, torch.nn.Module] = {}

    def close(self) -> None:
        """Delete the exported ONNX files."""
        if self._tmp is not None:
            self._tmp.cleanup()

    def folded(self, bench_model: BenchModel) -> torch.nn.Module:
        """BN-folded inference copy of a model (cached)."""
        if bench_model.label not in self._folded:
            self._folded[bench_model.label] = fold_batchnorm(bench_model.model)
        return self._folded[bench_model.label]

    def onnx_file(self, bench_model: BenchModel, size) -> Path:
        """Export the model once per input size with the runtime engineer's exporter."""
        size = parse_input_size(size, "bench input size")
        key = (bench_model.label, size)
        if key not in self._onnx:
            from skd_saliency_ros.core.models import fuse_for_inference
            from skd_saliency_ros.core.onnx_export import export_onnx

            path = self.workdir / f"{bench_model.label}_r{size.label}.onnx"
            try:
                # the fused copy, as export_checkpoint writes it for the engine
                export_onnx(fuse_for_inference(bench_model.model, size), path,
                            size, dynamic_batch=True, overwrite=True)
            except Exception as exc:  # the exporter raises its own and torch's errors
                raise BenchError(f"model '{bench_model.label}': ONNX export at input "
                                 f"{size.label} failed: {type(exc).__name__}: {exc}") from exc
            self._onnx[key] = path
        return self._onnx[key]

    def make(self, backend: str, bench_model: BenchModel, size, batch: int,
             threads: int) -> Callable[[], Any]:
        """Return ``fn`` such that ``fn()`` runs one batched inference and waits for it."""
        size = parse_input_size(size, "bench input size")
        shape = (batch, bench_model.in_channels, *size)
        gen = torch.Generator().manual_seed(size.pixels * 1000 + batch)
        x = torch.rand(shape, generator=gen)
        if backend == "torch":
            # what SaliencyEngine(backend="torch") runs: the fused copy (BN folded, LRN as a
            # 1x1 conv, constant prior), channels-last input
            from skd_saliency_ros.core.models import fuse_for_inference

            torch.set_num_threads(threads)
            model = fuse_for_inference(bench_model.model, size).to(
                memory_format=torch.channels_last).eval()
            xc = x.contiguous(memory_format=torch.channels_last)

            def run():
                with torch.inference_mode():
                    return model(xc)
            return run
        if backend == "torch-jit":
            torch.set_num_threads(threads)
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer notes about the prior's size
                traced = torch.jit.freeze(torch.jit.trace(self.folded(bench_model), x))

            def run():
                with torch.inference_mode():
                    return traced(x)
            return run
        if backend == "onnxruntime":
            from skd_saliency_ros.core.onnx_runtime import ort_session

            # the engine's own session options (no spinning), so the bench times what runs
            session = ort_session(self.onnx_file(bench_model, size), threads)
            name = session.get_inputs()[0].name
            feed = {name: x.numpy()}

            def run():
                return session.run(None, feed)
            return run
        if backend == "cuda-fp16":
            return _cuda_graph_runner(self.folded(bench_model), x)
        raise BenchError(f"unknown backend '{backend}'")


def _cuda_graph_runner(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], Any]:
    """fp16 channels_last model captured in a CUDA graph; the call replays it and syncs."""
    net = copy.deepcopy(model).cuda().half().to(memory_format=torch.channels_last).eval()
    static_in = x.cuda().half().contiguous(memory_format=torch.channels_last)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode(), torch.cuda.stream(stream):
        for _ in range(3):  # warm up cuDNN autotuning outside the graph
            net(static_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.inference_mode(), torch.cuda.graph(graph):
        static_out = net(static_in)

    def run():
        graph.replay()
        torch.cuda.synchronize()
        return static_out
    return run


def all_threads() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
