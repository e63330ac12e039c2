"""Node parameters: one table per node, declared with descriptors, validated in one place.

``ParamSpec`` and ``ParamTable`` are the one mechanism both nodes use (the saliency node's
table is here, ``attention_to_setpoint`` keeps its own in attention_node.py): a node declares
every entry with a ``ParameterDescriptor`` (description, range, read-only flag) and checks
values with its table's ``validate``, both at start-up and in its ``on_set_parameters``
callback, so that a value rejected at run time is also rejected in the params file.

For the saliency node the table is the single source of truth: ``config/saliency.yaml`` lists
exactly these names (a test checks both directions), and offline replay takes its defaults
and checks from it too.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

from skd_saliency_ros.core.errors import StartupError

# one list of choices for the engine and its parameters
from skd_saliency_ros.core.backends import BACKENDS, DEVICES

RELIABILITIES = ("best_effort", "reliable")
RATE_PARAMS = ("min_rate_hz", "max_rate_hz")
TRANSPORTS = ("raw", "compressed")


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter: default, description, optional range, choices, run-time changeable.

    ``check`` is the parameter's own rule beyond range and choices: it returns why a value is
    refused, as the rest of a sentence whose subject is the parameter's name ("must be > 0,
    got 0"), or None.  ``accept_integer`` lets a float parameter take an integer too (90 as
    well as 90.0, as YAML and ``-p`` write it): the descriptor allows it with dynamic typing,
    and ``problem`` then refuses anything that is not a number.
    """

    name: str
    default: Any
    description: str
    read_only: bool
    range: Optional[Tuple[float, float]] = None
    choices: Optional[Sequence[str]] = None
    check: Optional[Callable[[Any], Optional[str]]] = None
    accept_integer: bool = False

    def problem(self, value: Any) -> Optional[str]:
        """Return why ``value`` is not acceptable for this parameter, or None."""
        if self.accept_integer and (isinstance(value, bool)
                                    or not isinstance(value, (int, float))):
            return f"{self.name} must be a number, got {value!r}"
        if self.choices is not None and value not in self.choices:
            return f"{self.name} must be one of {', '.join(self.choices)}, got '{value}'"
        if self.range is not None and not isinstance(value, (str, list, tuple)):
            low, high = self.range
            if not low <= value <= high:
                return f"{self.name} must be in [{low}, {high}], got {value}"
        why = self.check(value) if self.check is not None else None
        return f"{self.name} {why}" if why else None

    def descriptor(self) -> ParameterDescriptor:
        """Build the ROS ParameterDescriptor; rclpy itself enforces the range."""
        desc = ParameterDescriptor(name=self.name, description=self.description,
                                   read_only=self.read_only,
                                   dynamic_typing=self.accept_integer)
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


@dataclass(frozen=True)
class ParamTable:
    """One node's parameters: their specs, and the rules that tie several values together.

    A node declares, reads and validates through its table, at start-up and in its
    set-parameters callback, so each rule is written once.  A joint check gets the values
    given (complete or partial; each one already passed its own spec) and returns why they
    cannot go together, or None; it passes when a value it needs is not among them.
    """

    specs: Tuple[ParamSpec, ...]
    joint_checks: Tuple[Callable[[Mapping[str, Any]], Optional[str]], ...] = ()

    @cached_property
    def by_name(self) -> Dict[str, ParamSpec]:
        """Map each name to its spec."""
        return {p.name: p for p in self.specs}

    @property
    def names(self) -> Tuple[str, ...]:
        """Every parameter name, in table order."""
        return tuple(p.name for p in self.specs)

    @property
    def runtime_names(self) -> Tuple[str, ...]:
        """The names that can change while the node runs."""
        return tuple(p.name for p in self.specs if not p.read_only)

    def defaults(self) -> Dict[str, Any]:
        """Return name -> default (copies: a caller may change a list in place)."""
        return {p.name: copy.deepcopy(p.default) for p in self.specs}

    def validate(self, values: Mapping[str, Any]) -> Optional[str]:
        """Check a complete or partial set of values; return the first reason or None."""
        for name, value in values.items():
            spec = self.by_name.get(name)
            if spec is None:
                return f"unknown parameter '{name}'"
            reason = spec.problem(value)
            if reason:
                return reason
        for check in self.joint_checks:
            reason = check(values)
            if reason:
                return reason
        return None

    def declare(self, node) -> None:
        """Declare every entry with its descriptor on an rclpy node; bad types stop the node."""
        from rclpy.exceptions import (InvalidParameterTypeException,
                                      InvalidParameterValueException)
        for spec in self.specs:
            try:
                node.declare_parameter(spec.name, spec.default, spec.descriptor())
            except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
                raise StartupError(f"invalid value for parameter '{spec.name}': "
                                   f"{str(exc).splitlines()[0]}") from None

    def read(self, node) -> Dict[str, Any]:
        """Return name -> current value of every entry, from a node that declared them."""
        return {name: node.get_parameter(name).value for name in self.names}

    def refuse_change(self, current: Mapping[str, Any],
                      changes: Mapping[str, Any]) -> Optional[str]:
        """Return why a run-time change is refused (read-only, or invalid with the rest).

        ``changes`` may hold rclpy's own parameters (use_sim_time): not the table's business.
        """
        mine = {name: value for name, value in changes.items() if name in self.by_name}
        fixed = sorted(name for name in mine if self.by_name[name].read_only)
        if fixed:
            return f"{', '.join(fixed)} is read-only (fixed at start-up); restart the node"
        return self.validate({**current, **mine})


