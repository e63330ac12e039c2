"""``attention_to_setpoint``: saliency bearings -> gimbal angles and a vehicle yaw-rate command.

Subscribes to ``bearings`` (geometry_msgs/PoseArray from the saliency node, best peak first;
remap it to e.g. ``/saliency_node/bearings``) and, for the first (strongest) bearing of each
message, publishes in standard messages (REP 103 body frame, radians; see attention.py):

* ``~/gimbal_angles`` geometry_msgs/Vector3Stamped: x = roll (0), y = pitch (positive
  down), z = yaw (positive left) of the camera in ``body_frame``;
* ``~/gimbal_attitude`` geometry_msgs/QuaternionStamped: the same attitude as a quaternion;
* ``~/yaw_rate`` geometry_msgs/TwistStamped: angular.z = vehicle yaw rate (positive left,
  counter-clockwise seen from above); 0 (stop turning) for an empty bearings message and
  whenever no trustworthy camera attitude is known.

The bearing is turned into the body frame with the camera attitude at the bearing's stamp,
from ``attitude_source``: ``static`` (the mount_* parameters: a fixed camera), ``topic``
(geometry_msgs/QuaternionStamped on ``gimbal_attitude_in``: camera_link in the body frame,
from any gimbal driver) or ``px4`` (px4_msgs/GimbalDeviceAttitudeStatus on
``/fmu/out/gimbal_device_attitude_status``).  A measured attitude closes the loop: once the
gimbal points at the target the command stays.  With no sample at or before the bearing's
stamp, or one older than ``attitude_timeout_s``, the node sends no gimbal command.

With ``px4_output`` set it also publishes gimbal set-points to PX4 (GimbalManagerSetAttitude or
VehicleCommand DO_GIMBAL_MANAGER_PITCHYAW); with the offboard stream armed
(``px4_offboard_enable`` or the ``~/offboard_enable`` service, off by default) an
OffboardControlMode heartbeat and a hover-and-turn TrajectorySetpoint.  It never switches PX4
into offboard mode itself.  px4_msgs cannot be installed in this project's environment: the
field contents are built and tested in core/px4_messages.py against PX4's message
definitions, but the px4_msgs publishing and subscribing here have not run against PX4.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from geometry_msgs.msg import PoseArray, QuaternionStamped, TwistStamped, Vector3Stamped
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header
from std_srvs.srv import SetBool

from skd_saliency_ros.core.attention import (AttentionError, AttitudeError, AttitudeHistory,
                                             Limits, Mounting, attention_command,
                                             mounting_from_quaternion, quaternion_from_rpy)
from skd_saliency_ros.core.stamps import stamp_ns
from skd_saliency_ros.core.errors import StartupError
from skd_saliency_ros.ros.entry import run_node
from skd_saliency_ros.ros.params import ParamSpec, ParamTable
from skd_saliency_ros.ros.throttle import WarnThrottle
from skd_saliency_ros.core.px4_messages import (ATTITUDE_FRAMES, Px4Ids, Px4MessageError,
                                                fit_to_layout, gimbal_manager_configure,
                                                gimbal_manager_pitchyaw,
                                                gimbal_manager_set_attitude,
                                                offboard_control_mode, offboard_yaw_rate,
                                                parse_gimbal_device_attitude_status,
                                                trajectory_setpoint_yaw_rate)

NODE_NAME = "attention_to_setpoint"
PX4_OUTPUTS = ("none", "gimbal_attitude", "pitchyaw_command")
ATTITUDE_SOURCES = ("static", "topic", "px4")
HISTORY_LENGTH = 256   # attitude samples kept: > 2 s at 100 Hz

#: PX4's /fmu/in/* QoS (px4_ros_com examples): best effort, transient local, depth 1.
PX4_IN_QOS = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL,
                        history=HistoryPolicy.KEEP_LAST, depth=1)
#: Reading /fmu/out/*: best effort and volatile, which any PX4 writer durability satisfies.
PX4_OUT_QOS = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.VOLATILE,
                         history=HistoryPolicy.KEEP_LAST, depth=5)

#: the parameters the command limits come from (angles in degrees for readable YAML,
#: converted once, in limits_from)
LIMIT_PARAMS = ("pitch_min_deg", "pitch_max_deg", "yaw_min_deg", "yaw_max_deg",
                "max_yaw_rate_deg_s", "yaw_rate_gain", "yaw_deadband_deg")
#: the MAVLink ids, each the parameter px4_<name>
PX4_ID_NAMES = ("target_system", "target_component", "source_system", "source_component",
                "gimbal_device_id")


def _number(name: str, default: float, description: str, read_only: bool = False,
            check=None) -> ParamSpec:
    """Build the spec of a float parameter that takes integers too (90 as well as 90.0)."""
    return ParamSpec(name, default, description, read_only, check=check, accept_integer=True)


def _finite_positive(value) -> Optional[str]:
    return None if math.isfinite(value) and value > 0.0 else \
        f"must be finite and > 0, got {float(value)}"


def _offboard_rate(value) -> Optional[str]:
    return None if math.isfinite(value) and value >= 2.0 else \
        f"must be >= 2 (PX4 leaves offboard mode below 2 Hz), got {float(value)}"


def limits_from(values: Mapping[str, Any]) -> Limits:
    """Build the command limits of the parameter values (degrees in, radians out), unchecked."""
    rad = math.radians
    return Limits(pitch_min=rad(values["pitch_min_deg"]), pitch_max=rad(values["pitch_max_deg"]),
                  yaw_min=rad(values["yaw_min_deg"]), yaw_max=rad(values["yaw_max_deg"]),
                  max_yaw_rate=rad(values["max_yaw_rate_deg_s"]),
                  yaw_rate_gain=float(values["yaw_rate_gain"]),
                  yaw_deadband=rad(values["yaw_deadband_deg"]))


def px4_ids_from(values: Mapping[str, Any]) -> Px4Ids:
    """Build the MAVLink ids of the parameter values, unchecked."""
    return Px4Ids(**{name: values[f"px4_{name}"] for name in PX4_ID_NAMES})


def _limits_consistent(values: Mapping[str, Any]) -> Optional[str]:
    """core.attention's one check of the limits, on the limits these values give."""
    if not all(name in values for name in LIMIT_PARAMS):
        return None
    try:
        limits_from(values).check()
    except AttentionError as exc:
        return str(exc)
    return None


