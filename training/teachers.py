"""Teachers: the heavy saliency models whose maps the tiny students learn to imitate.

Every teacher maps a full-resolution RGB frame (and, for temporal teachers, the previous frame)
to a float32 map of the same size in [0, 1] whose maximum is 1 unless the map is all zero.
``get_teacher(spec)`` builds one from its public name or from a YAML file that names any
TorchScript or ONNX model (the config keys are documented in docs/TEACHERS.md).
``Teacher.config`` identifies the exact computation; it goes into checkpoint metadata and
into the keys of the teacher-map cache, so changing a parameter never reuses stale maps.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.input_size import InputSizeError, parse_input_size
from skd_saliency_ros.core.maps import minmax

from .paths import expand_data_dir, file_sha1

DEFAULT_SPATIAL = "spectral-residual"
DEFAULT_TEMPORAL = "motion-homography"
KINDS = ("spatial", "temporal")


class TeacherError(SkdError, RuntimeError):
    """A teacher that cannot be built or run (unknown name, bad config, unreadable model)."""


def normalise_max(saliency: np.ndarray) -> np.ndarray:
    """Clip negatives and scale to max 1 (an all-zero map stays zero)."""
    out = np.nan_to_num(np.asarray(saliency, dtype=np.float32), nan=0.0, posinf=0.0,
                        neginf=0.0)
    np.maximum(out, 0.0, out=out)
    peak = float(out.max()) if out.size else 0.0
    if peak > 0.0:
        out /= peak
    return out


def normalise_minmax(saliency: np.ndarray) -> np.ndarray:
    """Min-max scale to [0, 1] with the runtime's rule (a flat map becomes zero)."""
    return minmax(np.nan_to_num(np.asarray(saliency, dtype=np.float32), nan=0.0, posinf=0.0,
                                neginf=0.0))


def _check_frame(frame: np.ndarray, what: str) -> None:
    """Reject anything that is not an (H, W, 3) uint8 image."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 \
            or frame.shape[2] != 3 or frame.shape[0] < 2 or frame.shape[1] < 2:
        shape = getattr(frame, "shape", None)
        dtype = getattr(frame, "dtype", type(frame).__name__)
        raise TeacherError(f"{what} must be an (H, W, 3) uint8 RGB image, got {dtype} {shape}")


class Teacher:
    """Base class: validates inputs and outputs around ``_compute``."""

    name: str = ""
    kind: str = "spatial"

    def __init__(self, name: str, kind: str, config: Dict[str, Any]):
        if kind not in KINDS:
            raise TeacherError(f"teacher {name!r}: kind must be one of {KINDS}, got {kind!r}")
        self.name = name
        self.kind = kind
        self.config = dict(config, name=name, kind=kind)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r})"

    def __call__(self, frame_rgb: np.ndarray, prev_rgb: Optional[np.ndarray] = None
                 ) -> np.ndarray:
        """Saliency of ``frame_rgb`` as float32 (H, W) in [0, 1] (max 1 unless all zero)."""
        _check_frame(frame_rgb, f"teacher {self.name}: frame")
        if prev_rgb is not None:
            _check_frame(prev_rgb, f"teacher {self.name}: previous frame")
            if prev_rgb.shape != frame_rgb.shape:
                raise TeacherError(f"teacher {self.name}: previous frame is "
                                   f"{prev_rgb.shape[1]}x{prev_rgb.shape[0]} but the frame is "
                                   f"{frame_rgb.shape[1]}x{frame_rgb.shape[0]}")
        out = self._compute(frame_rgb, prev_rgb)
        if out.shape != frame_rgb.shape[:2]:
            out = cv2.resize(out.astype(np.float32), (frame_rgb.shape[1], frame_rgb.shape[0]),
                             interpolation=cv2.INTER_LINEAR)
        return normalise_max(out)

    def _compute(self, frame_rgb: np.ndarray, prev_rgb: Optional[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    #: frames of context one map needs (1: the frame itself, and its predecessor if temporal)
    window: int = 1

    def labeller(self) -> "FrameLabeller":
        """Return a push-style labeller for one video (one decode feeds several teachers)."""
        return FrameLabeller(self)

    def label_frames(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Yield the maps of a whole video, in order: one per frame (oldest first)."""
        lab = self.labeller()
        for frame in frames:
            for _, sal in lab.push(frame):
                yield sal
        for _, sal in lab.finish():
            yield sal


