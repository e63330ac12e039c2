"""One camera's way through the saliency node: intake, decode, publish, counters.

A ``CameraPipeline`` owns everything of one camera topic: its subscriptions, its lifecycle
publishers, the one pending frame, the last CameraInfo and the counters its diagnostics
report.  The node makes one per entry of ``cameras`` and knows none of this; a new
per-camera output is a row of ``OUTPUTS`` and a step of ``CameraPipeline.publish``.
Outputs for a person or a detector (``overlay``, the attention crop ``crop/image`` and
``crop/camera_info``) are computed only while someone subscribes to them.

``InferenceWorker`` is the node's one inference thread: it takes the pending frame of every
camera at once, has each pipeline decode its own, runs ONE batched ``engine.step_many`` for
all of them and hands each result back to its pipeline.  Subscription callbacks therefore
never wait on inference, and a camera that outruns the model replaces its pending frame
(counted as dropped) instead of queueing latency.

Publishing is gated by the lifecycle, not by a flag of our own: the outputs are
``rclpy.lifecycle`` publishers, enabled and disabled by the node's transitions, and a frame is
taken in only while they are enabled (a callback already queued when deactivation began
is ignored).  Nothing here imports torch: the engine is built by the node and passed in.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseArray, Vector3Stamped
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from skd_saliency_ros.core.crops import peak_crop
from skd_saliency_ros.core.maps import upsample
from skd_saliency_ros.core.stamps import stamp_seconds
from skd_saliency_ros.ros.image_io import (ImageEncodingError, check_compressed, check_image,
                                           check_size, compressed_to_rgb8, image_to_rgb8,
                                           numpy_to_image)
from skd_saliency_ros.ros.outputs import (CameraStats, cell_aligned, crop_image, crop_info,
                                          crop_source, diagnostic_status, frame_messages,
                                          info_problem, overlay_bgr)
from skd_saliency_ros.ros.params import camera_info_topic

#: One camera's outputs, under its prefix: name -> message type (created in this order).
OUTPUTS: Tuple[Tuple[str, type], ...] = (
    ("saliency", Image), ("camera_info", CameraInfo), ("peaks", PoseArray),
    ("bearings", PoseArray), ("target", Vector3Stamped), ("overlay", Image),
    ("crop/image", Image), ("crop/camera_info", CameraInfo))


@dataclass
class PipelineStats(CameraStats):
    """A camera's counters: the input side of CameraStats plus frames the model lost.

    ``failed``: inference raised; ``non_finite``: the raw map held NaN or inf.  Both reached
    the model and got no map, so they say the model, not the camera, is the problem; they
    are totals, with a per-period count in the window like every other counter.
    ``crop_no_peak``: frames for which an attention crop was wanted but the map had no peak
    (a flat map), so nothing was published on the crop topics (a total).
    """

    failed: int = 0
    non_finite: int = 0
    crop_no_peak: int = 0
    last_failure_reason: str = ""
    window_failed: int = 0
    window_non_finite: int = 0

    def take_window(self) -> Dict[str, object]:
        """Return and clear the per-period counters, the model's ones included."""
        window = super().take_window()
        window.update(failed=self.window_failed, non_finite=self.window_non_finite)
        self.window_failed = self.window_non_finite = 0
        return window

    def restart_rate_window(self) -> None:
        """Forget the input history and the last period (after a pause)."""
        super().restart_rate_window()
        self.window_failed = self.window_non_finite = 0