# --------------------------------------------------------------------------- the node's rules
def _cameras_problem(cameras) -> Optional[str]:
    if not cameras or any(not str(v).strip() for v in cameras):
        return "must list at least one non-empty image topic"
    if len(set(cameras)) != len(cameras):
        return f"lists a topic twice: {list(cameras)}"
    return None


def _positive_problem(value) -> Optional[str]:
    return None if value > 0 else f"must be > 0, got {value}"


def _rates_problem(rates) -> Optional[str]:
    if not len(rates) or any(not (math.isfinite(v) and v >= 0.0) for v in rates):
        return f"must list finite rates >= 0 (Hz), got {list(rates)}"
    return None


def _rates_fit_cameras(values: Mapping[str, Any]) -> Optional[str]:
    cameras = values.get("cameras")
    for name in RATE_PARAMS:
        if name in values and cameras is not None and len(values[name]) not in (
                1, len(cameras)):
            return (f"{name} has {len(values[name])} entries: give one for all cameras or one "
                    f"per camera ({len(cameras)})")
    return None


def _rate_bounds_ordered(values: Mapping[str, Any]) -> Optional[str]:
    lows, highs = values.get("min_rate_hz"), values.get("max_rate_hz")
    if lows is not None and highs is not None:
        for k in range(max(len(lows), len(highs))):
            low, high = _for_camera(lows, k), _for_camera(highs, k)
            if high > 0.0 and low > high:
                return f"min_rate_hz {low} exceeds max_rate_hz {high} (camera {k})"
    return None


def _input_size_possible(values: Mapping[str, Any]) -> Optional[str]:
    low = values.get("min_input_size")
    high = values.get("max_input_pixels")
    if low is not None and high is not None and low * low > high:
        return (f"min_input_size^2 ({low * low}) exceeds max_input_pixels ({high}): "
                "no image could pass")
    return None


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
              "CameraInfo is read from the sibling topic camera_info.", True,
              check=_cameras_problem),
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
              "(header stamps, seconds).", False, range=(0.001, 3600.0),
              check=_positive_problem),
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
              False, range=(0.01, 1.0), check=_positive_problem),
    ParamSpec("overlay_alpha", 0.5,
              "Weight of the heat map in ~/overlay (0 = camera image only, 1 = heat map only).",
              False, range=(0.0, 1.0)),
    ParamSpec("min_rate_hz", [1.0],
              "Expected input rate per camera, lower bound (Hz): one value for every camera or "
              "one per entry of cameras. Diagnostics WARN below it (10 % tolerance, as "
              "diagnostic_updater's FrequencyStatus) and report ERROR when no frame arrives "
              "for a whole rate window; 0 = no lower bound.", False, check=_rates_problem),
    ParamSpec("max_rate_hz", [0.0],
              "Expected input rate per camera, upper bound (Hz), same layout as min_rate_hz; "
              "diagnostics WARN above it; 0 = no upper bound.", False, check=_rates_problem),
    ParamSpec("min_input_size", 8,
              "Images narrower or lower than this many pixels are rejected as invalid.",
              False, range=(1, 4096)),
    ParamSpec("max_input_pixels", 16777216,
              "Images with more pixels than this are rejected as invalid (guards memory and "
              "latency; default 4096 x 4096).", False, range=(1, 1 << 30)),
    ParamSpec("crop_enable", False,
              "true: publish the attention crop on ~/crop/image (the input pixels around the "
              "strongest peak, full resolution, the input's encoding; with transport "
              "compressed: rgb8 from the decoded frame) and ~/crop/camera_info (the input "
              "CameraInfo with roi and binning set as image_proc's crop_decimate does; K and P "
              "stay the full calibration's). Computed only while someone subscribes to one of "
              "them. docs/CROPS.md.", False),
    ParamSpec("crop_area_fraction", 0.25,
              "Share of the input frame's area the attention crop covers, in (0, 1], at the "
              "frame's aspect ratio (0.25 of 1280x720: 640x360), shifted into the frame at its "
              "borders.", False, range=(0.0, 1.0), check=_positive_problem),
)

#: the saliency node's table: its specs and the rules between them
NODE_PARAMS = ParamTable(PARAMS, joint_checks=(_rates_fit_cameras, _rate_bounds_ordered,
                                               _input_size_possible))
PARAM_NAMES: Tuple[str, ...] = NODE_PARAMS.names
RUNTIME_PARAMS: Tuple[str, ...] = NODE_PARAMS.runtime_names
SPECS: Dict[str, ParamSpec] = NODE_PARAMS.by_name


@dataclass(frozen=True)
class OutputSettings:
    """What shapes one frame's messages (``outputs.frame_messages``): map size, peak search.

    One object instead of four loose numbers, so that the node and offline replay cannot pass
    them in a different order.
    """

    output_scale: float
    top_k: int
    nms_radius: float
    min_score: float

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "OutputSettings":
        """Take the four from parameter values (a mapping holding at least these names)."""
        return cls(**{name: values[name] for name in OUTPUT_PARAMS})


#: the node parameters an OutputSettings holds
OUTPUT_PARAMS: Tuple[str, ...] = tuple(f.name for f in fields(OutputSettings))


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
    crop_enable: bool
    crop_area_fraction: float

    @property
    def output(self) -> OutputSettings:
        """The part of these settings that ``frame_messages`` needs."""
        return OutputSettings.from_values(vars(self))


def validate(values: Mapping[str, Any]) -> Optional[str]:
    """Check a complete or partial set of the node's values; return the first reason or None."""
    return NODE_PARAMS.validate(values)


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