class FrameLabeller:
    """Labels a video frame by frame with a one-frame teacher (temporal: with its predecessor).

    ``push(frame, keep=False)`` only remembers the frame as the next one's predecessor: a cache
    that is extended needs no map of the frames it already holds.
    """

    def __init__(self, teacher: Teacher):
        self.teacher = teacher
        self.prev: Optional[np.ndarray] = None
        self.count = 0

    def push(self, frame: np.ndarray, keep: bool = True) -> List[Tuple[int, np.ndarray]]:
        """Feed the next frame; returns the (index, map) pairs that are now complete."""
        index, self.count = self.count, self.count + 1
        out = []
        if keep:
            out.append((index, self.teacher(
                frame, self.prev if self.teacher.kind == "temporal" else None)))
        self.prev = frame
        return out

    def finish(self) -> List[Tuple[int, np.ndarray]]:
        """No frame waits for context: nothing left."""
        return []


class OpenCVStaticTeacher(Teacher):
    """OpenCV-contrib static saliency (spectral residual or fine-grained) on the full frame."""

    VARIANTS = {
        "spectral-residual": "StaticSaliencySpectralResidual_create",
        "fine-grained": "StaticSaliencyFineGrained_create",
    }

    def __init__(self, name: str):
        factory = getattr(getattr(cv2, "saliency", None), self.VARIANTS[name], None)
        if factory is None:
            raise TeacherError(f"teacher {name!r} needs cv2.saliency "
                               "(opencv-contrib-python-headless)")
        super().__init__(name, "spatial", {"version": 1, "impl": f"cv2.saliency."
                                           f"{self.VARIANTS[name]} {cv2.__version__}"})
        self._algo = factory()

    def _compute(self, frame_rgb, prev_rgb):
        ok, sal = self._algo.computeSaliency(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR))
        if not ok or sal is None:
            raise TeacherError(f"teacher {self.name}: OpenCV computeSaliency failed")
        return sal.astype(np.float32)


class MotionHomographyTeacher(Teacher):
    """Residual motion after removing the camera's ego-motion (a RANSAC homography).

    Why: on a drone the whole background moves whenever the camera pans, and the tracked
    target often stands still in the image; raw flow magnitude then lights up everything but
    the target.  The dominant (ground-plane) motion is modelled by a homography fitted with
    RANSAC to DIS optical flow sampled on a grid, and only what the homography does not
    explain is kept: residual magnitude minus a noise floor, borders masked (content entering
    the view has no valid flow), Gaussian-smoothed.
    The flow is computed between the previous and the current frame and sampled on the
    current frame's pixel grid (``calc(current, previous)``), so the map lines up with the
    frame it labels.  First frame of a video (no previous frame): an all-zero map, consistent
    with the student's input for that frame (the frame paired with itself: no motion).
    """

    DEFAULTS = {"work_width": 320, "preset": "medium", "grid_step": 8, "ransac_px": 1.0,
                "noise_floor_px": 0.5, "border_frac": 0.03, "blur_frac": 0.02}
    PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
               "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}

    def __init__(self, name: str = DEFAULT_TEMPORAL, **params: Any):
        unknown = set(params) - set(self.DEFAULTS)
        if unknown:
            raise TeacherError(f"teacher {name}: unknown parameter(s) {sorted(unknown)}")
        cfg = dict(self.DEFAULTS, **params)
        if cfg["preset"] not in self.PRESETS:
            raise TeacherError(f"teacher {name}: preset must be one of {sorted(self.PRESETS)}")
        super().__init__(name, "temporal", dict(cfg, version=1,
                                                impl=f"cv2.DISOpticalFlow {cv2.__version__}"))
        self.params = cfg
        self._dis = cv2.DISOpticalFlow_create(self.PRESETS[cfg["preset"]])
        self.last_homography: Optional[np.ndarray] = None
        self.last_inlier_ratio: float = float("nan")

    def _work_size(self, width: int, height: int):
        work_w = min(int(self.params["work_width"]), width)
        return work_w, max(8, int(round(height * work_w / width)))

    def _compute(self, frame_rgb, prev_rgb):
        height, width = frame_rgb.shape[:2]
        if prev_rgb is None:
            self.last_homography, self.last_inlier_ratio = None, float("nan")
            return np.zeros((height, width), np.float32)
        work = self._work_size(width, height)
        cur, prev = (cv2.cvtColor(cv2.resize(f, work, interpolation=cv2.INTER_AREA),
                                  cv2.COLOR_RGB2GRAY) for f in (frame_rgb, prev_rgb))
        flow = self._dis.calc(cur, prev, None)  # current pixel x -> x + flow[x] in previous
        residual = self._residual_flow(flow)
        mag = np.linalg.norm(residual, axis=2) - float(self.params["noise_floor_px"])
        np.maximum(mag, 0.0, out=mag)
        margin = int(round(self.params["border_frac"] * work[0]))
        if margin > 0:
            mag[:margin], mag[-margin:], mag[:, :margin], mag[:, -margin:] = 0, 0, 0, 0
        sigma = float(self.params["blur_frac"]) * work[0]
        if sigma > 0:
            mag = cv2.GaussianBlur(mag, (0, 0), sigma)
        return cv2.resize(mag.astype(np.float32), (width, height),
                          interpolation=cv2.INTER_LINEAR)

    def _residual_flow(self, flow: np.ndarray) -> np.ndarray:
        """Flow minus the flow predicted by the homography fitted to a grid of flow vectors."""
        h, w = flow.shape[:2]
        step = int(self.params["grid_step"])
        ys, xs = np.mgrid[step // 2:h:step, step // 2:w:step]
        src = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)
        dst = src + flow[ys.ravel(), xs.ravel()]
        hom, inliers = (None, None)
        if len(src) >= 8:
            hom, inliers = cv2.findHomography(src, dst, cv2.RANSAC,
                                              float(self.params["ransac_px"]))
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        if hom is None or not np.all(np.isfinite(hom)):
            # degenerate fit (e.g. textureless frame): fall back to the median translation
            self.last_homography, self.last_inlier_ratio = None, float("nan")
            return flow - np.median(flow.reshape(-1, 2), axis=0)
        self.last_homography = hom
        self.last_inlier_ratio = float(inliers.mean()) if inliers is not None else float("nan")
        pts = np.stack([gx, gy], 2).reshape(-1, 1, 2)
        mapped = cv2.perspectiveTransform(pts, hom).reshape(h, w, 2)
        expected = mapped - np.stack([gx, gy], 2)
        return flow - expected


