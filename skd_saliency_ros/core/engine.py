"""SaliencyEngine: RGB frames in, H x W saliency maps out, with per-stream temporal state.

Plain numpy / torch or onnxruntime, no ROS types, so the node, the bag replay, the demo
and the benchmarks share one object.

Per frame: resize the whole frame to the model's input H x W (``engine.input_size``, an
``InputSize``; R x R for the square models) with area averaging (``core.maps.resize_area``,
cv2.INTER_AREA: each cell is the mean of the pixels it covers, so small aerial targets are
not aliased away), pair with the stream's previous frame (kept at H x W, a few KB), run the
model, then min-max normalise the raw map of each frame to [0, 1].  A frame whose aspect
ratio differs from the model's is squashed whole (anisotropically), exactly as the training
frames were, never cropped; the engine says so once per stream at INFO when the aspects
differ by more than ASPECT_TOLERANCE.
Normalisation makes maps comparable across frames and models; it discards the absolute
level, and a constant (or numerically flat) map becomes all zeros rather than noise.  A raw
map holding NaN or inf also becomes zeros; its StepResult says ``finite=False`` so that a
caller does not take those zeros for an answer.

Loading runs one check inference (a mid-grey frame paired with itself, the input of a
static scene's first frame) on the backend and device that will serve, so a model file that
opens but cannot run (wrong input type, wrong output shape or type, metadata that does not
match the graph) or whose output is not finite is refused at load with a ModelError naming
the file, instead of failing on every frame later.

Temporal state rules (../shared/DESIGN.md).  On the first frame of a stream, or after a
reset, the frame is paired with itself (the model then sees "no motion", which it learned
from static pairs) and the map IS returned: a spatial-only answer beats a missing one.
A stream resets when:

* its frame size changes: the old frame is another camera mode or crop, so a frame
  difference would be motion everywhere;
* the stamp goes backwards: a bag loop or a restarted player, the previous frame belongs
  to another moment;
* the gap to the previous frame exceeds ``max_gap_s``: after dropped frames or a stalled
  camera the displacement is far larger than what the model was trained on (10 fps);
* the caller says so (``reset``), e.g. when the node sees the encoding change.

Streams never share state, so two cameras are never paired with each other.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from skd_saliency_ros.core.backends import BACKENDS, DEVICES
from skd_saliency_ros.core.input_size import InputSize, size_of_checkpoint, size_of_onnx
from skd_saliency_ros.core.maps import fill_pair, normalise_maps, resize_area
from skd_saliency_ros.core.models import downsampling_factor, fuse_for_inference
from skd_saliency_ros.core.onnx_runtime import ort_session
from skd_saliency_ros.core.checkpoint import CheckpointError, DEFAULT_MODEL, load_checkpoint

#: Grey level of the load check's frame pair (uint8): mid-grey, a static scene.
CHECK_GREY = 128
#: Relative aspect-ratio difference (frame vs model input) above which a stream is told once
#: that its frames are squashed: 16:9 on a square model is 78 %, 4:3 on 48x80 is 20 %, a
#: 1280x720 frame on 64x112 is 1.6 % (no line).
ASPECT_TOLERANCE = 0.05


class ModelError(CheckpointError):
    """A model file that opens but cannot serve: it fails to run, or its output is unusable."""


@dataclass
class StepResult:
    """One frame's answer: the H x W map in [0, 1] and why the temporal state was reset.

    ``finite`` is False when the model's raw map held NaN or inf: ``saliency`` is then all
    zeros by the flat-map rule, which is no answer (the node publishes nothing for it).
    """

    saliency: np.ndarray
    reset_reason: Optional[str] = None
    stream: str = "default"
    finite: bool = True


@dataclass
class _StreamState:
    prev: np.ndarray          # previous frame at the model's H x W, uint8 RGB
    size: Tuple[int, int]     # (W, H) of the input frames
    stamp: float


def onnx_cache_dir() -> Path:
    """Where exported ONNX files of checkpoints are kept (SKD_ONNX_CACHE overrides)."""
    if os.environ.get("SKD_ONNX_CACHE"):
        return Path(os.environ["SKD_ONNX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "skd_saliency_ros" / "onnx"


def _check_factor(path: Path, size: InputSize, factor: int) -> None:
    """Raise CheckpointError naming ``path`` unless the down-sampling ``factor`` divides H, W.

    Otherwise the output map would not be H x W (or the graph would not run at all).
    """
    if not size.divisible_by(factor):
        raise CheckpointError(f"{path}: input {size.height}x{size.width} (H x W) is not a "
                              f"multiple of the architecture's down-sampling factor {factor}; "
                              "this engine cannot run it")


def _onnx_factor(path: Path, props: Dict[str, str]) -> int:
    """Down-sampling factor from an export's ``arch_spec`` metadata (1 when it has none)."""
    import json

    if "arch_spec" not in props:
        return 1
    try:
        return downsampling_factor(json.loads(props["arch_spec"])["stream"])
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CheckpointError(f"{path}: unreadable 'arch_spec' metadata ({type(exc).__name__}: "
                              f"{exc})") from None


