"""SaliencyNode: live saliency maps, peaks and bearing rays for one or more camera topics.

Threading: subscription callbacks only keep the newest frame per camera (a frame replaced
before it was processed is counted as dropped) and wake a dedicated inference thread.  That
thread takes whatever is pending, decodes it, runs ONE batched ``engine.step_many`` for all
cameras and publishes.  The executor therefore never waits on inference: parameter
services, CameraInfo and diagnostics stay responsive, and a node that falls behind drops old
frames instead of queueing latency.

Invalid frames (undecodable, too small or too large, rejected by the engine) are counted,
reported with a throttled warning and in diagnostics, and produce no output; the node keeps
serving.  A model that cannot be loaded, or fails the engine's load check, stops the node at
start-up with one error line and exit code 1.  Frames on which the model fails, or whose
map is not finite (NaN or inf: the engine's zeros are no answer), get no output either; they
are counted (``failed``, ``non_finite``) and turn /diagnostics to ERROR when no frame of a
period got a map.

Lifecycle (a managed node, REP 2002 style, like yolo_ros): *configure* reads and checks the
parameters, loads the engine and creates the publishers and diagnostics; *activate* resets the
temporal state and creates the subscriptions and the inference thread; *deactivate* removes
the subscriptions and stops the thread (the engine and publishers stay, so activating again
is instant); *cleanup* drops the engine and publishers.  ``autostart: true`` (the default)
configures and activates at start, so ``ros2 run`` behaves as a plain node; ``~/enable``
(std_srvs/SetBool) pauses and resumes through the same transitions.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseArray, Vector3Stamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_srvs.srv import SetBool

from skd_saliency_ros.core.engine import upsample
from skd_saliency_ros.core.stamps import stamp_seconds
from skd_saliency_ros.core.errors import StartupError
from skd_saliency_ros.ros import params as P
from skd_saliency_ros.ros.image_io import (ImageEncodingError, check_compressed, check_image,
                                           check_size, compressed_to_rgb8, image_to_rgb8,
                                           numpy_to_image)
from skd_saliency_ros.ros.outputs import (CameraStats, diagnostic_status, frame_messages,
                                          overlay_bgr)
from skd_saliency_ros.ros.entry import run_node
from skd_saliency_ros.ros.throttle import WarnThrottle

NODE_NAME = "saliency_node"


@dataclass
class _Camera:
    """Per-camera topics, publishers, latest pending frame and calibration."""

    label: str
    image_topic: str
    info_topic: str
    prefix: str
    pub_saliency: object = None
    pub_peaks: object = None
    pub_bearings: object = None
    pub_target: object = None
    pub_overlay: object = None
    pub_info: object = None
    subscriptions: Tuple = ()
    pending: Optional[Tuple[Image, float]] = None
    info: Optional[CameraInfo] = None
    last_encoding: Optional[str] = None
    stats: CameraStats = None
    health: "_ModelHealth" = None


@dataclass
class _ModelHealth:
    """Frames of one camera that reached the model and got no map: totals and last period.

    ``failed``: inference raised; ``non_finite``: the raw map held NaN or inf.  Kept apart
    from CameraStats (input-side counters) because these say the model, not the camera, is
    the problem.
    """

    failed: int = 0
    non_finite: int = 0
    last_failure_reason: str = ""
    window_failed: int = 0
    window_non_finite: int = 0

    def take_window(self) -> Tuple[int, int]:
        """Return and clear (failed, non_finite) of the last period."""
        window = (self.window_failed, self.window_non_finite)
        self.window_failed = self.window_non_finite = 0
        return window


def _add_model_health(status: DiagnosticStatus, health: _ModelHealth,
                      window: Tuple[int, int], published: int) -> None:
    """Add the model counters to a camera's status; WARN or ERROR for maps the model lost.

    ERROR when frames failed or were not finite in the last period and none got a map (the
    node is running but answers nothing), WARN when only some did.
    """
    status.values.extend([KeyValue(key="failed", value=str(health.failed)),
                          KeyValue(key="non_finite", value=str(health.non_finite)),
                          KeyValue(key="last_failure_reason", value=health.last_failure_reason)])
    failed, non_finite = window
    if not (failed or non_finite):
        return
    parts = []
    if failed:
        parts.append(f"{failed} frames failed in the model ({health.last_failure_reason})")
    if non_finite:
        parts.append(f"{non_finite} maps not finite (NaN or inf in the model's output)")
    text = "; ".join(parts)
    if published == 0:
        status.level = DiagnosticStatus.ERROR
        text = "no map in the last period: " + text
    else:
        status.level = max(status.level, DiagnosticStatus.WARN)
    status.message = text if status.message == "ok" else f"{text}; {status.message}"


@dataclass
class _Work:
    """One decoded frame on its way through inference."""

    cam: _Camera
    msg: Image
    received: float
    rgb: np.ndarray
    stamp_s: float


class SaliencyNode(LifecycleNode):
    """Lifecycle node around a SaliencyEngine; ``start()`` configures and activates it."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self._cameras: List[_Camera] = []
        self._engine = None
        self._settings: Optional[P.Settings] = None
        self._cond = threading.Condition()
        self._stop = False
        self._active = False
        self._worker: Optional[threading.Thread] = None
        self._throttle = WarnThrottle(self.get_logger())
        self._diag_pub = None
        self._diag_timer = None
        self._period = 1.0
        self._failure = ""  # why the last transition failed (for start() and ~/enable)
        self._activations = 0
        self._quiet = False
        self._values_at_configure: Dict[str, object] = {}
        self._declare_parameters()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        self.create_service(SetBool, "~/enable", self._on_enable)

    @property
    def lifecycle_state(self) -> str:
        """Label of the current lifecycle state (unconfigured, inactive, active, ...)."""
        return self._state_machine.current_state[1]

    # ----------------------------------------------------------------------- start-up
    def start(self) -> None:
        """Configure and activate (what ``autostart`` does); StartupError says why not."""
        self._quiet = True  # the caller reports the failure (one line, exit code 1)
        try:
            for trigger, wanted in ((self.trigger_configure, "inactive"),
                                    (self.trigger_activate, "active")):
                trigger()
                if self.lifecycle_state != wanted:
                    raise StartupError(self._failure or
                                       f"lifecycle transition to {wanted} failed")
        finally:
            self._quiet = False

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Check the parameters, load the engine, create publishers and diagnostics."""
        return self._transition("configure", self._configure)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Reset the temporal state, subscribe, start inference."""
        result = self._transition("activate", self._activate)
        return super().on_activate(state) if result == TransitionCallbackReturn.SUCCESS \
            else result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe and stop inference; engine, publishers and counters stay."""
        result = self._transition("deactivate", self._deactivate)
        return super().on_deactivate(state) if result == TransitionCallbackReturn.SUCCESS \
            else result

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Drop the engine, publishers and diagnostics (back to unconfigured)."""
        return self._transition("cleanup", self._release)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything, whatever the state."""
        return self._transition("shutdown", self._release)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Recover to unconfigured: release everything a failed transition left."""
        return self._transition("error recovery", self._release)

    def _transition(self, name: str, work) -> TransitionCallbackReturn:
        """Run one transition; a user error is one log line and FAILURE, never a traceback."""
        try:
            work()
        except StartupError as exc:
            self._failure = str(exc)
            if not self._quiet:
                self.get_logger().error(f"{name} failed: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        except Exception as exc:  # keep the node alive and say what happened
            self._failure = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"{name} failed: {self._failure}")
            self._release()
            return TransitionCallbackReturn.ERROR
        self._failure = ""
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        values = {name: self.get_parameter(name).value for name in P.PARAM_NAMES}
        reason = P.validate(values)
        if reason:
            raise StartupError(f"invalid parameter: {reason}")
        self._settings = P.settings_from(values)
        self._values_at_configure = values  # the start-up ones, for activate's subscriptions
        self._period = float(values["diagnostics_period_s"])
        try:
            layout = P.camera_layout(list(values["cameras"]))
        except ValueError as exc:
            raise StartupError(f"invalid parameter: {exc}") from None
        self._engine = self._load_engine(values)
        self._activations = 0
        self._create_publishers(layout, values)
        self._diag_timer = self.create_timer(self._period, self._publish_diagnostics)
        info = self._engine.model_info
        self.get_logger().info(
            f"configured for {len(self._cameras)} camera(s) "
            f"[{', '.join(c.image_topic for c in self._cameras)}] with a "
            f"{info.get('kind', '?')} model at R={self._engine.resolution} on "
            f"{self._engine.device} ({self._engine.backend})")

    def _activate(self) -> None:
        for cam in self._cameras:
            if self._activations:  # the first activation starts from nothing anyway
                self._engine.reset(cam.label, reason="first frame after re-activation")
            cam.last_encoding = None
            cam.pending = None
            cam.stats.restart_rate_window()
            cam.health.take_window()
            self._subscribe(cam)
        self._stop = False
        self._worker = threading.Thread(target=self._run_worker, name="saliency_inference",
                                        daemon=True)
        self._worker.start()
        self._active = True
        self._activations += 1
        routes = [f"{c.subscriptions[0].topic_name} -> {c.prefix}saliency "
                  f"(info {c.subscriptions[1].topic_name})" for c in self._cameras]
        self.get_logger().info("active, serving " + ", ".join(routes))

    def _deactivate(self) -> None:
        self._active = False
        self._unsubscribe()
        self.close()  # no publish happens after this returns
        with self._cond:
            for cam in self._cameras:
                cam.pending = None
        self.get_logger().info("inactive: unsubscribed, inference stopped")

    def _release(self) -> None:
        """Undo configure and activate as far as they got (idempotent)."""
        self._active = False
        self._unsubscribe()
        self.close()
        for cam in self._cameras:
            for pub in (cam.pub_saliency, cam.pub_peaks, cam.pub_bearings, cam.pub_target,
                        cam.pub_overlay, cam.pub_info):
                if pub is not None:
                    self.destroy_publisher(pub)
        self._cameras = []
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        self._engine = None

    def _on_enable(self, request, response):
        """~/enable: true activates (configuring first if needed), false deactivates."""
        steps = {True: {"unconfigured": (self.trigger_configure, self.trigger_activate),
                        "inactive": (self.trigger_activate,)},
                 False: {"active": (self.trigger_deactivate,)}}[bool(request.data)]
        for trigger in steps.get(self.lifecycle_state, ()):
            trigger()
        wanted = "active" if request.data else "inactive"
        state = self.lifecycle_state
        response.success = state == wanted or (not request.data and state == "unconfigured")
        response.message = state if response.success else \
            f"{state}: {self._failure or 'transition refused'}"
        return response

    def _declare_parameters(self) -> None:
        """Declare the table's parameters (values are read at configure); bad types stop us."""
        from rclpy.exceptions import (InvalidParameterTypeException,
                                      InvalidParameterValueException)
        for spec in P.PARAMS:
            try:
                self.declare_parameter(spec.name, spec.default, spec.descriptor())
            except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
                raise StartupError(f"invalid value for parameter '{spec.name}': "
                                   f"{str(exc).splitlines()[0]}") from None

    def _resolved_topics(self, cam: _Camera, transport: str) -> Tuple[str, str]:
        """(image topic to subscribe, camera_info topic), after remapping.

        image_transport's rules: ``/compressed`` is appended to the resolved image topic, and
        the camera_info is its resolved sibling, so remapping only the image still finds the
        info.  An explicit remap of the info name (the launch file's camera_info_topic) wins.
        """
        image = self.resolve_topic_name(cam.image_topic)
        info = self.resolve_topic_name(cam.info_topic)
        if info == self.resolve_topic_name(cam.info_topic, only_expand=True):
            info = P.camera_info_topic(image)  # not remapped itself: follow the image
        return (image + "/compressed" if transport == "compressed" else image), info

    def _subscribe(self, cam: _Camera) -> None:
        values = self._values_at_configure
        reliability = (ReliabilityPolicy.RELIABLE if values["qos_reliability"] == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        qos_in = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(values["qos_depth"]),
                            reliability=reliability, durability=DurabilityPolicy.VOLATILE)
        image_topic, info_topic = self._resolved_topics(cam, values["transport"])
        kind = CompressedImage if values["transport"] == "compressed" else Image
        cam.subscriptions = (
            self.create_subscription(kind, image_topic,
                                     lambda msg, c=cam: self._on_image(c, msg), qos_in),
            self.create_subscription(CameraInfo, info_topic,
                                     lambda msg, c=cam: self._on_camera_info(c, msg), qos_in))

    def _unsubscribe(self) -> None:
        for cam in self._cameras:
            for sub in cam.subscriptions:
                self.destroy_subscription(sub)
            cam.subscriptions = ()

    def _load_engine(self, values):
        from skd_saliency_ros.core.engine import SaliencyEngine
        model = values["model_path"] or None
        threads = int(values["threads"]) or None
        try:
            return SaliencyEngine(model_path=model, device=values["device"],
                                  backend=values["backend"], max_gap_s=values["max_gap_s"],
                                  threads=threads, logger=self.get_logger())
        except Exception as exc:  # any load failure is one clear line, never a traceback
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise StartupError(f"cannot start the saliency engine with model "
                               f"{model or 'default'}: {type(exc).__name__}: "
                               f"{detail}") from None

    def _create_publishers(self, layout, values) -> None:
        qos_out = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(values["qos_depth"]),
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE)
        for label, image_topic, info_topic, prefix in layout:
            cam = _Camera(label=label, image_topic=image_topic, info_topic=info_topic,
                          prefix=prefix, stats=CameraStats(), health=_ModelHealth())
            cam.pub_saliency = self.create_publisher(Image, prefix + "saliency", qos_out)
            cam.pub_info = self.create_publisher(CameraInfo, prefix + "camera_info", qos_out)
            cam.pub_peaks = self.create_publisher(PoseArray, prefix + "peaks", qos_out)
            cam.pub_bearings = self.create_publisher(PoseArray, prefix + "bearings", qos_out)
            cam.pub_target = self.create_publisher(Vector3Stamped, prefix + "target", qos_out)
            cam.pub_overlay = self.create_publisher(Image, prefix + "overlay", qos_out)
            self._cameras.append(cam)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)

    # ----------------------------------------------------------------------- parameters
    def _on_set_parameters(self, parameters) -> SetParametersResult:
        current = {name: self.get_parameter(name).value for name in P.PARAM_NAMES}
        parameters = [p for p in parameters if p.name in P.SPECS]  # not rclpy's own ones
        for param in parameters:
            if P.SPECS[param.name].read_only:
                return SetParametersResult(
                    successful=False,
                    reason=f"{param.name} is read-only (fixed at start-up); restart the node")
            current[param.name] = param.value
        reason = P.validate({p.name: current[p.name] for p in parameters}
                            | {k: current[k] for k in ("min_input_size", "max_input_pixels",
                                                       "cameras", "min_rate_hz",
                                                       "max_rate_hz")})
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)

    def _after_set_parameters(self, parameters) -> None:
        if self._engine is None:  # unconfigured: configure reads the parameters
            return
        values = {name: self.get_parameter(name).value for name in P.RUNTIME_PARAMS}
        self._settings = P.settings_from(values)
        self._engine.max_gap_s = float(values["max_gap_s"])
        changed = ", ".join(f"{p.name}={p.value}" for p in parameters if p.name in P.SPECS)
        if changed:
            self.get_logger().info(f"parameters changed: {changed}")

    # ----------------------------------------------------------------------- callbacks
    def _on_image(self, cam: _Camera, msg: Image) -> None:
        if not self._active:  # a callback already queued when deactivation began
            return
        now = time.monotonic()
        # Invalid frames are refused here, before queueing, so they are counted as invalid
        # (never as drops) and never displace a valid pending frame.
        if not self._accept(cam, msg):
            with self._cond:
                cam.stats.frames_in += 1
                cam.stats.window_in += 1
            return
        with self._cond:
            stats = cam.stats
            if cam.pending is not None:
                stats.dropped += 1
                stats.window_dropped += 1
            cam.pending = (msg, now)
            stats.frames_in += 1
            stats.window_in += 1
            self._cond.notify()

    def _on_camera_info(self, cam: _Camera, msg: CameraInfo) -> None:
        cam.info = msg

    def _warn(self, cam: _Camera, kind: str, text: str, level: str = "warning") -> None:
        """Log at most one message per camera and kind every throttle period."""
        self._throttle(f"[{cam.image_topic}] {text}", key=(cam.label, kind), level=level)

    def _invalid(self, cam: _Camera, kind: str, reason: str) -> None:
        with self._cond:
            cam.stats.invalid += 1
            cam.stats.window_invalid += 1
            cam.stats.last_invalid_reason = reason
        self._warn(cam, kind, f"frame dropped: {reason}")

    # ----------------------------------------------------------------------- inference
    def _run_worker(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not any(c.pending for c in self._cameras):
                    self._cond.wait(0.5)
                if self._stop:
                    return
                batch = [(c, c.pending) for c in self._cameras if c.pending is not None]
                for cam, _ in batch:
                    cam.pending = None
            try:
                self._process(batch)
            except Exception as exc:  # keep serving whatever happens to one batch
                if not self.context.ok():  # shutting down: publishers are gone
                    return
                self._failed([cam for cam, _ in batch], exc)

    def _failed(self, cams: List[_Camera], exc: Exception) -> None:
        """Count one failed frame per camera (no output for it); warn, throttled."""
        reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
        with self._cond:
            for cam in cams:
                cam.health.failed += 1
                cam.health.window_failed += 1
                cam.health.last_failure_reason = reason
        for cam in cams:
            self._warn(cam, "internal", f"processing failed, no output for the frame: {reason} "
                                        f"({cam.health.failed} so far; see /diagnostics)")

    def _non_finite(self, cam: _Camera) -> None:
        """Count a frame whose map is NaN or inf (published as nothing); warn, throttled."""
        with self._cond:
            cam.health.non_finite += 1
            cam.health.window_non_finite += 1
        self._warn(cam, "non_finite", "no output for the frame: the model's map is not finite "
                                      f"(NaN or inf; {cam.health.non_finite} frames so far, "
                                      "see /diagnostics)")

    def _accept(self, cam: _Camera, msg) -> bool:
        """Cheap checks of size, encoding and data length (no pixel is touched).

        A CompressedImage is checked by the size its header declares, so an image that
        would be too large decoded is refused before decoding (and never queued).
        """
        limits = (self._settings.min_input_size, self._settings.max_input_pixels)
        try:
            if isinstance(msg, CompressedImage):
                check_compressed(msg, *limits)
            else:
                check_size(int(msg.width), int(msg.height), *limits)
                check_image(msg)
        except ImageEncodingError as exc:
            self._invalid(cam, exc.kind, str(exc))
            return False
        return True

    def _decode(self, cam: _Camera, msg, received: float) -> Optional[_Work]:
        compressed = isinstance(msg, CompressedImage)
        limits = (self._settings.min_input_size, self._settings.max_input_pixels)
        try:
            rgb = compressed_to_rgb8(msg, *limits) if compressed else image_to_rgb8(msg)
        except ImageEncodingError as exc:
            self._invalid(cam, exc.kind, str(exc))
            return None
        encoding = msg.format if compressed else msg.encoding
        if cam.last_encoding is not None and encoding != cam.last_encoding:
            self._engine.reset(cam.label, reason=f"encoding changed {cam.last_encoding} -> "
                                                 f"{encoding}")
        cam.last_encoding = encoding
        return _Work(cam=cam, msg=msg, received=received, rgb=rgb,
                     stamp_s=stamp_seconds(msg.header))

    def _infer(self, work: List[_Work]) -> List[Optional[object]]:
        """Run one batched step; if the batch is refused, isolate the offending frames."""
        try:
            return self._engine.step_many([(w.cam.label, w.rgb, w.stamp_s) for w in work])
        except ValueError as exc:
            if len(work) == 1:
                self._invalid(work[0].cam, "engine", str(exc))
                return [None]
        results = []
        for w in work:
            try:
                results.append(self._engine.step(w.rgb, w.stamp_s, stream=w.cam.label))
            except ValueError as exc:
                self._invalid(w.cam, "engine", str(exc))
                results.append(None)
        return results

    def _process(self, batch) -> None:
        work = [w for w in (self._decode(cam, msg, t) for cam, (msg, t) in batch) if w]
        if not work:
            return
        try:
            results = self._infer(work)
        except Exception as exc:  # the model failed on the batch: no output for its frames
            self._failed([w.cam for w in work], exc)
            return
        for w, result in zip(work, results):
            if result is None:
                continue
            if result.finite:
                self._publish(w, result)
            else:  # all zeros by the flat-map rule: no answer, never published as one
                self._non_finite(w.cam)

    def _publish(self, w: _Work, result) -> None:
        cam, msg, settings = w.cam, w.msg, self._settings
        height, width = w.rgb.shape[:2]
        out = frame_messages(result.saliency, (width, height), msg.header, cam.info,
                             settings.output_scale, settings.top_k, settings.nms_radius,
                             settings.min_score)
        cam.pub_saliency.publish(out.saliency)
        if out.saliency_info is not None:
            cam.pub_info.publish(out.saliency_info)
        cam.pub_peaks.publish(out.peaks)
        if out.bearings is not None:
            cam.pub_bearings.publish(out.bearings)
        if out.target is not None:
            cam.pub_target.publish(out.target)
        elif out.no_bearings_reason:
            self._warn(cam, "camera_info", f"no bearings: {out.no_bearings_reason}")
        if cam.pub_overlay.get_subscription_count() > 0:
            full = out.saliency_array if out.saliency_array.shape == (height, width) else \
                upsample(result.saliency, (height, width))
            blend = overlay_bgr(w.rgb, full, settings.overlay_alpha, out.peak_list)
            cam.pub_overlay.publish(numpy_to_image(blend, "bgr8", msg.header))
        reason = result.reset_reason
        now_s = self.get_clock().now().nanoseconds * 1e-9  # same clock as camera stamps
        with self._cond:
            stats = cam.stats
            stats.frames_out += 1
            stats.window_out += 1
            stats.window_latency_s.append(time.monotonic() - w.received)
            stats.window_stamp_latency_s.append(now_s - w.stamp_s)
            if reason:
                stats.resets += 1
                stats.last_reset_reason = reason
        if reason and stats.frames_out > 1:  # throttled: jittering stamps reset every frame
            self._warn(cam, "reset", f"temporal state reset: {reason} (resets so far: "
                       f"{stats.resets}; see /diagnostics)", level="info")

    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        extra = {"device": str(self._engine.device), "backend": str(self._engine.backend),
                 "resolution": str(self._engine.resolution)}
        for index, cam in enumerate(self._cameras):
            with self._cond:
                window = cam.stats.take_window()
                status = diagnostic_status(f"{self.get_name()}: {cam.label}",
                                           self.resolve_topic_name(cam.image_topic),
                                           cam.stats, window, self._period, extra,
                                           bounds=P.rate_bounds(self._settings, index),
                                           active=self._active)
                _add_model_health(status, cam.health, cam.health.take_window(), window["out"])
            if window["dropped"]:
                self._warn(cam, "drop", f"dropped {window['dropped']} frames in the last "
                                        f"{self._period:g} s: inference is slower than the "
                                        "camera; only the newest frame is processed")
            array.status.append(status)
        self._diag_pub.publish(array)

    # ----------------------------------------------------------------------- shutdown
    def close(self) -> None:
        """Stop the inference thread (idempotent)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=5.0)


def _build() -> SaliencyNode:
    node = SaliencyNode()
    if node.get_parameter("autostart").value:
        node.start()  # a StartupError here: one FATAL line, exit code 1
    else:
        node.get_logger().info("autostart is false: unconfigured, waiting for a lifecycle "
                               "transition or ~/enable")
    return node


def main(args=None) -> int:
    """Entry point of ``saliency_node``; returns the process exit code."""
    return run_node(NODE_NAME, _build, args)


if __name__ == "__main__":
    sys.exit(main())