class GenericTeacher(Teacher):
    """Any TorchScript (.pt/.pth/.ts/.jit) or ONNX (.onnx) saliency model named in a YAML file.

    The YAML says how frames become the model's input and which output is the map; see
    docs/TEACHERS.md for every key.  The model file's SHA-1 is part of ``config``, so a changed
    model never reuses cached maps.
    """

    TORCHSCRIPT_EXT = (".pt", ".pth", ".ts", ".jit")
    ONNX_EXT = (".onnx",)
    TOP_KEYS = {"name", "kind", "model", "input", "output", "device", "batch"}
    INPUT_DEFAULTS = {"frames": None, "stack": "channels", "size": None, "color": "rgb",
                      "range": 1.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
                      "layout": "nchw", "window": 1, "pad": "first", "shrink": None}
    OUTPUT_DEFAULTS = {"index": 0, "channel": 0, "layout": "nchw", "activation": "none",
                       "normalize": "minmax", "per_frame": False}

    def __init__(self, yaml_path: str | Path, overrides: Optional[Dict[str, Any]] = None):
        """Build the teacher ``yaml_path`` describes; ``overrides`` replace some of its keys.

        ``overrides`` maps top-level keys to values; a mapping for ``input`` or ``output``
        is merged into that section key by key (how ``tinyhd-m@64`` adds ``input.shrink``
        and a name to the shipped YAML without a second file).
        """
        self.yaml_path = Path(yaml_path)
        raw = self._read_yaml(self.yaml_path)
        for key, value in (overrides or {}).items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key] = {**raw[key], **value}
            else:
                raw[key] = value
        where = str(self.yaml_path)
        unknown = set(raw) - self.TOP_KEYS
        if unknown:
            raise TeacherError(f"{where}: unknown key(s) {sorted(unknown)}; "
                               f"allowed: {sorted(self.TOP_KEYS)}")
        for key in ("kind", "model"):
            if key not in raw:
                raise TeacherError(f"{where}: missing required key {key!r}")
        kind = raw["kind"]
        if kind not in KINDS:
            raise TeacherError(f"{where}: 'kind' must be one of {KINDS}, got {kind!r}")
        # ``{data_dir}`` lets a shipped YAML find a model that is not in the repository
        model_path = Path(expand_data_dir(raw["model"]))
        if not model_path.is_absolute():
            model_path = (self.yaml_path.parent / model_path).resolve()
        self.model_path = model_path
        inp = self._section(raw, "input", self.INPUT_DEFAULTS)
        out = self._section(raw, "output", self.OUTPUT_DEFAULTS)
        if inp["frames"] is None:
            inp["frames"] = ["current"] if kind == "spatial" else ["current", "previous"]
        self._validate(inp, out, kind)
        self.window = int(inp["window"])
        self.batch = raw.get("batch", 1)
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or self.batch < 1:
            raise TeacherError(f"{where}: 'batch' (windows per model call) must be an "
                               f"integer >= 1, got {self.batch!r}")
        self.device = str(raw.get("device", "cpu"))
        name = self.yaml_name(raw, self.yaml_path)
        if not model_path.is_file():
            raise TeacherError(f"{model_path}: teacher model file not found "
                               f"(named by {where})")
        # The config identifies the computation, never where files happen to lie: the same
        # model and settings reached through another path or data directory reuse the cache.
        # input.shrink enters the config only when set: every teacher without it keeps the
        # cache key it had before the key existed.
        config = {"version": 2, "model_file": model_path.name,
                  "model_sha1": file_sha1(model_path), "output": out,
                  "input": inp if inp["shrink"] is not None else
                  {k: v for k, v in inp.items() if k != "shrink"}}
        super().__init__(name, kind, config)
        self.input_cfg, self.output_cfg = inp, out
        self._shrink = None
        if inp["shrink"] is not None:
            # the function that makes the student's frames_area2_r<R>.npy cache, so the
            # shrunk teacher sees the very pixels the student sees
            from skd_saliency_ros.core.maps import resize_area
            self._shrink = resize_area
        self._input_shape: Optional[list] = None
        self._run = self._load_model(model_path)
        self._check_input_shape()

    # ---- config -------------------------------------------------------------------------
    @staticmethod
    def yaml_name(raw: Dict[str, Any], yaml_path: Path) -> str:
        """Return the teacher's name: the YAML's ``name``, else ``generic:<file stem>``."""
        return str(raw.get("name") or f"generic:{Path(yaml_path).stem}")

    @staticmethod
    def _read_yaml(path: Path) -> Dict[str, Any]:
        import yaml
        try:
            text = path.read_text()
        except OSError as exc:
            raise TeacherError(f"{path}: cannot read teacher config: {exc}") from exc
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise TeacherError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise TeacherError(f"{path}: a teacher config must be a YAML mapping")
        return raw

    def _section(self, raw: Dict[str, Any], key: str, defaults: Dict[str, Any]):
        sec = raw.get(key) or {}
        if not isinstance(sec, dict):
            raise TeacherError(f"{self.yaml_path}: {key!r} must be a mapping")
        unknown = set(sec) - set(defaults)
        if unknown:
            raise TeacherError(f"{self.yaml_path}: unknown key(s) {sorted(unknown)} in "
                               f"{key!r}; allowed: {sorted(defaults)}")
        return dict(defaults, **sec)

    def _validate(self, inp: Dict[str, Any], out: Dict[str, Any], kind: str) -> None:
        where = self.yaml_path

        def bad(msg: str):
            raise TeacherError(f"{where}: {msg}")

        frames = inp["frames"]
        if not isinstance(frames, list) or not frames or \
                any(f not in ("current", "previous") for f in frames):
            bad("input.frames must be a list of 'current'/'previous', e.g. [current, previous]")
        if kind == "spatial" and "previous" in frames:
            bad("a spatial teacher cannot take the previous frame (use kind: temporal)")
        if inp["stack"] not in ("channels", "time"):
            bad("input.stack must be 'channels' or 'time'")
        if inp["size"] is not None and (not isinstance(inp["size"], list)
                                        or len(inp["size"]) != 2
                                        or any(int(v) < 1 for v in inp["size"])):
            bad("input.size must be [width, height] or null")
        shrink = inp["shrink"]
        if shrink is not None:
            if not isinstance(shrink, list) or len(shrink) != 2 or \
                    any(isinstance(v, bool) or not isinstance(v, int) or v < 4 for v in shrink):
                bad(f"input.shrink must be [width, height] in pixels (>= 4) or null, got "
                    f"{shrink!r}")
        if inp["color"] not in ("rgb", "bgr"):
            bad("input.color must be 'rgb' or 'bgr'")
        for key in ("mean", "std"):
            if not isinstance(inp[key], list) or len(inp[key]) != 3:
                bad(f"input.{key} must be a list of 3 numbers")
        if any(float(s) == 0.0 for s in inp["std"]):
            bad("input.std must not contain 0")
        if float(inp["range"]) <= 0:
            bad("input.range must be > 0 (1.0: pixels scaled to [0,1]; 255: raw values)")
        if inp["layout"] not in ("nchw", "nhwc") or out["layout"] not in ("nchw", "nhwc"):
            bad("input.layout and output.layout must be 'nchw' or 'nhwc'")
        if inp["layout"] == "nhwc" and inp["stack"] == "time":
            bad("input.stack 'time' needs input.layout 'nchw' (N, C, T, H, W)")
        if out["activation"] not in ("none", "sigmoid"):
            bad("output.activation must be 'none' or 'sigmoid'")
        if out["normalize"] not in ("minmax", "max"):
            bad("output.normalize must be 'minmax' or 'max'")
        window = inp["window"]
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            bad(f"input.window must be an integer >= 1 (frames per clip), got {window!r}")
        if window > 1:
            if inp["stack"] != "time":
                bad("input.window > 1 needs input.stack: time (a clip (1, 3, T, H, W))")
            if inp["frames"] != (["current"] if kind == "spatial" else ["current", "previous"]):
                bad("input.frames does not apply to a clip teacher (input.window > 1): the "
                    "clip is the window of the most recent frames, oldest first")
        if inp["pad"] != "first":
            bad("input.pad must be 'first' (the first frame repeated before the video "
                "starts, the TinyHD authors' rule)")
        if not isinstance(out["per_frame"], bool):
            bad("output.per_frame must be true or false")
        if out["per_frame"] and window < 2:
            bad("output.per_frame: true needs input.window > 1 (one map per clip frame)")

    # ---- model --------------------------------------------------------------------------
    def _load_model(self, path: Path) -> Callable[[np.ndarray], Any]:
        ext = path.suffix.lower()
        if ext in self.TORCHSCRIPT_EXT:
            import torch
            try:
                with warnings.catch_warnings():  # TorchScript is deprecated, still the format
                    warnings.simplefilter("ignore", DeprecationWarning)
                    module = torch.jit.load(str(path), map_location=self.device)
            except Exception as exc:  # torch raises RuntimeError/ValueError/zip errors
                raise TeacherError(f"{path}: cannot load TorchScript teacher model: "
                                   f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                                   ) from exc
            module.eval()

            def run(x: np.ndarray):
                with torch.inference_mode():
                    res = module(torch.from_numpy(x).to(self.device))
                if isinstance(res, dict):
                    res = list(res.values())
                if isinstance(res, (list, tuple)):
                    return [r.detach().cpu().numpy() for r in res]
                return [res.detach().cpu().numpy()]
            return run
        if ext in self.ONNX_EXT:
            from skd_saliency_ros.core.onnx_runtime import ort_session
            try:
                sess = ort_session(path, threads=0)  # all cores: teaching is offline work
            except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
                raise TeacherError(f"{path}: cannot load ONNX teacher model: "
                                   f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                                   ) from exc
            in_name = sess.get_inputs()[0].name
            self._input_shape = list(sess.get_inputs()[0].shape)
            self._onnx_outputs = [o.name for o in sess.get_outputs()]

            def run(x: np.ndarray):
                return sess.run(None, {in_name: x})
            return run
        raise TeacherError(f"{path}: unknown teacher model type {ext!r}; use one of "
                           f"{self.TORCHSCRIPT_EXT + self.ONNX_EXT}")

    def _check_input_shape(self) -> None:
        """Refuse a model whose declared input cannot take what this YAML will feed it."""
        shape = self._input_shape
        if shape is None:  # TorchScript declares no input shape: checked on the first call
            return
        cfg = self.input_cfg
        rank = 5 if cfg["stack"] == "time" else 4
        if len(shape) != rank:
            raise TeacherError(
                f"{self.model_path}: the model's input has rank {len(shape)} {shape}, but "
                f"{self.yaml_path} feeds rank {rank} ("
                + ("(N, 3, T, H, W) clips, input.stack: time" if rank == 5 else
                   "(N, C, H, W) frames, input.stack: channels") + ")")
        if rank == 5:
            t_dim = shape[2]
            if isinstance(t_dim, int) and t_dim != self.window:
                raise TeacherError(f"{self.model_path}: the model takes clips of {t_dim} "
                                   f"frames, but {self.yaml_path} sets input.window "
                                   f"{self.window}")
            n_dim = shape[0]
            if isinstance(n_dim, int) and n_dim != 1 and self.batch != n_dim:
                raise TeacherError(f"{self.model_path}: fixed batch {n_dim}; set batch: "
                                   f"{n_dim} or 1 in {self.yaml_path}")

    def _prepare_frame(self, img: np.ndarray) -> np.ndarray:
        """One RGB uint8 frame -> float32 (H, W, 3) resized, colour-ordered, normalised.

        With ``input.shrink: [R, R]`` the frame is first shrunk to R x R exactly as the
        student's frame cache is made, then resized to ``input.size`` as usual.
        """
        cfg = self.input_cfg
        if self._shrink is not None:
            img = self._shrink(img, (int(cfg["shrink"][1]), int(cfg["shrink"][0])))
        if cfg["size"] is not None:
            size = (int(cfg["size"][0]), int(cfg["size"][1]))
            interp = cv2.INTER_AREA if size[0] < img.shape[1] else cv2.INTER_LINEAR
            img = cv2.resize(img, size, interpolation=interp)
        if cfg["color"] == "bgr":
            img = img[:, :, ::-1]
        x = img.astype(np.float32) * (float(cfg["range"]) / 255.0)
        return (x - np.asarray(cfg["mean"], np.float32)) / np.asarray(cfg["std"], np.float32)

    def _prepare(self, frame_rgb: np.ndarray, prev_rgb: Optional[np.ndarray]) -> np.ndarray:
        cfg = self.input_cfg
        chans = []
        for which in cfg["frames"]:
            img = frame_rgb if which == "current" or prev_rgb is None else prev_rgb
            chans.append(self._prepare_frame(img))
        if cfg["stack"] == "time":
            arr = np.stack(chans, 0).transpose(3, 0, 1, 2)[None]  # (1, 3, T, H, W)
        else:
            arr = np.concatenate(chans, axis=2)  # (H, W, 3F)
            arr = arr[None] if cfg["layout"] == "nhwc" else arr.transpose(2, 0, 1)[None]
        return np.ascontiguousarray(arr, dtype=np.float32)

    def _output(self, outputs) -> np.ndarray:
        """Return the output named by ``output.index`` (a position or an ONNX output name)."""
        index = self.output_cfg["index"]
        if isinstance(index, str):
            names = getattr(self, "_onnx_outputs", None)
            if names is None or index not in names:
                raise TeacherError(f"{self.yaml_path}: output.index {index!r} is not an "
                                   f"output name of {self.model_path} (outputs: {names})")
            index = names.index(index)
        if not 0 <= int(index) < len(outputs):
            raise TeacherError(f"{self.yaml_path}: output.index {index} but "
                               f"{self.model_path} returned {len(outputs)} output(s)")
        return np.asarray(outputs[int(index)], dtype=np.float32)

    def _activate(self, out: np.ndarray) -> np.ndarray:
        """Apply ``output.activation`` (a sigmoid for models that end in logits)."""
        if self.output_cfg["activation"] == "sigmoid":
            return 1.0 / (1.0 + np.exp(-np.clip(out, -60, 60)))
        return out

    def _select(self, outputs) -> np.ndarray:
        cfg = self.output_cfg
        out = self._output(outputs)
        raw_shape = tuple(out.shape)
        if out.ndim == 5 and out.shape[0] == 1:  # (1, C, T, H, W): last time step
            out = out[:, :, -1]
        if out.ndim == 4 and out.shape[0] == 1:
            chan_axis = 1 if cfg["layout"] == "nchw" else 3
            ch = int(cfg["channel"])
            if not 0 <= ch < out.shape[chan_axis]:
                raise TeacherError(f"{self.yaml_path}: output.channel {ch} but output of "
                                   f"{self.model_path} has shape {out.shape}")
            out = out[0, ch] if chan_axis == 1 else out[0, :, :, ch]
        elif out.ndim == 3 and out.shape[0] == 1:
            out = out[0]
        if out.ndim != 2:
            raise TeacherError(f"{self.model_path}: cannot read a 2-D map from output shape "
                               f"{raw_shape} (see output.* keys "
                               f"in {self.yaml_path})")
        return self._activate(out)

    def _call_model(self, x: np.ndarray):
        try:
            return self._run(x)
        except Exception as exc:
            raise TeacherError(f"{self.model_path}: teacher model failed on input "
                               f"{tuple(x.shape)}: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:300]}") from exc

    def _normalise(self, sal: np.ndarray) -> np.ndarray:
        if self.output_cfg["normalize"] == "minmax":
            return normalise_minmax(sal)
        return sal

    def _compute(self, frame_rgb, prev_rgb):
        if self.window > 1:
            raise TeacherError(f"teacher {self.name} ({self.yaml_path}) labels clips of "
                               f"{self.window} frames: use label_frames() on the whole video")
        return self._normalise(self._select(self._call_model(self._prepare(frame_rgb,
                                                                           prev_rgb))))

    def labeller(self) -> "FrameLabeller":
        """Frame by frame for a one-frame model; a ``ClipLabeller`` for a clip model."""
        return ClipLabeller(self) if self.window > 1 else FrameLabeller(self)

    def clip_maps(self, clips: np.ndarray) -> np.ndarray:
        """Run the model on prepared clips (B, 3, T, H, W): (B, T, h, w) or (B, 1, h, w) maps.

        With ``output.per_frame`` the model returns one map per clip frame, else one for the
        last frame.  Raw model values (after ``output.activation``), not normalised yet.
        """
        outputs = self._call_model(np.ascontiguousarray(clips, dtype=np.float32))
        out = self._output(outputs)
        batch, window = clips.shape[0], clips.shape[2]
        ch = int(self.output_cfg["channel"])
        if self.output_cfg["per_frame"]:
            if out.ndim == 5 and out.shape[0] == batch and out.shape[2] == window:
                out = out[:, ch]                        # (B, C, T, h, w)
            elif out.ndim == 4 and out.shape[:2] == (batch, window):
                pass                                    # (B, T, h, w)
            else:
                raise TeacherError(f"{self.model_path}: output.per_frame expects one map per "
                                   f"clip frame, (B, C, {window}, h, w), but the model "
                                   f"returned {tuple(out.shape)}")
        else:
            if out.ndim == 5 and out.shape[0] == batch:  # (B, C, T, h, w): last time step
                out = out[:, ch, -1:]
            elif out.ndim == 4 and out.shape[0] == batch:  # (B, C, h, w)
                out = out[:, ch:ch + 1]
            elif out.ndim == 3 and out.shape[0] == batch:  # (B, h, w)
                out = out[:, None]
            else:
                raise TeacherError(f"{self.model_path}: cannot read one map per clip from "
                                   f"output shape {tuple(out.shape)} (batch {batch})")
        return self._activate(out)