def _check_frame(frame) -> Tuple[int, int]:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 \
            or frame.shape[2] != 3:
        what = (f"{frame.dtype} array of shape {frame.shape}" if isinstance(frame, np.ndarray)
                else type(frame).__name__)
        raise ValueError(f"expected an (H, W, 3) uint8 RGB frame, got a {what}")
    height, width = frame.shape[:2]
    if height == 0 or width == 0:
        raise ValueError(f"empty frame of shape {frame.shape}")
    return int(width), int(height)


class _TorchRunner:
    def __init__(self, path: Path, device: str, fuse: bool):
        model, payload = load_checkpoint(path)
        self.payload = payload
        self.in_channels = int(model.in_channels)
        self.input_size = size_of_checkpoint(payload)  # load_checkpoint checked it
        _check_factor(path, self.input_size, int(model.factor))
        if fuse:
            model = fuse_for_inference(model, self.input_size)
        # channels_last lets oneDNN vectorise over channels (pools and convs of few channels).
        self.model = model.to(device, memory_format=torch.channels_last).eval()
        self.device = device
        self.max_batch = None
        self.declared = ""  # a checkpoint declares no input beyond its architecture

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(batch)  # shares the engine's preallocated buffer
            if self.device != "cpu":
                x = x.to(self.device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
            return self.model(x).float().cpu().numpy()


class _OnnxRunner:
    def __init__(self, path: Path, device: str, threads: Optional[int]):
        import onnxruntime as ort

        if not path.is_file():
            raise CheckpointError(f"{path}: no such ONNX model file")
        try:
            self.session = ort_session(path, threads, device)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise CheckpointError(f"{path}: not a loadable ONNX model ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise CheckpointError(f"{path}: expected one (B, C, H, W) input, got "
                                  f"{[(i.name, i.shape) for i in inputs]}")
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        self.declared = f"; the file declares input '{inputs[0].name}' {inputs[0].type} {shape}"
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        self.props = props
        try:
            self.input_size = size_of_onnx(props, shape)
            self.in_channels = int(props.get("in_channels", shape[1]))
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: cannot tell the model's input size: {exc}") from None
        fixed = [v for v in shape[2:] if isinstance(v, int) and v > 0]
        if len(fixed) == 2 and tuple(fixed) != tuple(self.input_size):
            raise CheckpointError(f"{path}: the metadata says input {self.input_size} but the "
                                  f"graph's input is {fixed[0]}x{fixed[1]}")
        _check_factor(path, self.input_size, _onnx_factor(path, props))
        if self.in_channels not in (3, 6):
            raise CheckpointError(f"{path}: input has {self.in_channels} channels; expected 3 "
                                  "(spatial) or 6 (temporal / fused)")
        self.max_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        # A failing run raises with the reason, which the caller reports (the node: a
        # throttled warning); onnxruntime's own log line per failed run would be a second,
        # unthrottled copy of it on every frame.
        self._run_options = ort.RunOptions()
        self._run_options.log_severity_level = 4  # fatal only

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch}, self._run_options)[0]


