"""Parameters of the saliency node: one table, declared with descriptors, validated in one place.

The table is the single source of truth: the node declares every entry with a
``ParameterDescriptor`` (description, range, read-only flag), ``config/saliency.yaml`` lists
exactly these names (a test checks both directions), and ``validate`` is the one function that
checks values, both at start-up and in the node's ``on_set_parameters`` callback, so that a value
rejected at run time is also rejected in the params file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

# one list of choices for the engine and its parameters
from skd_saliency_ros.core.engine import BACKENDS, DEVICES

RELIABILITIES = ("best_effort", "reliable")
RATE_PARAMS = ("min_rate_hz", "max_rate_hz")
TRANSPORTS = ("raw", "compressed")


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: default, description, optional range, choices, run-time changeable."""

    name: str
    default: Any
    description: str
    read_only: bool
    range: Optional[Tuple[float, float]] = None
    choices: Optional[Sequence[str]] = None

    def descriptor(self) -> ParameterDescriptor:
        """Build the ROS ParameterDescriptor; rclpy itself enforces the range."""
        desc = ParameterDescriptor(name=self.name, description=self.description,
                                   read_only=self.read_only)
        if self.choices:
            desc.additional_constraints = "one of: " + ", ".join(self.choices)
        if self.range is not None:
            low, high = self.range
            if isinstance(self.default, int):
                desc.integer_range = [IntegerRange(from_value=int(low), to_value=int(high),
                                                   step=1)]
            else:
                desc.floating_point_range = [FloatingPointRange(from_value=float(low),
                                                                to_value=float(high), step=0.0)]
        return desc


PARAMS: Tuple[ParamSpec, ...] = (
    # --- fixed at start-up -------------------------------------------------------------------
    ParamSpec("autostart", True,
              "true: configure and activate at start, as a plain node (ros2 run); false: "
              "wait in the lifecycle state 'unconfigured' for a lifecycle manager (or "
              "~/enable) to configure and activate it.", True),
    ParamSpec("model_path", "",
              "Checkpoint (.pt) or ONNX file of the fused saliency model; empty = the trained "
              "default model shipped in the package (weights/skd_default_r64.pt).", True),
    ParamSpec("device", "auto",
              "Inference device: auto (CUDA when available, else CPU, logged once), cpu, cuda.",
              True, choices=DEVICES),
    ParamSpec("backend", "auto",
              "Inference backend: auto (onnxruntime on a CPU, torch on CUDA), torch "
              "(checkpoint) or onnxruntime (ONNX file, or a checkpoint exported once to a "
              "cached ONNX file).",
              True, choices=BACKENDS),
    ParamSpec("threads", 1,
              "CPU threads for inference; 1 = one core (the paper's setting: the network is "
              "small, and a companion computer's other cores belong to the rest of the stack); "
              "0 = the library default (all cores).", True, range=(0, 64)),
    ParamSpec("cameras", ["image"],
              "Image topics to serve, one temporal state each. One entry: outputs under ~/. "
              "Several: outputs under ~/<topic namespace>/ (front/image_raw -> ~/front/). "
              "CameraInfo is read from the sibling topic camera_info.", True),
    ParamSpec("transport", "raw",
              "raw: sensor_msgs/Image on each camera topic; compressed: "
              "sensor_msgs/CompressedImage (jpeg or png) on <topic>/compressed, as "
              "image_transport's compressed plugin publishes it (a camera driver in MJPEG "
              "mode, a bag recorded over a radio link).", True, choices=TRANSPORTS),
    ParamSpec("qos_reliability", "best_effort",
              "Reliability of the image and camera_info subscriptions (best_effort = "
              "sensor-data style; reliable to match reliable-only publishers).",
              True, choices=RELIABILITIES),
    ParamSpec("qos_depth", 5,
              "History depth of the subscriptions and publishers (the node itself only ever "
              "processes the newest frame per camera).", True, range=(1, 100)),
    ParamSpec("diagnostics_period_s", 1.0,
              "Period of the diagnostic_msgs/DiagnosticArray on /diagnostics.",
              True, range=(0.1, 60.0)),
    # --- changeable at run time ---------------------------------------------------------------
    ParamSpec("max_gap_s", 0.5,
              "Temporal state reset when two frames of a camera are further apart than this "
              "(header stamps, seconds).", False, range=(0.001, 3600.0)),
    ParamSpec("top_k", 5,
              "Maximum number of saliency peaks per frame on ~/peaks and ~/bearings (0 = none).",
              False, range=(0, 50)),
    ParamSpec("nms_radius", 0.1,
              "Minimum distance between two peaks, as a fraction of the input image diagonal "
              "(0 = no suppression).", False, range=(0.0, 1.0)),
    ParamSpec("min_score", 0.3,
              "Peaks below this saliency value (map in [0, 1]) are not reported.",
              False, range=(0.0, 1.0)),
    ParamSpec("output_scale", 0.25,
              "Size of ~/saliency relative to the input image (1.0 = same size as the input). "
              "The map holds R x R (64 x 64) values; 0.25 keeps the camera's aspect ratio at "
              "several times that detail while a 1280x720 map costs 0.23 MB instead of 3.7 MB "
              "per frame to publish. Peaks and bearings are always in input-image pixels.",
              False, range=(0.01, 1.0)),
    ParamSpec("overlay_alpha", 0.5,
              "Weight of the heat map in ~/overlay (0 = camera image only, 1 = heat map only).",
              False, range=(0.0, 1.0)),
    ParamSpec("min_rate_hz", [1.0],
              "Expected input rate per camera, lower bound (Hz): one value for every camera or "
              "one per entry of cameras. Diagnostics WARN below it (10 % tolerance, as "
              "diagnostic_updater's FrequencyStatus) and report ERROR when no frame arrives "
              "for a whole rate window; 0 = no lower bound.", False),
    ParamSpec("max_rate_hz", [0.0],
              "Expected input rate per camera, upper bound (Hz), same layout as min_rate_hz; "
              "diagnostics WARN above it; 0 = no upper bound.", False),
    ParamSpec("min_input_size", 8,
              "Images narrower or lower than this many pixels are rejected as invalid.",
              False, range=(1, 4096)),
    ParamSpec("max_input_pixels", 16777216,
              "Images with more pixels than this are rejected as invalid (guards memory and "
              "latency; default 4096 x 4096).", False, range=(1, 1 << 30)),
)