class ClipLabeller:
    """Labels a video with a clip model: windows of the ``window`` most recent frames.

    Two kinds of clip model, both run as the TinyHD authors run them:

    * last-frame (``output.per_frame: false``, e.g. TinyHD-S): frame t is labelled from the
      clip t-window+1 .. t; while the video has fewer than ``window`` frames the first frame
      is repeated in front (``input.pad: first``).  One window per frame.
    * per-frame (``output.per_frame: true``, e.g. TinyHD-M): consecutive, non-overlapping
      clips s .. s+window-1 are labelled at once (the model sees the clip's later frames,
      fine offline); the video's last, shorter remainder is labelled from the clip that ends
      on its last frame.  ``window`` times fewer calls.

    ``batch`` windows go into one model call.  Frames are resized and normalised once, when
    pushed.  A video shorter than the window is refused in ``finish()``: TinyHD-M would see
    mostly padding.
    """

    def __init__(self, teacher: GenericTeacher):
        self.teacher = teacher
        self.window = teacher.window
        self.per_frame = bool(teacher.output_cfg["per_frame"])
        self.recent: List[np.ndarray] = []   # the last `window` prepared (3, H, W) frames
        self.first: Optional[np.ndarray] = None
        self.frame_size: Tuple[int, int] = (0, 0)
        self.count = 0          # frames pushed
        self.queued = 0         # frames whose window is queued or labelled
        self.pending: List[Tuple[int, np.ndarray]] = []  # (index of the first map, clip)

    def push(self, frame: np.ndarray, keep: bool = True) -> List[Tuple[int, np.ndarray]]:
        """Feed the next frame; returns the (index, map) pairs that are now complete.

        ``keep`` is ignored: a clip model needs every frame as context anyway.
        """
        _check_frame(frame, f"teacher {self.teacher.name}: frame")
        size = (frame.shape[1], frame.shape[0])
        prepared = self.teacher._prepare_frame(frame).transpose(2, 0, 1)
        if self.first is None:
            self.first, self.frame_size = prepared, size
        elif size != self.frame_size:
            raise TeacherError(f"teacher {self.teacher.name}: frame {self.count} is "
                               f"{size[0]}x{size[1]}, the video's first frame is "
                               f"{self.frame_size[0]}x{self.frame_size[1]}")
        self.recent = (self.recent + [prepared])[-self.window:]
        self.count += 1
        if self.per_frame:
            if self.count - self.queued == self.window:
                self.pending.append((self.queued, np.stack(self.recent, 1)))
                self.queued = self.count
        else:
            clip = [self.first] * (self.window - len(self.recent)) + self.recent
            self.pending.append((self.queued, np.stack(clip, 1)))
            self.queued = self.count
        return self._run() if len(self.pending) >= self.teacher.batch else []

    def finish(self) -> List[Tuple[int, np.ndarray]]:
        """Label what is left; refuses a video shorter than the window."""
        if 0 < self.count < self.window:
            raise TeacherError(f"teacher {self.teacher.name}: the video has {self.count} "
                               f"frame(s), fewer than the teacher's window of {self.window} "
                               f"frames ({self.teacher.yaml_path})")
        skip = 0
        if self.per_frame and self.queued < self.count:
            # the remainder: the clip that ends on the last frame; keep only its new maps
            skip = self.window - (self.count - self.queued)
            self.pending.append((self.count - self.window, np.stack(self.recent, 1)))
            self.queued = self.count
        return self._run(skip_last=skip) if self.pending else []

    def _run(self, skip_last: int = 0) -> List[Tuple[int, np.ndarray]]:
        """Run the model once on every pending window; return the new (index, map) pairs.

        ``skip_last``: maps of the last clip that were already returned (the final,
        overlapping clip of a per-frame model).
        """
        starts = [s for s, _ in self.pending]
        maps = self.teacher.clip_maps(np.stack([c for _, c in self.pending]))
        self.pending = []
        out = []
        for n, (start, clip_maps) in enumerate(zip(starts, maps)):
            first = skip_last if n == len(starts) - 1 else 0
            for j in range(first, len(clip_maps)):
                sal = cv2.resize(self.teacher._normalise(clip_maps[j]), self.frame_size,
                                 interpolation=cv2.INTER_LINEAR)
                out.append((start + j, normalise_max(sal)))
        return out


