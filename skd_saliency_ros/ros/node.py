"""SaliencyNode: live saliency maps, peaks and bearing rays for one or more camera topics.

The node is the lifecycle and the parameters.  Each camera is a ``CameraPipeline``
(``ros/camera_pipeline.py``: its subscriptions, lifecycle publishers, pending frame and
counters), and one ``InferenceWorker`` thread serves them all: subscription callbacks only
keep the newest frame per camera (a frame replaced before it was processed is counted as
dropped) and wake the thread, which decodes whatever is pending, runs ONE batched
``engine.step_many`` for all cameras and publishes.  The executor therefore never waits on
inference: parameter services, CameraInfo and diagnostics stay responsive, and a node that
falls behind drops old frames instead of queueing latency.

Invalid frames (undecodable, too small or too large, rejected by the engine) are counted,
reported with a throttled warning and in diagnostics, and produce no output; the node keeps
serving.  A model that cannot be loaded, or fails the engine's load check, stops the node at
start-up with one error line and exit code 1.  Frames on which the model fails, or whose
map is not finite (NaN or inf: the engine's zeros are no answer), get no output either; they
are counted (``failed``, ``non_finite``) and turn /diagnostics to ERROR when no frame of a
period got a map.

Lifecycle (a managed node, REP 2002 style, like yolo_ros): *configure* reads and checks the
parameters, loads the engine and creates the cameras (their outputs are ``rclpy.lifecycle``
publishers) and diagnostics; *activate* enables the outputs, resets the temporal state and
creates the subscriptions and the inference thread; *deactivate* removes the subscriptions,
stops the thread and disables the outputs (the engine and publishers stay, so activating
again is instant); *cleanup* drops the engine and publishers.  /diagnostics is a plain
publisher: an inactive node still says that it is inactive.  ``autostart: true`` (the
default) configures and activates at start, so ``ros2 run`` behaves as a plain node;
``~/enable`` (std_srvs/SetBool) pauses and resumes through the same transitions.
"""

from __future__ import annotations

import sys
import threading
from typing import Dict, List, Optional

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_srvs.srv import SetBool

from skd_saliency_ros.core.errors import StartupError
from skd_saliency_ros.ros import params as P
from skd_saliency_ros.ros.camera_pipeline import CameraPipeline, InferenceWorker
from skd_saliency_ros.ros.engine_params import engine_from
from skd_saliency_ros.ros.entry import run_node
from skd_saliency_ros.ros.throttle import WarnThrottle

NODE_NAME = "saliency_node"
SUCCESS = TransitionCallbackReturn.SUCCESS


def _qos(values, reliable: bool) -> QoSProfile:
    """Keep-last, volatile QoS of the configured depth (outputs are always reliable)."""
    reliability = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(values["qos_depth"]),
                      reliability=reliability, durability=DurabilityPolicy.VOLATILE)


