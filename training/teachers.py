"""Teachers: the heavy saliency models whose maps the tiny students learn to imitate.

Every teacher maps a full-resolution RGB frame (and, for temporal teachers, the previous frame)
to a float32 map of the same size in [0, 1] whose maximum is 1 unless the map is all zero.
``get_teacher(spec)`` builds one from its public name or from a YAML file that names any
TorchScript or ONNX model (the config keys are documented in docs/TEACHERS.md).
``Teacher.config`` identifies the exact computation; it goes into checkpoint metadata and
into the keys of the teacher-map cache, so changing a parameter never reuses stale maps.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import cv2
import numpy as np

DEFAULT_SPATIAL = "spectral-residual"
DEFAULT_TEMPORAL = "motion-homography"
KINDS = ("spatial", "temporal")


class TeacherError(RuntimeError):
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
    """Min-max scale to [0, 1] (a constant map becomes zero)."""
    out = np.nan_to_num(np.asarray(saliency, dtype=np.float32), nan=0.0, posinf=0.0,
                        neginf=0.0)
    low, high = float(out.min()), float(out.max())
    if high - low <= 0.0:
        return np.zeros_like(out)
    return (out - low) / (high - low)


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


def _file_sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class GenericTeacher(Teacher):
    """Any TorchScript (.pt/.pth/.ts/.jit) or ONNX (.onnx) saliency model named in a YAML file.

    The YAML says how frames become the model's input and which output is the map; see
    docs/TEACHERS.md for every key.  The model file's SHA-1 is part of ``config``, so a changed
    model never reuses cached maps.
    """

    TORCHSCRIPT_EXT = (".pt", ".pth", ".ts", ".jit")
    ONNX_EXT = (".onnx",)
    TOP_KEYS = {"name", "kind", "model", "input", "output", "device"}
    INPUT_DEFAULTS = {"frames": None, "stack": "channels", "size": None, "color": "rgb",
                      "range": 1.0, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
                      "layout": "nchw"}
    OUTPUT_DEFAULTS = {"index": 0, "channel": 0, "layout": "nchw", "activation": "none",
                       "normalize": "minmax"}

    def __init__(self, yaml_path: str | Path):
        self.yaml_path = Path(yaml_path)
        raw = self._read_yaml(self.yaml_path)
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
        model_path = Path(str(raw["model"]))
        if not model_path.is_absolute():
            model_path = (self.yaml_path.parent / model_path).resolve()
        self.model_path = model_path
        inp = self._section(raw, "input", self.INPUT_DEFAULTS)
        out = self._section(raw, "output", self.OUTPUT_DEFAULTS)
        if inp["frames"] is None:
            inp["frames"] = ["current"] if kind == "spatial" else ["current", "previous"]
        self._validate(inp, out, kind)
        self.device = str(raw.get("device", "cpu"))
        name = str(raw.get("name") or f"generic:{self.yaml_path.stem}")
        if not model_path.is_file():
            raise TeacherError(f"{model_path}: teacher model file not found "
                               f"(named by {where})")
        config = {"version": 1, "yaml": str(self.yaml_path.resolve()),
                  "model": str(model_path), "model_sha1": _file_sha1(model_path),
                  "input": inp, "output": out}
        super().__init__(name, kind, config)
        self.input_cfg, self.output_cfg = inp, out
        self._run = self._load_model(model_path)

    # ---- config -------------------------------------------------------------------------
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
            import onnxruntime as ort
            try:
                sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
                raise TeacherError(f"{path}: cannot load ONNX teacher model: "
                                   f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                                   ) from exc
            in_name = sess.get_inputs()[0].name
            self._onnx_outputs = [o.name for o in sess.get_outputs()]

            def run(x: np.ndarray):
                return sess.run(None, {in_name: x})
            return run
        raise TeacherError(f"{path}: unknown teacher model type {ext!r}; use one of "
                           f"{self.TORCHSCRIPT_EXT + self.ONNX_EXT}")

    def _prepare(self, frame_rgb: np.ndarray, prev_rgb: Optional[np.ndarray]) -> np.ndarray:
        cfg = self.input_cfg
        chans = []
        for which in cfg["frames"]:
            img = frame_rgb if which == "current" or prev_rgb is None else prev_rgb
            if cfg["size"] is not None:
                size = (int(cfg["size"][0]), int(cfg["size"][1]))
                interp = cv2.INTER_AREA if size[0] < img.shape[1] else cv2.INTER_LINEAR
                img = cv2.resize(img, size, interpolation=interp)
            if cfg["color"] == "bgr":
                img = img[:, :, ::-1]
            x = img.astype(np.float32) * (float(cfg["range"]) / 255.0)
            x = (x - np.asarray(cfg["mean"], np.float32)) / np.asarray(cfg["std"], np.float32)
            chans.append(x)
        if cfg["stack"] == "time":
            arr = np.stack(chans, 0).transpose(3, 0, 1, 2)[None]  # (1, 3, T, H, W)
        else:
            arr = np.concatenate(chans, axis=2)  # (H, W, 3F)
            arr = arr[None] if cfg["layout"] == "nhwc" else arr.transpose(2, 0, 1)[None]
        return np.ascontiguousarray(arr, dtype=np.float32)

    def _select(self, outputs) -> np.ndarray:
        cfg = self.output_cfg
        index = cfg["index"]
        if isinstance(index, str):
            names = getattr(self, "_onnx_outputs", None)
            if names is None or index not in names:
                raise TeacherError(f"{self.yaml_path}: output.index {index!r} is not an "
                                   f"output name of {self.model_path} (outputs: {names})")
            index = names.index(index)
        if not 0 <= int(index) < len(outputs):
            raise TeacherError(f"{self.yaml_path}: output.index {index} but "
                               f"{self.model_path} returned {len(outputs)} output(s)")
        out = np.asarray(outputs[int(index)], dtype=np.float32)
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
                               f"{tuple(np.shape(outputs[int(index)]))} (see output.* keys "
                               f"in {self.yaml_path})")
        if cfg["activation"] == "sigmoid":
            out = 1.0 / (1.0 + np.exp(-np.clip(out, -60, 60)))
        return out

    def _compute(self, frame_rgb, prev_rgb):
        x = self._prepare(frame_rgb, prev_rgb)
        try:
            outputs = self._run(x)
        except Exception as exc:
            raise TeacherError(f"{self.model_path}: teacher model failed on input "
                               f"{tuple(x.shape)}: {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0][:300]}") from exc
        sal = self._select(outputs)
        if self.output_cfg["normalize"] == "minmax":
            return normalise_minmax(sal)
        return sal


BUILTIN = {
    "spectral-residual": lambda: OpenCVStaticTeacher("spectral-residual"),
    "fine-grained": lambda: OpenCVStaticTeacher("fine-grained"),
    "motion-homography": lambda: MotionHomographyTeacher(),
}


def get_teacher(spec: str) -> Teacher:
    """Build a teacher from a built-in name or a path to a generic-teacher YAML file."""
    spec = str(spec).strip()
    if spec in BUILTIN:
        return BUILTIN[spec]()
    if spec.lower().endswith((".yaml", ".yml")):
        if not Path(spec).is_file():
            raise TeacherError(f"{spec}: teacher config file not found")
        return GenericTeacher(spec)
    raise TeacherError(f"unknown teacher {spec!r}: use one of {sorted(BUILTIN)} or a path to "
                       "a teacher .yaml file (docs/TEACHERS.md)")


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