BUILTIN = {
    "spectral-residual": lambda: OpenCVStaticTeacher("spectral-residual"),
    "fine-grained": lambda: OpenCVStaticTeacher("fine-grained"),
    "motion-homography": lambda: MotionHomographyTeacher(),
}


# Deep teachers shipped as YAML files beside the node's config; the ONNX files live in the
# data bundle (the YAMLs say ``{data_dir}``).
SHIPPED_YAML_DIR = Path(__file__).resolve().parents[1] / "config" / "teachers"
SHIPPED_YAML = {"tinyhd-m": "tinyhd_m.yaml", "tinyhd-s": "tinyhd_s.yaml"}


def _yaml_of(spec: str) -> Optional[Path]:
    """Return the YAML file of a shipped deep-teacher name or a ``.yaml`` path (else None)."""
    if spec in SHIPPED_YAML:
        return SHIPPED_YAML_DIR / SHIPPED_YAML[spec]
    if spec.lower().endswith((".yaml", ".yml")):
        if not Path(spec).is_file():
            raise TeacherError(f"{spec}: teacher config file not found")
        return Path(spec)
    return None


def shrunk_teacher(base: str, size) -> GenericTeacher:
    """``<base>@R`` / ``<base>@HxW``: the generic teacher ``base`` fed the student's frames.

    The ceiling of distillation at that input size: what the teacher itself makes of the
    pixels the student gets (``input.shrink: [W, H]``, made by the function that makes the
    student's frame cache).  Named ``<base's name>@<size label>``; its config, and so its
    cache key, differs from the plain teacher's.
    """
    try:
        size = parse_input_size(size, f"{base}@{size}")
    except InputSizeError as exc:
        raise TeacherError(f"{exc} (the size after '@' is a student's input size, e.g. "
                           "tinyhd-m@64 or tinyhd-m@48x80)") from None
    path = _yaml_of(base)
    if path is None:
        raise TeacherError(f"{base}@{size}: '@R' (the teacher fed frames shrunk to the "
                           f"student's input size) needs a deep teacher, one of "
                           f"{sorted(SHIPPED_YAML)} or a teacher .yaml file")
    name = GenericTeacher.yaml_name(GenericTeacher._read_yaml(path), path)
    return GenericTeacher(path, overrides={"name": f"{name}@{size.label}",
                                           "input": {"shrink": [size.width, size.height]}})