def add_model_health(status: DiagnosticStatus, stats: PipelineStats,
                     window: Dict[str, object]) -> None:
    """Add the model counters to a camera's status; WARN or ERROR for maps the model lost.

    ERROR when frames failed or were not finite in the last period and none got a map (the
    node is running but answers nothing), WARN when only some did.
    """
    status.values.extend([KeyValue(key="failed", value=str(stats.failed)),
                          KeyValue(key="non_finite", value=str(stats.non_finite)),
                          KeyValue(key="last_failure_reason", value=stats.last_failure_reason),
                          KeyValue(key="crop_no_peak", value=str(stats.crop_no_peak))])
    failed, non_finite = window["failed"], window["non_finite"]
    if not (failed or non_finite):
        return
    parts = []
    if failed:
        parts.append(f"{failed} frames failed in the model ({stats.last_failure_reason})")
    if non_finite:
        parts.append(f"{non_finite} maps not finite (NaN or inf in the model's output)")
    text = "; ".join(parts)
    if window["out"] == 0:
        status.level = DiagnosticStatus.ERROR
        text = "no map in the last period: " + text
    else:
        status.level = max(status.level, DiagnosticStatus.WARN)
    status.message = text if status.message == "ok" else f"{text}; {status.message}"


@dataclass
class DecodedFrame:
    """One camera's frame on its way through inference."""

    pipeline: "CameraPipeline"
    msg: object          # sensor_msgs/Image or CompressedImage, as received
    received: float      # time.monotonic() at arrival
    rgb: np.ndarray
    stamp_s: float