def _px4_ids_valid(values: Mapping[str, Any]) -> Optional[str]:
    """core.px4_messages' one check of the MAVLink ids."""
    if not all(f"px4_{name}" in values for name in PX4_ID_NAMES):
        return None
    try:
        px4_ids_from(values).check()
    except Px4MessageError as exc:
        return str(exc)
    return None


#: the adapter's table (read-only = read at start-up only); checked like the saliency node's
ATTENTION_PARAMS = ParamTable((
    ParamSpec("body_frame", "base_link",
              "frame_id of the published angles (REP 103 FLU body frame)", True),
    _number("mount_roll_deg", 0.0, "attitude_source static: camera roll in the body frame"),
    _number("mount_pitch_deg", 0.0,
            "attitude_source static: camera pitch, positive DOWN (90 = nadir)"),
    _number("mount_yaw_deg", 0.0,
            "attitude_source static: camera yaw in the body frame, positive LEFT"),
    _number("pitch_min_deg", -30.0, "lowest commanded gimbal pitch (negative = up)"),
    _number("pitch_max_deg", 90.0, "highest commanded gimbal pitch (90 = straight down)"),
    _number("yaw_min_deg", -180.0, "gimbal yaw limit to the right (negative)"),
    _number("yaw_max_deg", 180.0, "gimbal yaw limit to the left (positive)"),
    _number("max_yaw_rate_deg_s", 30.0, "largest vehicle yaw-rate command magnitude"),
    _number("yaw_rate_gain", 1.0, "yaw-rate command per yaw error ((rad/s)/rad)"),
    _number("yaw_deadband_deg", 2.0, "no turn command below this yaw error"),
    ParamSpec("attitude_source", "static",
              "static (mount_* parameters, fixed camera) | topic (QuaternionStamped on "
              "gimbal_attitude_in) | px4 (GimbalDeviceAttitudeStatus, needs px4_msgs)", True,
              choices=ATTITUDE_SOURCES),
    _number("attitude_timeout_s", 0.5,
            "refuse a measured attitude older than this relative to the bearing's stamp",
            check=_finite_positive),
    ParamSpec("px4_attitude_frame", "auto",
              "auto (MAVLink flag rules; legacy YAW_LOCK = earth frame, refused) | vehicle (a "
              "legacy YAW_LOCK status is relative to the vehicle, as PX4's AUX/PWM gimbal "
              "output reports)", True, choices=ATTITUDE_FRAMES),
    ParamSpec("px4_output", "none",
              "none | gimbal_attitude (GimbalManagerSetAttitude) | pitchyaw_command "
              "(VehicleCommand DO_GIMBAL_MANAGER_PITCHYAW); needs px4_msgs", True,
              choices=PX4_OUTPUTS),
    ParamSpec("px4_target_system", 1, "MAVLink system id of the autopilot", True),
    ParamSpec("px4_target_component", 1, "MAVLink component id of the autopilot", True),
    ParamSpec("px4_source_system", 1, "MAVLink system id this node claims for gimbal control",
              True),
    ParamSpec("px4_source_component", 191,
              "MAVLink component id this node claims (191 = onboard computer)", True),
    ParamSpec("px4_gimbal_device_id", 0, "gimbal device id (0 = all gimbals)", True),
    ParamSpec("px4_offboard_enable", False,
              "stream OffboardControlMode + TrajectorySetpoint (hover, yaw rate) from "
              "start-up; ~/offboard_enable arms at run time", True),
    _number("px4_offboard_rate_hz", 10.0, "offboard stream rate (PX4 needs >= 2 Hz)", True,
            check=_offboard_rate),
    _number("yaw_rate_timeout_s", 0.5,
            "offboard stream: yawspeed 0 when the last bearing is older",
            check=_finite_positive),
), joint_checks=(_limits_consistent, _px4_ids_valid))