def get_teacher(spec: str) -> Teacher:
    """Build a teacher from a built-in name, a generic-teacher YAML file, or ``<either>@R``.

    ``tinyhd-m@64`` (any R multiple of 4) is the shipped TinyHD-M fed frames shrunk to
    64 x 64 first, ``tinyhd-m@48x80`` to 48 (high) x 80 (:func:`shrunk_teacher`).
    """
    spec = str(spec).strip()
    if spec in BUILTIN:
        return BUILTIN[spec]()
    base, at, res = spec.rpartition("@")
    if at and not spec.lower().endswith((".yaml", ".yml")):  # a YAML path may hold an '@'
        return shrunk_teacher(base.strip(), res)
    path = _yaml_of(spec)
    if path is not None:
        return GenericTeacher(path)
    raise TeacherError(f"unknown teacher {spec!r}: use one of "
                       f"{sorted(BUILTIN) + sorted(SHIPPED_YAML)}, a path to "
                       "a teacher .yaml file (docs/TEACHERS.md), or a deep teacher (shipped "
                       "or .yaml) followed by @R or @HxW (frames shrunk to the student's input "
                       "first, e.g. tinyhd-m@64, tinyhd-m@48x80)")


def get_teachers(specs: str) -> list:
    """Comma-separated list of teacher specs -> teachers (names must be unique)."""
    teachers = [get_teacher(s) for s in str(specs).split(",") if s.strip()]
    if not teachers:
        raise TeacherError("no teacher given")
    names = [t.name for t in teachers]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise TeacherError(f"teacher name(s) given twice: {dup}")
    return teachers