class SaliencyNode(LifecycleNode):
    """Lifecycle node around a SaliencyEngine; ``start()`` configures and activates it."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self._pipelines: List[CameraPipeline] = []
        self._engine = None
        self._settings: Optional[P.Settings] = None
        self._lock = threading.Condition()  # every camera's pending frame and counters
        self._worker: Optional[InferenceWorker] = None
        self._throttle = WarnThrottle(self.get_logger())
        self._diag_pub = None
        self._diag_timer = None
        self._period = 1.0
        self._failure = ""  # why the last transition failed (for start() and ~/enable)
        self._activations = 0
        self._quiet = False
        self._values_at_configure: Dict[str, object] = {}
        P.NODE_PARAMS.declare(self)  # values are read at configure; bad types stop us here
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
        """Check the parameters, load the engine, create the cameras and diagnostics."""
        return self._transition("configure", self._configure)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Enable the outputs (super), then reset the temporal state, subscribe, infer."""
        result = super().on_activate(state)
        return self._transition("activate", self._activate) if result == SUCCESS else result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Unsubscribe and stop inference, then disable the outputs (super); the rest stays."""
        result = self._transition("deactivate", self._deactivate)
        return super().on_deactivate(state) if result == SUCCESS else result

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Drop the engine, the cameras and diagnostics (back to unconfigured)."""
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
        return SUCCESS

    def _configure(self) -> None:
        values = P.NODE_PARAMS.read(self)
        reason = P.NODE_PARAMS.validate(values)
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
        qos_out = _qos(values, reliable=True)
        for entry in layout:  # one by one, so a failure releases the ones made
            self._pipelines.append(CameraPipeline(self, entry, self._engine, self._lock,
                                                  self._throttle, lambda: self._settings,
                                                  qos_out))
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diag_timer = self.create_timer(self._period, self._publish_diagnostics)
        info, size = self._engine.model_info, self._engine.input_size
        self.get_logger().info(
            f"configured for {len(self._pipelines)} camera(s) "
            f"[{', '.join(p.image_topic for p in self._pipelines)}] with a "
            f"{info.get('kind', '?')} model, input {size.height} x {size.width} (H x W; every "
            f"frame resized whole to it by area averaging, as in training), on "
            f"{self._engine.device} ({self._engine.backend})")

    def _load_engine(self, values):
        """Build the engine the parameters describe (torch loads here); StartupError if not."""
        try:
            return engine_from(values, logger=self.get_logger())
        except Exception as exc:  # any load failure is one clear line, never a traceback
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise StartupError(f"cannot start the saliency engine with model "
                               f"{values['model_path'] or 'default'}: {type(exc).__name__}: "
                               f"{detail}") from None

    def _activate(self) -> None:
        values = self._values_at_configure  # subscriptions are fixed at start-up
        reason = "first frame after re-activation" if self._activations else None
        qos_in = _qos(values, reliable=values["qos_reliability"] == "reliable")
        routes = []
        for pipeline in self._pipelines:
            pipeline.restart(reset_reason=reason)  # the first activation starts from nothing
            routes.append(pipeline.subscribe(qos_in, values["transport"]))
        self._worker = InferenceWorker(self._pipelines, self._engine, self._lock,
                                       running=self.context.ok)
        self._worker.start()
        self._activations += 1
        self.get_logger().info("active, serving " + ", ".join(routes))

    def _deactivate(self) -> None:
        for pipeline in self._pipelines:
            pipeline.unsubscribe()
        self.close()  # no publish happens after this returns
        with self._lock:
            for pipeline in self._pipelines:
                pipeline.take_pending()
        self.get_logger().info("inactive: unsubscribed, inference stopped")

    def _release(self) -> None:
        """Undo configure and activate as far as they got (idempotent)."""
        self.close()
        for pipeline in self._pipelines:
            pipeline.destroy()
        self._pipelines = []
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

    # ----------------------------------------------------------------------- parameters
    def _on_set_parameters(self, parameters) -> SetParametersResult:
        """Refuse what the parameter table refuses (read-only, or invalid with the rest)."""
        reason = P.NODE_PARAMS.refuse_change(P.NODE_PARAMS.read(self),
                                             {p.name: p.value for p in parameters})
        return SetParametersResult(successful=not reason, reason=reason or "")

    def _after_set_parameters(self, parameters) -> None:
        if self._engine is None:  # unconfigured: configure reads the parameters
            return
        values = P.NODE_PARAMS.read(self)
        self._settings = P.settings_from(values)
        self._engine.max_gap_s = float(values["max_gap_s"])
        changed = ", ".join(f"{p.name}={p.value}" for p in parameters if p.name in P.SPECS)
        if changed:
            self.get_logger().info(f"parameters changed: {changed}")

    # ----------------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        extra = {"device": str(self._engine.device), "backend": str(self._engine.backend),
                 "resolution": self._engine.input_size.label}
        for index, pipeline in enumerate(self._pipelines):
            array.status.append(pipeline.diagnostics(self._period, extra,
                                                     P.rate_bounds(self._settings, index)))
        self._diag_pub.publish(array)

    def close(self) -> None:
        """Stop the inference thread (idempotent)."""
        if self._worker is not None:
            self._worker.stop()
            self._worker = None


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