class SaliencyEngine:
    """Frame -> saliency map with per-stream temporal state.  One thread at a time per call.

    Args:
        model_path: checkpoint (.pt) or exported ONNX (.onnx); None -> checkpoint.DEFAULT_MODEL.
            A missing or unreadable file raises checkpoint.CheckpointError.
        device: "auto" (CUDA when available, else CPU, said in one log line), "cpu", "cuda".
        backend: "torch", or "onnxruntime" (a .pt checkpoint is exported once to an ONNX file
            cached under onnx_cache_dir(), keyed by the checkpoint's content), or "auto":
            onnxruntime on a CPU (2-3x faster than torch for this network at batch 1) when it
            is installed, torch on CUDA (the default, as the node's); an .onnx model always
            runs on onnxruntime.
        max_gap_s: larger stamp gaps reset the stream's state; None or math.inf disables.
        threads: CPU threads for inference (torch: process-wide torch.set_num_threads).
        logger: anything with .info/.warning (rclpy or logging); default logging.
        fuse: torch backend only: run fuse_for_inference's equivalent, faster model.
    Invalid options raise ValueError.

    ``input_size`` (an ``InputSize``, from the checkpoint or the ONNX file) is what every
    frame is resized to and the size of the maps; ``model_info["input_size"]`` is its label
    ("64" for 64 x 64, "48x80" for H x W).
    """

    def __init__(self, model_path=None, device: str = "auto", backend: str = "auto",
                 max_gap_s: Optional[float] = 0.5, threads: Optional[int] = None, logger=None,
                 fuse: bool = True):
        self._log = logger if logger is not None else logging.getLogger(__name__)
        if backend not in BACKENDS:
            raise ValueError(f"backend '{backend}' is not one of {BACKENDS}")
        if device not in DEVICES:
            raise ValueError(f"device '{device}' is not one of {DEVICES}")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        self.max_gap_s = max_gap_s
        path = Path(model_path) if model_path else DEFAULT_MODEL
        if backend == "auto":
            backend = self._auto_backend(device, path)
        self.backend = backend
        self.device = self._resolve_device(device, backend)
        self.model_path = path
        self._tmpdir = None
        if backend == "torch":
            if path.suffix == ".onnx":
                raise CheckpointError(f"{path}: an ONNX model needs backend 'onnxruntime'")
            if threads is not None:
                torch.set_num_threads(threads)
            runner = _TorchRunner(path, self.device, fuse)
            payload = runner.payload
            info = {"kind": payload["kind"], "arch": payload["arch"].get("name", "custom"),
                    "input_size": runner.input_size.label,
                    "meta": payload.get("meta", {}),
                    "path": str(path)}
        else:
            onnx_path, runner = self._onnx_runner(path, threads)
            props = runner.props
            info = {"kind": props.get("kind", "temporal" if runner.in_channels == 6
                                      else "spatial"),
                    "arch": props.get("arch", "unknown"),
                    "input_size": runner.input_size.label,
                    "meta": props, "path": str(path), "onnx_path": str(onnx_path)}
        self._runner = runner
        self.input_size = runner.input_size
        self.in_channels = int(runner.in_channels)
        self.model_info = info
        self._streams: Dict[str, _StreamState] = {}
        self._squash_told: set = set()  # streams already told their frames are squashed
        self._pending: Dict[str, str] = {}
        self._buf = np.empty((0, self.in_channels, *self.input_size), np.float32)
        self._lock = threading.Lock()
        self._check_model()

    # ----------------------------------------------------------------- configuration
    @property
    def max_gap_s(self) -> float:
        """Largest stamp gap (s) that keeps the temporal state; math.inf = never reset."""
        return self._max_gap_s

    @max_gap_s.setter
    def max_gap_s(self, value: Optional[float]) -> None:
        value = math.inf if value is None else float(value)
        if not value > 0:
            raise ValueError(f"max_gap_s must be > 0 (or None to disable), got {value}")
        self._max_gap_s = value

    def _auto_backend(self, device: str, path: Path) -> str:
        """Backend "auto": onnxruntime for an .onnx model or on a CPU, else torch."""
        import importlib.util

        has_ort = importlib.util.find_spec("onnxruntime") is not None
        if path.suffix == ".onnx":
            chosen, why = "onnxruntime", "ONNX model"
        elif device == "cuda" or (device == "auto" and torch.cuda.is_available()):
            chosen, why = "torch", "CUDA device"
        elif has_ort:
            chosen, why = "onnxruntime", "CPU device"
        else:
            chosen, why = "torch", "CPU device, onnxruntime is not installed"
        self._log.info(f"backend auto -> {chosen} ({why})")
        return chosen

    def _resolve_device(self, device: str, backend: str) -> str:
        if backend == "torch":
            has_cuda, why = torch.cuda.is_available(), "torch.cuda.is_available() is False"
        else:
            import onnxruntime as ort

            has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
            why = "onnxruntime has no CUDAExecutionProvider"
        if device == "cuda" and not has_cuda:
            raise ValueError(f"device 'cuda' was requested but CUDA is not available "
                             f"({why}); use device 'auto' or 'cpu'")
        if device == "auto":
            device = "cuda" if has_cuda else "cpu"
            self._log.info(f"device auto -> {device}" + ("" if has_cuda else f" ({why})"))
        return device

    def _onnx_runner(self, path: Path, threads: Optional[int]) -> Tuple[Path, "_OnnxRunner"]:
        """(ONNX file, runner) for ``path``: the .onnx itself, or for a checkpoint its export.

        A checkpoint runs ``<name>.onnx`` beside it when that file's metadata says it was
        exported from exactly these bytes with this export recipe (the shipped default is),
        so the node's default path needs neither torch's exporter nor the ``onnx`` package;
        otherwise it is exported once into the cache.  Only a cache entry is ever replaced.
        """
        from skd_saliency_ros.core.onnx_runtime import EXPORT_VERSION, checkpoint_sha256

        if path.suffix == ".onnx":
            return path, _OnnxRunner(path, self.device, threads)
        if not path.is_file():
            raise CheckpointError(f"{path}: no such checkpoint file")
        sha = checkpoint_sha256(path)
        sibling = path.with_suffix(".onnx")
        if sibling.is_file():
            runner = self._exported_runner(sibling, sha, EXPORT_VERSION, threads)
            if runner is not None:
                return sibling, runner
        cached = self._cached_export(path, sha, EXPORT_VERSION)
        try:
            return cached, _OnnxRunner(cached, self.device, threads)
        except CheckpointError:
            # A damaged cache entry (e.g. a disk filled up mid-write): export it again.
            cached.unlink(missing_ok=True)
            cached = self._cached_export(path, sha, EXPORT_VERSION)
            return cached, _OnnxRunner(cached, self.device, threads)

    def _exported_runner(self, onnx_path: Path, sha: str, version: int,
                         threads: Optional[int]) -> Optional["_OnnxRunner"]:
        """Return a runner on ``onnx_path`` if it records checkpoint ``sha`` and ``version``."""
        try:
            runner = _OnnxRunner(onnx_path, self.device, threads)
        except CheckpointError as exc:  # an unusable file beside the checkpoint: export anew
            self._log.warning(f"ignoring {onnx_path}: {exc}")
            return None
        if runner.props.get("source_checkpoint_sha256") == sha and \
                runner.props.get("skd_export_version") == str(version):
            return runner
        self._log.info(f"not using {onnx_path}: it was not exported from this checkpoint "
                       f"with export version {version}")
        return None

    def _cached_export(self, checkpoint: Path, sha: str, version: int) -> Path:
        """Export ``checkpoint`` once to the ONNX cache (or a private temp dir); return it."""
        name = f"{checkpoint.stem}-{sha[:16]}-torch{torch.__version__.split('+')[0]}" \
               f"-e{version}.onnx"
        target = onnx_cache_dir() / name
        if target.is_file():
            return target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=target.parent)
            probe.close()
        except OSError:  # read-only home on the robot: keep it for this process only
            self._tmpdir = tempfile.TemporaryDirectory(prefix="skd_onnx_")
            target = Path(self._tmpdir.name) / name
        from skd_saliency_ros.core.onnx_export import export_checkpoint

        self._log.info(f"exporting {checkpoint.name} to ONNX at {target}")
        return export_checkpoint(checkpoint, target, overwrite=True)

    def _check_model(self) -> None:
        """Run one check frame pair on the serving backend; ModelError if it cannot serve.

        One inference at H x W (about a millisecond on a CPU): far cheaper than a node
        that starts, reports OK and then fails or publishes zeros on every frame.
        """
        grey = np.full((*self.input_size, 3), CHECK_GREY, np.uint8)
        batch = np.empty((1,) + self._buf.shape[1:], np.float32)
        fill_pair(batch[0], grey, grey)
        where = f"{self.backend} on {self.device}"
        try:
            raw = self.predict(batch)
        except ModelError as exc:
            raise ModelError(f"{exc} (check inference, {where})") from None
        except Exception as exc:  # any backend error: the model cannot run as the engine feeds it
            detail = (str(exc).strip().splitlines() or [""])[0]
            raise ModelError(f"{self.model_path}: the model cannot run on a "
                             f"(1, {self.in_channels}, {self.input_size.height}, "
                             f"{self.input_size.width}) "
                             f"float32 input ({where}): {type(exc).__name__}: "
                             f"{detail}{self._runner.declared}") from None
        bad = int(raw.size - np.count_nonzero(np.isfinite(raw)))
        if bad:
            raise ModelError(f"{self.model_path}: the model outputs NaN or inf ({bad} of "
                             f"{raw.size} values) on a mid-grey check frame ({where}); it "
                             "cannot give saliency maps")

    def _maps(self, raw, count: int) -> np.ndarray:
        """(count, H, W) raw maps from a runner's output; ModelError unless (count, 1, H, W)."""
        want = (count, 1, *self.input_size)
        shape = getattr(raw, "shape", None)
        if shape != want:
            raise ModelError(f"{self.model_path}: model output of shape {shape}; expected "
                             f"{want}, one {self.input_size.height} x {self.input_size.width} "
                             "(H x W) map per frame")
        if raw.dtype.kind != "f":
            raise ModelError(f"{self.model_path}: model output of type {raw.dtype}; expected "
                             "a float map")
        return raw[:, 0]

    # ----------------------------------------------------------------- state
    def reset(self, stream: Optional[str] = None, reason: Optional[str] = None) -> None:
        """Forget the previous frame of ``stream`` (all streams when None).

        The next StepResult of the stream reports ``reason`` (default "reset").
        """
        with self._lock:
            names = list(self._streams) if stream is None else [stream]
            for name in names:
                self._streams.pop(name, None)
                self._pending[name] = reason or "reset"

    def _advance(self, stream: str, small: np.ndarray, size: Tuple[int, int],
                 stamp: float) -> Tuple[np.ndarray, Optional[str]]:
        """Update ``stream`` with a new frame; return (frame to pair with, reset reason)."""
        state = self._streams.get(stream)
        reason = self._pending.pop(stream, None)
        if reason is None:
            if state is None:
                reason = "first frame"
            elif size != state.size:
                reason = (f"resolution changed {state.size[0]}x{state.size[1]} -> "
                          f"{size[0]}x{size[1]}")
            elif stamp < state.stamp:
                reason = f"stamp went backwards {state.stamp:.3f} s -> {stamp:.3f} s"
            elif stamp - state.stamp > self._max_gap_s:
                reason = (f"gap {stamp - state.stamp:.2f} s > max_gap_s "
                          f"{self._max_gap_s:.2f}")
        prev = small if reason is not None else state.prev
        self._streams[stream] = _StreamState(prev=small, size=size, stamp=stamp)
        return prev, reason

    def _tell_squash(self, stream: str, size: Tuple[int, int]) -> None:
        """Say once per stream (INFO) that its frames are squashed whole to the model's aspect.

        Only when the aspects differ by more than ASPECT_TOLERANCE: a 16:9 camera on a
        square model is expected, but the user should know the map comes from a frame
        stretched as in training, not from a crop of it.
        """
        if stream in self._squash_told:
            return
        width, height = size
        model = self.input_size
        if abs((width / height) / (model.width / model.height) - 1.0) <= ASPECT_TOLERANCE:
            return
        self._squash_told.add(stream)
        self._log.info(f"stream '{stream}': {width}x{height} (W x H) frames, aspect "
                       f"{width / height:.2f}, are squashed whole to the model's input "
                       f"{model.height} x {model.width} (H x W), aspect "
                       f"{model.width / model.height:.2f}, by area averaging, as the training "
                       "frames were: nothing is cropped")

    # ----------------------------------------------------------------- inference
    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Raw model output (B, H, W) for a float32 (B, C, H, W) input in [0, 1].

        A model whose output is not one float H x W map per frame raises ModelError.
        """
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != self._buf.shape[1:]:
            raise ValueError(f"predict expects (B, {self.in_channels}, {self.input_size.height}, "
                             f"{self.input_size.width}), got {batch.shape}")
        limit = self._runner.max_batch
        if limit is None or len(batch) <= limit:
            return self._maps(self._runner(batch), len(batch))
        return np.concatenate([self._maps(self._runner(batch[i:i + limit]),
                                          min(limit, len(batch) - i))
                               for i in range(0, len(batch), limit)])

    def step(self, frame_rgb: np.ndarray, stamp_s: float,
             stream: str = "default") -> StepResult:
        """Saliency of one (H, W, 3) uint8 RGB frame stamped ``stamp_s`` seconds."""
        return self.step_many([(stream, frame_rgb, stamp_s)])[0]

    def step_many(self, items: Sequence[Tuple[str, np.ndarray, float]]) -> List[StepResult]:
        """Saliency of several frames (any streams) in ONE batched inference.

        ``items`` are (stream, frame_rgb, stamp_s), processed in order: a stream that appears
        twice is paired with its own earlier frame.  Every frame is checked before any state
        changes, so a ValueError leaves all streams as they were.
        """
        items = list(items)
        if not items:
            return []
        sizes = []
        for stream, frame, stamp in items:
            sizes.append(_check_frame(frame))
            if not math.isfinite(float(stamp)):
                raise ValueError(f"stream '{stream}': stamp {stamp} is not a finite number")
        smalls = [resize_area(frame, self.input_size) for _, frame, _ in items]
        n = len(items)
        with self._lock:
            if self._buf.shape[0] < n:
                self._buf = np.empty((n,) + self._buf.shape[1:], np.float32)
            buf = self._buf[:n]
            reasons = []
            for i, ((stream, _, stamp), small, size) in enumerate(zip(items, smalls, sizes)):
                self._tell_squash(str(stream), size)
                prev, reason = self._advance(str(stream), small, size, float(stamp))
                reasons.append(reason)
                fill_pair(buf[i], small, prev)
            raw = self.predict(buf)
            finite = np.isfinite(raw).reshape(n, -1).all(axis=1)
            maps = normalise_maps(raw)
        return [StepResult(saliency=maps[i], reset_reason=reasons[i], stream=str(items[i][0]),
                           finite=bool(finite[i])) for i in range(n)]