@dataclass(frozen=True)
class AttentionSettings:
    """The adapter's run-time parameters, converted together and swapped as one object."""

    mounting: Mounting
    limits: Limits
    attitude_timeout_s: float
    yaw_rate_timeout_s: float


def attention_settings_from(values: Mapping[str, Any]) -> AttentionSettings:
    """Convert validated parameter values (degrees) into the settings the node uses."""
    rad = math.radians
    return AttentionSettings(
        mounting=Mounting(roll=rad(values["mount_roll_deg"]),
                          pitch=rad(values["mount_pitch_deg"]),
                          yaw=rad(values["mount_yaw_deg"])),
        limits=limits_from(values), attitude_timeout_s=float(values["attitude_timeout_s"]),
        yaw_rate_timeout_s=float(values["yaw_rate_timeout_s"]))


def import_px4(purpose: str, *names: str) -> tuple:
    """Return the px4_msgs classes ``names``, or raise a StartupError naming what needs them."""
    try:
        from px4_msgs import msg as px4
    except ImportError:
        raise StartupError(f"{purpose} needs the px4_msgs package (build it from "
                           "https://github.com/PX4/px4_msgs, the branch matching your PX4, in "
                           "your workspace); without it use px4_output:=none, "
                           "attitude_source static|topic and no offboard stream") from None
    missing = [name for name in names if not hasattr(px4, name)]
    if missing:
        raise StartupError(f"{purpose}: the installed px4_msgs has no {', '.join(missing)}")
    return tuple(getattr(px4, name) for name in names)


def fill_message(msg_cls, fields: dict):
    """Copy a core field dict onto a new px4_msgs object, adapted to the installed layout.

    Every field is set explicitly (no silent defaults); rosidl's own type and range checks
    become a Px4MessageError that names the field.
    """
    type_name = msg_cls.__name__
    fitted = fit_to_layout(fields, msg_cls.get_fields_and_field_types(), type_name)
    msg = msg_cls()
    for name, value in fitted.items():
        try:
            setattr(msg, name, value)
        except (AssertionError, TypeError, ValueError) as exc:
            raise Px4MessageError(f"{type_name}.{name} = {value!r} rejected: {exc}") from None
    return msg


def message_fields(msg) -> dict:
    """Return all fields of a rosidl message as a plain dict (for the core parsers)."""
    return {name: getattr(msg, name) for name in msg.get_fields_and_field_types()}