class CameraPipeline:
    """One camera of the node: topics, outputs, pending frame, calibration and counters.

    Args:
        node: the LifecycleNode the subscriptions and lifecycle publishers belong to.
        layout: (label, image topic, camera_info topic, output prefix), as
            ``params.camera_layout`` gives it.
        engine: the node's SaliencyEngine (its temporal state is per camera label).
        lock: the condition shared with the InferenceWorker; it guards the pending frame
            and the counters, and is notified when a frame is pending.
        warn: the node's WarnThrottle.
        settings: returns the node's current run-time ``params.Settings``.
        qos: QoS of the outputs.
    """

    def __init__(self, node, layout: Tuple[str, str, str, str], engine,
                 lock: threading.Condition, warn, settings: Callable[[], object], qos):
        self.label, self.image_topic, self.info_topic, self.prefix = layout
        self._node = node
        self._engine = engine
        self._lock = lock
        self._throttle = warn
        self._settings = settings
        self.stats = PipelineStats()
        self.pending: Optional[Tuple[object, float]] = None
        self.info: Optional[CameraInfo] = None
        self._last_encoding: Optional[str] = None
        self._subscriptions: Tuple = ()
        self._outputs = {name: node.create_lifecycle_publisher(kind, self.prefix + name, qos)
                         for name, kind in OUTPUTS}

    @property
    def active(self) -> bool:
        """Whether the lifecycle has enabled this camera's outputs (the node is active)."""
        saliency = self._outputs.get("saliency")  # none once destroyed
        return saliency is not None and saliency.is_activated

    # ------------------------------------------------------------------ lifecycle
    def restart(self, reset_reason: Optional[str]) -> None:
        """Start serving from nothing: no pending frame, fresh rate window, state reset."""
        if reset_reason:
            self._engine.reset(self.label, reason=reset_reason)
        self._last_encoding = None
        self.pending = None
        self.stats.restart_rate_window()

    def subscribe(self, qos, transport: str) -> str:
        """Subscribe to the camera's image and CameraInfo; return the route, for the log."""
        image_topic, info_topic = self._resolved_topics(transport)
        kind = CompressedImage if transport == "compressed" else Image
        self._subscriptions = (
            self._node.create_subscription(kind, image_topic, self.on_image, qos),
            self._node.create_subscription(CameraInfo, info_topic, self.on_camera_info, qos))
        image_sub, info_sub = self._subscriptions
        return f"{image_sub.topic_name} -> {self.prefix}saliency (info {info_sub.topic_name})"

    def unsubscribe(self) -> None:
        """Remove the subscriptions (idempotent)."""
        for sub in self._subscriptions:
            self._node.destroy_subscription(sub)
        self._subscriptions = ()

    def destroy(self) -> None:
        """Remove subscriptions and outputs; the pipeline is unusable afterwards."""
        self.unsubscribe()
        for pub in self._outputs.values():
            self._node.destroy_lifecycle_publisher(pub)
        self._outputs = {}

    def _resolved_topics(self, transport: str) -> Tuple[str, str]:
        """(image topic to subscribe, camera_info topic), after remapping.

        image_transport's rules: ``/compressed`` is appended to the resolved image topic, and
        the camera_info is its resolved sibling, so remapping only the image still finds the
        info.  An explicit remap of the info name (the launch file's camera_info_topic) wins.
        """
        image = self._node.resolve_topic_name(self.image_topic)
        info = self._node.resolve_topic_name(self.info_topic)
        if info == self._node.resolve_topic_name(self.info_topic, only_expand=True):
            info = camera_info_topic(image)  # not remapped itself: follow the image
        return (image + "/compressed" if transport == "compressed" else image), info

    # ------------------------------------------------------------------ intake
    def on_image(self, msg) -> None:
        """Keep the newest valid frame pending (a replaced one is dropped) and wake the worker."""
        if not self.active:  # a callback already queued when deactivation began
            return
        now = time.monotonic()
        # Invalid frames are refused here, before queueing, so they are counted as invalid
        # (never as drops) and never displace a valid pending frame.
        accepted = self._accept(msg)
        with self._lock:
            stats = self.stats
            stats.frames_in += 1
            stats.window_in += 1
            if not accepted:
                return
            if self.pending is not None:
                stats.dropped += 1
                stats.window_dropped += 1
            self.pending = (msg, now)
            self._lock.notify()

    def on_camera_info(self, msg: CameraInfo) -> None:
        """Keep the camera's latest calibration."""
        self.info = msg

    def take_pending(self) -> Optional[Tuple[object, float]]:
        """Return and clear the pending (msg, arrival time); call with the lock held."""
        pending, self.pending = self.pending, None
        return pending

    def _limits(self) -> Tuple[int, int]:
        settings = self._settings()
        return settings.min_input_size, settings.max_input_pixels

    def _accept(self, msg) -> bool:
        """Cheap checks of size, encoding and data length (no pixel is touched).

        A CompressedImage is checked by the size its header declares, so an image that
        would be too large decoded is refused before decoding (and never queued).
        """
        try:
            if isinstance(msg, CompressedImage):
                check_compressed(msg, *self._limits())
            else:
                check_size(int(msg.width), int(msg.height), *self._limits())
                check_image(msg)
        except ImageEncodingError as exc:
            self.invalid(exc.kind, str(exc))
            return False
        return True

    def decode(self, msg, received: float) -> Optional[DecodedFrame]:
        """Decode to RGB (None and counted invalid if it cannot be); reset on a new encoding."""
        compressed = isinstance(msg, CompressedImage)
        try:
            rgb = compressed_to_rgb8(msg, *self._limits()) if compressed else image_to_rgb8(msg)
        except ImageEncodingError as exc:
            self.invalid(exc.kind, str(exc))
            return None
        encoding = msg.format if compressed else msg.encoding
        if self._last_encoding is not None and encoding != self._last_encoding:
            self._engine.reset(self.label, reason=f"encoding changed {self._last_encoding} -> "
                                                  f"{encoding}")
        self._last_encoding = encoding
        return DecodedFrame(pipeline=self, msg=msg, received=received, rgb=rgb,
                            stamp_s=stamp_seconds(msg.header))

    # ------------------------------------------------------------------ outputs
    def publish(self, frame: DecodedFrame, result) -> None:
        """Publish one frame's outputs and count it; optional outputs only when subscribed."""
        settings = self._settings()
        height, width = frame.rgb.shape[:2]
        info = self.info  # the executor may replace it meanwhile: one CameraInfo per frame
        out = frame_messages(result.saliency, (width, height), frame.msg.header, info,
                             settings.output)
        pubs = self._outputs
        pubs["saliency"].publish(out.saliency)
        if out.saliency_info is not None:
            pubs["camera_info"].publish(out.saliency_info)
        pubs["peaks"].publish(out.peaks)
        if out.bearings is not None:
            pubs["bearings"].publish(out.bearings)
        if out.target is not None:
            pubs["target"].publish(out.target)
        elif out.no_bearings_reason:
            self._warn("camera_info", f"no bearings: {out.no_bearings_reason}")
        if pubs["overlay"].get_subscription_count() > 0:
            self._publish_overlay(frame, result, out, settings.overlay_alpha)
        if settings.crop_enable:
            self._publish_crop(frame, result, info, settings.crop_area_fraction)
        self._count_output(frame, result.reset_reason)

    def _publish_overlay(self, frame: DecodedFrame, result, out, alpha: float) -> None:
        """Publish the heat map over the full-size frame, peaks circled (for a person)."""
        size = frame.rgb.shape[:2]
        full = out.saliency_array if out.saliency_array.shape == size else \
            upsample(result.saliency, size)
        blend = overlay_bgr(frame.rgb, full, alpha, out.peak_list)
        self._outputs["overlay"].publish(numpy_to_image(blend, "bgr8", frame.msg.header))

    def _publish_crop(self, frame: DecodedFrame, result, info, area_fraction: float) -> None:
        """Publish the attention crop and its CameraInfo, each only when subscribed.

        The crop is core.crops.peak_crop's (strongest peak, ``area_fraction`` of the frame),
        widened to whole pixel cells for yuv422 and Bayer input (outputs.cell_aligned).  A
        map without a peak publishes nothing and is counted (``crop_no_peak``).  Without a
        usable CameraInfo the image is still published, the CameraInfo not (warned, throttled,
        by the rule of ~/camera_info: outputs.info_problem).
        """
        image_pub = self._outputs["crop/image"]
        info_pub = self._outputs["crop/camera_info"]
        want_image = image_pub.get_subscription_count() > 0
        want_info = info_pub.get_subscription_count() > 0
        if not (want_image or want_info):
            return
        height, width = frame.rgb.shape[:2]
        crop = peak_crop(result.saliency, (width, height), area_fraction)
        if crop is None:
            with self._lock:
                self.stats.crop_no_peak += 1
            return
        pixels, encoding = crop_source(frame.msg, frame.rgb)
        crop = cell_aligned(crop, (width, height), encoding)
        header = frame.msg.header
        if want_image:
            image_pub.publish(crop_image(pixels, encoding, crop, header))
        if want_info:
            problem = info_problem(info, width, height)
            if problem:
                topic = self._subscriptions[1].topic_name if self._subscriptions else \
                    self.info_topic
                self._warn("crop_info", f"no {self.prefix}crop/camera_info: {problem} "
                                        f"(CameraInfo topic {topic})")
            else:
                info_pub.publish(crop_info(info, crop, (width, height), header))

    def _count_output(self, frame: DecodedFrame, reason: Optional[str]) -> None:
        now_s = self._node.get_clock().now().nanoseconds * 1e-9  # same clock as camera stamps
        with self._lock:
            stats = self.stats
            stats.frames_out += 1
            stats.window_out += 1
            stats.window_latency_s.append(time.monotonic() - frame.received)
            stats.window_stamp_latency_s.append(now_s - frame.stamp_s)
            if reason:
                stats.resets += 1
                stats.last_reset_reason = reason
        if reason and stats.frames_out > 1:  # throttled: jittering stamps reset every frame
            self._warn("reset", f"temporal state reset: {reason} (resets so far: "
                       f"{stats.resets}; see /diagnostics)", level="info")

    # ------------------------------------------------------------------ counters
    def _warn(self, kind: str, text: str, level: str = "warning") -> None:
        """Log at most one message per camera and kind every throttle period."""
        self._throttle(f"[{self.image_topic}] {text}", key=(self.label, kind), level=level)

    def invalid(self, kind: str, reason: str) -> None:
        """Count a refused frame (no output for it); warn, throttled."""
        with self._lock:
            self.stats.invalid += 1
            self.stats.window_invalid += 1
            self.stats.last_invalid_reason = reason
        self._warn(kind, f"frame dropped: {reason}")

    def failed(self, exc: Exception) -> None:
        """Count a frame the model failed on (no output for it); warn, throttled."""
        reason = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
        with self._lock:
            self.stats.failed += 1
            self.stats.window_failed += 1
            self.stats.last_failure_reason = reason
        self._warn("internal", f"processing failed, no output for the frame: {reason} "
                               f"({self.stats.failed} so far; see /diagnostics)")

    def non_finite(self) -> None:
        """Count a frame whose map is NaN or inf (published as nothing); warn, throttled."""
        with self._lock:
            self.stats.non_finite += 1
            self.stats.window_non_finite += 1
        self._warn("non_finite", "no output for the frame: the model's map is not finite "
                                 f"(NaN or inf; {self.stats.non_finite} frames so far, "
                                 "see /diagnostics)")

    def diagnostics(self, period_s: float, extra: Dict[str, str],
                    bounds: Tuple[float, float]) -> DiagnosticStatus:
        """Return this camera's status for the last period (clears its window); warn on drops."""
        with self._lock:
            window = self.stats.take_window()
            status = diagnostic_status(f"{self._node.get_name()}: {self.label}",
                                       self._node.resolve_topic_name(self.image_topic),
                                       self.stats, window, period_s, extra, bounds=bounds,
                                       active=self.active)
            add_model_health(status, self.stats, window)
        if window["dropped"]:
            self._warn("drop", f"dropped {window['dropped']} frames in the last "
                               f"{period_s:g} s: inference is slower than the camera; only "
                               "the newest frame is processed")
        return status