PARAM_NAMES: Tuple[str, ...] = tuple(p.name for p in PARAMS)
RUNTIME_PARAMS: Tuple[str, ...] = tuple(p.name for p in PARAMS if not p.read_only)
SPECS: Dict[str, ParamSpec] = {p.name: p for p in PARAMS}


@dataclass(frozen=True)
class Settings:
    """The run-time changeable values, swapped as one immutable object (thread-safe reads)."""

    max_gap_s: float
    top_k: int
    nms_radius: float
    min_score: float
    output_scale: float
    overlay_alpha: float
    min_rate_hz: Tuple[float, ...]
    max_rate_hz: Tuple[float, ...]
    min_input_size: int
    max_input_pixels: int


def _check_one(name: str, value: Any) -> Optional[str]:
    """Return why ``value`` is not acceptable for parameter ``name``, or None."""
    spec = SPECS.get(name)
    if spec is None:
        return f"unknown parameter '{name}'"
    if spec.choices is not None and value not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}, got '{value}'"
    if name == "cameras":
        if not value or any(not str(v).strip() for v in value):
            return "cameras must list at least one non-empty image topic"
        if len(set(value)) != len(value):
            return f"cameras lists a topic twice: {list(value)}"
    if spec.range is not None and not isinstance(value, (str, list, tuple)):
        low, high = spec.range
        if not low <= value <= high:
            return f"{name} must be in [{low}, {high}], got {value}"
    if name in ("max_gap_s", "output_scale") and not value > 0:
        return f"{name} must be > 0, got {value}"
    if name in RATE_PARAMS:
        if not len(value) or any(not (math.isfinite(v) and v >= 0.0) for v in value):
            return f"{name} must list finite rates >= 0 (Hz), got {list(value)}"
    return None


def validate(values: Mapping[str, Any]) -> Optional[str]:
    """Check a complete or partial set of parameter values; return the first reason or None."""
    for name, value in values.items():
        reason = _check_one(name, value)
        if reason:
            return reason
    for name in RATE_PARAMS:
        cameras = values.get("cameras")
        if name in values and cameras is not None and len(values[name]) not in (
                1, len(cameras)):
            return (f"{name} has {len(values[name])} entries: give one for all cameras or one "
                    f"per camera ({len(cameras)})")
    lows, highs = values.get("min_rate_hz"), values.get("max_rate_hz")
    if lows is not None and highs is not None:
        for k in range(max(len(lows), len(highs))):
            low, high = _for_camera(lows, k), _for_camera(highs, k)
            if high > 0.0 and low > high:
                return f"min_rate_hz {low} exceeds max_rate_hz {high} (camera {k})"
    low = values.get("min_input_size")
    high = values.get("max_input_pixels")
    if low is not None and high is not None and low * low > high:
        return (f"min_input_size^2 ({low * low}) exceeds max_input_pixels ({high}): "
                "no image could pass")
    return None


def settings_from(values: Mapping[str, Any]) -> Settings:
    """Build the run-time settings from a mapping holding (at least) every run-time name."""
    return Settings(**{name: tuple(values[name]) if name in RATE_PARAMS else values[name]
                       for name in RUNTIME_PARAMS})


def rate_bounds(settings: Settings, index: int) -> Tuple[float, float]:
    """(min, max) expected input rate of camera ``index`` (one entry applies to all)."""
    return _for_camera(settings.min_rate_hz, index), _for_camera(settings.max_rate_hz, index)


def _for_camera(values: Sequence[float], index: int) -> float:
    """Entry ``index`` of a per-camera list; a one-entry list applies to every camera."""
    return values[min(index, len(values) - 1)]


def camera_label(topic: str) -> str:
    """Name of a camera's output namespace: the namespace of its image topic, else the topic."""
    parts = [p for p in topic.strip().lstrip("~").split("/") if p]
    if not parts:
        raise ValueError(f"'{topic}' is not an image topic name")
    return "/".join(parts[:-1]) if len(parts) > 1 else parts[0]


def camera_info_topic(topic: str) -> str:
    """Return the CameraInfo topic of an image topic: its sibling named camera_info.

    Apply it to the *resolved* image topic (after remapping), as image_transport does, so
    that remapping only the image still finds the camera's info.
    """
    head, _, _ = topic.rpartition("/")
    return f"{head}/camera_info" if head else "camera_info"


def camera_layout(cameras: List[str]) -> List[Tuple[str, str, str, str]]:
    """(label, image topic, camera_info topic, output prefix) per camera; labels must differ."""
    layout = []
    for topic in cameras:
        label = camera_label(topic)
        prefix = "~/" if len(cameras) == 1 else f"~/{label}/"
        layout.append((label, topic, camera_info_topic(topic), prefix))
    labels = [entry[0] for entry in layout]
    dupes = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dupes:
        raise ValueError(f"cameras {cameras} give the same output namespace '{dupes[0]}' twice; "
                         "use topics in different namespaces (e.g. front/image_raw, "
                         "down/image_raw)")
    return layout