def px4_timestamp_us(node: Node) -> int:
    """Return a PX4 timestamp (microseconds, node clock), as the px4_ros_com examples do."""
    return int(node.get_clock().now().nanoseconds // 1000)


class AttentionNode(Node):
    """Bearings in, gimbal angles and a yaw-rate command out."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        ATTENTION_PARAMS.declare(self)
        values = ATTENTION_PARAMS.read(self)
        reason = ATTENTION_PARAMS.validate(values)
        if reason:
            raise StartupError(f"invalid parameter: {reason}")
        self.settings = attention_settings_from(values)
        self._hold_yaw = 0.0
        self.warn = WarnThrottle(self.get_logger())
        self._frame = values["body_frame"]
        self.pub_angles = self.create_publisher(Vector3Stamped, "~/gimbal_angles", 10)
        self.pub_attitude = self.create_publisher(QuaternionStamped, "~/gimbal_attitude", 10)
        self.pub_rate = self.create_publisher(TwistStamped, "~/yaw_rate", 10)
        self._attitude = self._make_attitude_source(values["attitude_source"],
                                                    values["px4_attitude_frame"])
        mode = values["px4_output"]
        self._px4 = _Px4Gimbal(self, mode, px4_ids_from(values)) if mode != "none" else None
        self._offboard = _Offboard(self, float(values["px4_offboard_rate_hz"]),
                                   values["px4_offboard_enable"])
        self.create_subscription(PoseArray, "bearings", self._on_bearings, 10)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # ----------------------------------------------------------------------- parameters
    def _on_set_parameters(self, params) -> SetParametersResult:
        """Refuse what the table refuses; otherwise swap in the new settings as one object."""
        current = ATTENTION_PARAMS.read(self)
        changes = {p.name: p.value for p in params}
        reason = ATTENTION_PARAMS.refuse_change(current, changes)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
        self.settings = attention_settings_from({**current, **changes})
        return SetParametersResult(successful=True)

    def _make_attitude_source(self, source: str, frame: str):
        if source == "topic":
            return _TopicAttitude(self)
        if source == "px4":
            return _Px4Attitude(self, frame)
        return _StaticAttitude(self)

    # ----------------------------------------------------------------------- bearings
    def _on_bearings(self, msg: PoseArray) -> None:
        header = Header(stamp=msg.header.stamp, frame_id=self._frame)
        if not msg.poses:
            self._publish_rate(header, 0.0)  # nothing salient: stop turning
            return
        try:
            mounting = self._attitude.at(stamp_ns(msg.header.stamp))
        except AttitudeError as exc:
            self.warn(f"no gimbal command: {exc}")
            self._publish_rate(header, 0.0)  # target direction unknown: stop turning
            return
        p = msg.poses[0].position
        try:
            cmd = attention_command((p.x, p.y, p.z), mounting, self.settings.limits,
                                    hold_yaw=self._hold_yaw)
        except AttentionError as exc:
            self.warn(f"bearing ignored: {exc}")
            return
        self._hold_yaw = cmd.yaw
        self._publish_command(header, cmd)

    def _publish_rate(self, header: Header, yaw_rate: float) -> None:
        rate = TwistStamped(header=header)
        rate.twist.angular.z = yaw_rate
        self.pub_rate.publish(rate)
        self._offboard.note_rate(yaw_rate)

    def _publish_command(self, header: Header, cmd) -> None:
        angles = Vector3Stamped(header=header)
        angles.vector.x, angles.vector.y, angles.vector.z = 0.0, cmd.pitch, cmd.yaw
        attitude = QuaternionStamped(header=header)
        q = quaternion_from_rpy(0.0, cmd.pitch, cmd.yaw)
        (attitude.quaternion.x, attitude.quaternion.y, attitude.quaternion.z,
         attitude.quaternion.w) = (float(v) for v in q)
        self.pub_angles.publish(angles)
        self.pub_attitude.publish(attitude)
        self._publish_rate(header, cmd.yaw_rate)
        if self._px4 is not None:
            self._px4.send(cmd.pitch, cmd.yaw, q)


# --------------------------------------------------------------------------- attitude sources
class _StaticAttitude:
    """A fixed camera: the mount_* parameters (run-time changes apply)."""

    def __init__(self, node: AttentionNode):
        self.node = node

    def at(self, stamp: int) -> Mounting:
        """Return the mounting; a fixed camera's attitude does not depend on time."""
        return self.node.settings.mounting


class _MeasuredAttitude:
    """Measured camera attitudes, looked up at each bearing's stamp (see AttitudeHistory)."""

    def __init__(self, node: AttentionNode):
        self.node = node
        self.history = AttitudeHistory(maxlen=HISTORY_LENGTH)

    def at(self, stamp: int) -> Mounting:
        """Return the attitude valid at ``stamp`` or raise AttitudeError (no guessing)."""
        return self.history.at(stamp, self.node.settings.attitude_timeout_s)

    def _warn(self, text: str) -> None:
        self.node.warn(f"attitude sample ignored: {text}")


class _TopicAttitude(_MeasuredAttitude):
    """geometry_msgs/QuaternionStamped: camera_link in the body frame (FLU), any gimbal driver."""

    def __init__(self, node: AttentionNode):
        super().__init__(node)
        node.create_subscription(QuaternionStamped, "gimbal_attitude_in", self._on_attitude, 50)

    def _on_attitude(self, msg: QuaternionStamped) -> None:
        frame = msg.header.frame_id
        if frame and frame != self.node._frame:
            self._warn(f"it is in frame '{frame}', not the body frame '{self.node._frame}'")
            return
        q = msg.quaternion
        try:
            mounting = mounting_from_quaternion((q.x, q.y, q.z, q.w))
        except AttitudeError as exc:
            self._warn(str(exc))
            return
        self.history.add(stamp_ns(msg.header.stamp), mounting)


class _Px4Attitude(_MeasuredAttitude):
    """px4_msgs/GimbalDeviceAttitudeStatus (FRD, w x y z; timestamp in PX4 microseconds).

    The timestamp is compared with the bearing's ROS stamp, which holds when the uXRCE-DDS
    client synchronises time (UXRCE_DDS_SYNCT, on by default); otherwise every sample is
    refused as stale or "not before the bearing", with a warning.
    """

    def __init__(self, node: AttentionNode, frame: str):
        super().__init__(node)
        self.frame = frame
        (status_cls,) = import_px4("attitude_source px4", "GimbalDeviceAttitudeStatus")
        node.create_subscription(status_cls, "/fmu/out/gimbal_device_attitude_status",
                                 self._on_status, PX4_OUT_QOS)

    def _on_status(self, msg) -> None:
        try:
            status = parse_gimbal_device_attitude_status(message_fields(msg), self.frame)
        except (AttitudeError, Px4MessageError) as exc:
            self._warn(str(exc))
            return
        self.history.add(status.stamp_ns, status.mounting)


# --------------------------------------------------------------------------- PX4 outputs
class _Px4Gimbal:
    """Gimbal set-points on /fmu/in/*; the field dicts come from core.px4_messages."""

    def __init__(self, node: AttentionNode, mode: str, ids: Px4Ids):
        attitude_cls, command_cls = import_px4(f"px4_output '{mode}'",
                                               "GimbalManagerSetAttitude", "VehicleCommand")
        self.node, self.mode, self.ids = node, mode, ids
        self.cls = attitude_cls if mode == "gimbal_attitude" else command_cls
        self.command_cls = command_cls
        topic = ("/fmu/in/gimbal_manager_set_attitude" if mode == "gimbal_attitude"
                 else "/fmu/in/vehicle_command")
        self.pub = node.create_publisher(self.cls, topic, PX4_IN_QOS)
        self.pub_command = (self.pub if self.cls is command_cls else
                            node.create_publisher(command_cls, "/fmu/in/vehicle_command",
                                                  PX4_IN_QOS))
        try:  # a px4_msgs build that does not fit fails here, not in flight
            self._setpoint(0, 0.0, 0.0, (0.0, 0.0, 0.0, 1.0))
            fill_message(command_cls, gimbal_manager_configure(0, ids))
        except Px4MessageError as exc:
            raise StartupError(f"px4_output '{mode}': {exc}") from None
        self.configured = False

    def _setpoint(self, stamp_us: int, pitch: float, yaw: float, q_flu):
        if self.mode == "gimbal_attitude":
            return fill_message(self.cls, gimbal_manager_set_attitude(stamp_us, q_flu, self.ids))
        return fill_message(self.cls, gimbal_manager_pitchyaw(stamp_us, pitch, yaw, self.ids))

    def send(self, pitch: float, yaw: float, q_flu) -> None:
        """Publish one gimbal set-point (REP 103 in, PX4 conventions out); never raises."""
        now = px4_timestamp_us(self.node)
        try:
            if not self.configured:  # take primary control of the gimbal once
                self.pub_command.publish(fill_message(self.command_cls,
                                                      gimbal_manager_configure(now, self.ids)))
                self.configured = True
            self.pub.publish(self._setpoint(now, pitch, yaw, q_flu))
        except Px4MessageError as exc:
            self.node.warn(f"PX4 gimbal set-point not sent: {exc}")


class _Offboard:
    """OffboardControlMode heartbeat + hover-and-turn TrajectorySetpoint, only while armed.

    Arming starts the stream; it does NOT switch PX4 into offboard mode (the mission logic
    owns that).  Disarming sends one last yawspeed 0 and stops: if PX4 is still in offboard
    mode it then runs its offboard-loss failsafe (COM_OF_LOSS_T, COM_OBL_RC_ACT).
    """

    def __init__(self, node: AttentionNode, rate_hz: float, armed_at_start: bool):
        self.node = node
        self.armed = False
        self._rate: Optional[float] = None
        self._rate_time = -math.inf
        self._pubs = None
        node.create_service(SetBool, "~/offboard_enable", self._on_enable)
        node.create_timer(1.0 / rate_hz, self._tick)
        if armed_at_start:
            ok, text = self.set_armed(True)
            if not ok:
                raise StartupError(f"px4_offboard_enable: {text}")

    def note_rate(self, yaw_rate: float) -> None:
        """Remember the newest yaw-rate command (REP 103) and when it came."""
        self._rate, self._rate_time = float(yaw_rate), time.monotonic()

    def set_armed(self, on: bool):
        """Start or stop the stream; return (success, message) for the service."""
        if not on:
            if self.armed:
                self._publish(0.0)  # stop turning before going quiet
            self.armed = False
            return True, "offboard stream stopped (PX4 failsafes if it is still in offboard mode)"
        try:
            self._ensure_publishers()
            self._messages(0, 0.0)  # layout check before anything is sent
        except (StartupError, Px4MessageError) as exc:
            return False, str(exc)
        self.armed = True
        self.node.get_logger().warning(
            "offboard stream armed: OffboardControlMode + TrajectorySetpoint (hover, yaw rate); "
            "this node does not switch PX4 into offboard mode")
        return True, "offboard stream armed; switching PX4 to offboard mode is up to you"

    def _on_enable(self, request, response):
        response.success, response.message = self.set_armed(bool(request.data))
        return response

    def _ensure_publishers(self) -> None:
        if self._pubs is None:
            mode_cls, setpoint_cls = import_px4("the offboard stream", "OffboardControlMode",
                                                "TrajectorySetpoint")
            self._pubs = (
                mode_cls, setpoint_cls,
                self.node.create_publisher(mode_cls, "/fmu/in/offboard_control_mode",
                                           PX4_IN_QOS),
                self.node.create_publisher(setpoint_cls, "/fmu/in/trajectory_setpoint",
                                           PX4_IN_QOS))

    def _messages(self, stamp_us: int, yaw_rate: float):
        mode_cls, setpoint_cls = self._pubs[0], self._pubs[1]
        return (fill_message(mode_cls, offboard_control_mode(stamp_us)),
                fill_message(setpoint_cls, trajectory_setpoint_yaw_rate(stamp_us, yaw_rate)))

    def _publish(self, yaw_rate: float) -> None:
        try:
            mode, setpoint = self._messages(px4_timestamp_us(self.node), yaw_rate)
        except Px4MessageError as exc:
            self.node.warn(f"offboard set-point not sent: {exc}")
            return
        self._pubs[2].publish(mode)
        self._pubs[3].publish(setpoint)

    def _tick(self) -> None:
        if self.armed:
            age = time.monotonic() - self._rate_time
            self._publish(offboard_yaw_rate(self._rate, age,
                                            self.node.settings.yaw_rate_timeout_s))


def main(args=None) -> int:
    """Entry point of ``attention_to_setpoint``; returns the process exit code."""
    return run_node(NODE_NAME, AttentionNode, args)


if __name__ == "__main__":
    sys.exit(main())