class InferenceWorker:
    """The node's one inference thread over all its cameras.

    Args:
        pipelines: the node's cameras.
        engine: the node's SaliencyEngine.
        lock: the condition the pipelines notify when a frame is pending.
        running: False once the process shuts down (a failure then is not the frame's).
    """

    def __init__(self, pipelines: Sequence[CameraPipeline], engine,
                 lock: threading.Condition, running: Callable[[], bool]):
        self._pipelines = list(pipelines)
        self._engine = engine
        self._lock = lock
        self._running = running
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="saliency_inference",
                                        daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (idempotent); no frame is published after this returns."""
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stop and not any(p.pending for p in self._pipelines):
                    self._lock.wait(0.5)
                if self._stop:
                    return
                batch = [(p, p.take_pending()) for p in self._pipelines if p.pending]
            try:
                self._process(batch)
            except Exception as exc:  # keep serving whatever happens to one batch
                if not self._running():  # shutting down: publishers are gone
                    return
                for pipeline, _ in batch:
                    pipeline.failed(exc)

    def _process(self, batch) -> None:
        frames = [f for f in (p.decode(msg, t) for p, (msg, t) in batch) if f]
        if not frames:
            return
        try:
            results = self._infer(frames)
        except Exception as exc:  # the model failed on the batch: no output for its frames
            for frame in frames:
                frame.pipeline.failed(exc)
            return
        for frame, result in zip(frames, results):
            if result is None:
                continue
            if result.finite:
                frame.pipeline.publish(frame, result)
            else:  # all zeros by the flat-map rule: no answer, never published as one
                frame.pipeline.non_finite()

    def _infer(self, frames: List[DecodedFrame]) -> List[Optional[object]]:
        """Run one batched step; if the batch is refused, isolate the offending frames."""
        try:
            return self._engine.step_many([(f.pipeline.label, f.rgb, f.stamp_s)
                                           for f in frames])
        except ValueError as exc:
            if len(frames) == 1:
                frames[0].pipeline.invalid("engine", str(exc))
                return [None]
        results = []
        for f in frames:
            try:
                results.append(self._engine.step(f.rgb, f.stamp_s, stream=f.pipeline.label))
            except ValueError as exc:
                f.pipeline.invalid("engine", str(exc))
                results.append(None)
        return results
