"""``attention_to_setpoint``: saliency bearings -> gimbal angles and a vehicle yaw-rate command.

Subscribes to ``bearings`` (geometry_msgs/PoseArray from the saliency node, best peak first;
remap it to e.g. ``/saliency_node/bearings``) and, for the first (strongest) bearing of each
message, publishes in standard messages (REP 103 body frame, radians; see attention.py):

* ``~/gimbal_angles`` geometry_msgs/Vector3Stamped: x = roll (0), y = pitch (positive
  down), z = yaw (positive left) of the camera in ``body_frame``;
* ``~/gimbal_attitude`` geometry_msgs/QuaternionStamped: the same attitude as a quaternion;
* ``~/yaw_rate`` geometry_msgs/TwistStamped: angular.z = vehicle yaw rate (positive left,
  counter-clockwise seen from above); an empty bearings message publishes 0 (stop turning).

With ``px4_output`` set and px4_msgs importable it also publishes, with PX4's QoS
(best effort, transient local, depth 1) and timestamps in microseconds, either
``/fmu/in/gimbal_manager_set_attitude`` (px4_msgs/GimbalManagerSetAttitude, FRD quaternion)
or ``/fmu/in/vehicle_command`` (VehicleCommand DO_GIMBAL_MANAGER_PITCHYAW, degrees, after one
DO_GIMBAL_MANAGER_CONFIGURE that takes gimbal control).  px4_msgs cannot be installed in this
project's environment, so that path is written to PX4's message definitions but UNTESTED here.
"""

from __future__ import annotations

import math
import sys
from typing import Optional

import rclpy
from geometry_msgs.msg import PoseArray, QuaternionStamped, TwistStamped, Vector3Stamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from skd_saliency_ros.core.errors import StartupError
from skd_saliency_ros.core.attention import (AttentionError, Limits, Mounting, attention_command,
                                             quaternion_flu_to_frd, quaternion_from_rpy,
                                             to_px4_frd)

NODE_NAME = "attention_to_setpoint"
PX4_OUTPUTS = ("none", "gimbal_attitude", "pitchyaw_command")
VEHICLE_CMD_DO_GIMBAL_MANAGER_PITCHYAW = 1000
VEHICLE_CMD_DO_GIMBAL_MANAGER_CONFIGURE = 1001

#: name -> (default, description); angles in degrees for readable YAML, converted once.
PARAMETERS = {
    "body_frame": ("base_link", "frame_id of the published angles (REP 103 FLU body frame)"),
    "mount_roll_deg": (0.0, "camera roll in the body frame (for a gimbal: its current roll)"),
    "mount_pitch_deg": (0.0, "camera pitch in the body frame, positive DOWN (90 = nadir)"),
    "mount_yaw_deg": (0.0, "camera yaw in the body frame, positive LEFT"),
    "pitch_min_deg": (-30.0, "lowest commanded gimbal pitch (negative = up)"),
    "pitch_max_deg": (90.0, "highest commanded gimbal pitch (90 = straight down)"),
    "yaw_min_deg": (-180.0, "gimbal yaw limit to the right (negative)"),
    "yaw_max_deg": (180.0, "gimbal yaw limit to the left (positive)"),
    "max_yaw_rate_deg_s": (30.0, "largest vehicle yaw-rate command magnitude"),
    "yaw_rate_gain": (1.0, "yaw-rate command per yaw error ((rad/s)/rad)"),
    "yaw_deadband_deg": (2.0, "no turn command below this yaw error"),
    "px4_output": ("none", "none | gimbal_attitude (GimbalManagerSetAttitude) | "
                           "pitchyaw_command (VehicleCommand DO_GIMBAL_MANAGER_PITCHYAW); "
                           "needs px4_msgs"),
    "px4_target_system": (1, "MAVLink system id of the autopilot"),
    "px4_target_component": (1, "MAVLink component id of the autopilot"),
    "px4_source_system": (1, "MAVLink system id this node claims for gimbal control"),
    "px4_source_component": (191, "MAVLink component id this node claims (191 = onboard "
                                  "computer)"),
    "px4_gimbal_device_id": (0, "gimbal device id (0 = all gimbals)"),
}

#: read at start-up only
FIXED = {"body_frame", "px4_output", "px4_target_system", "px4_target_component",
         "px4_source_system", "px4_source_component", "px4_gimbal_device_id"}


class AttentionNode(Node):
    """Bearings in, gimbal angles and a yaw-rate command out."""

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        for name, (default, text) in PARAMETERS.items():
            # floats accept integers from YAML too (90 as well as 90.0)
            self.declare_parameter(name, default, ParameterDescriptor(
                description=text, dynamic_typing=isinstance(default, float),
                read_only=name in FIXED))
        try:
            self._mounting, self._limits = self._read_geometry()
        except (TypeError, ValueError) as exc:
            raise StartupError(f"invalid parameter: {exc}") from None
        self._hold_yaw = 0.0
        self._frame = str(self.get_parameter("body_frame").value)
        self.pub_angles = self.create_publisher(Vector3Stamped, "~/gimbal_angles", 10)
        self.pub_attitude = self.create_publisher(QuaternionStamped, "~/gimbal_attitude", 10)
        self.pub_rate = self.create_publisher(TwistStamped, "~/yaw_rate", 10)
        self._px4 = _Px4Output(self) if self.get_parameter("px4_output").value != "none" \
            else None
        self.create_subscription(PoseArray, "bearings", self._on_bearings, 10)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # ----------------------------------------------------------------------- parameters
    def _read_geometry(self, overrides: Optional[dict] = None):
        def value(name):
            if overrides and name in overrides:
                return float(overrides[name])
            return float(self.get_parameter(name).value)
        rad = math.radians
        mounting = Mounting(roll=rad(value("mount_roll_deg")),
                            pitch=rad(value("mount_pitch_deg")),
                            yaw=rad(value("mount_yaw_deg")))
        limits = Limits(pitch_min=rad(value("pitch_min_deg")),
                        pitch_max=rad(value("pitch_max_deg")),
                        yaw_min=rad(value("yaw_min_deg")), yaw_max=rad(value("yaw_max_deg")),
                        max_yaw_rate=rad(value("max_yaw_rate_deg_s")),
                        yaw_rate_gain=value("yaw_rate_gain"),
                        yaw_deadband=rad(value("yaw_deadband_deg")))
        limits.check()
        return mounting, limits

    def _on_set_parameters(self, params) -> SetParametersResult:
        changes = {p.name: p.value for p in params}
        fixed = FIXED & set(changes)
        if fixed:
            return SetParametersResult(successful=False,
                                       reason=f"{', '.join(sorted(fixed))} is fixed at start-up")
        geometry = {k: v for k, v in changes.items() if k in PARAMETERS}
        try:
            mounting, limits = self._read_geometry(geometry)
        except (AttentionError, TypeError, ValueError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self._mounting, self._limits = mounting, limits
        return SetParametersResult(successful=True)

    # ----------------------------------------------------------------------- bearings
    def _on_bearings(self, msg: PoseArray) -> None:
        rate = TwistStamped()
        rate.header.stamp = msg.header.stamp
        rate.header.frame_id = self._frame
        if not msg.poses:
            self.pub_rate.publish(rate)  # nothing salient: stop turning
            return
        p = msg.poses[0].position
        try:
            cmd = attention_command((p.x, p.y, p.z), self._mounting, self._limits,
                                    hold_yaw=self._hold_yaw)
        except AttentionError as exc:
            self.get_logger().warning(f"bearing ignored: {exc}", throttle_duration_sec=5.0)
            return
        self._hold_yaw = cmd.yaw
        angles = Vector3Stamped()
        angles.header = rate.header
        angles.vector.x, angles.vector.y, angles.vector.z = 0.0, cmd.pitch, cmd.yaw
        attitude = QuaternionStamped()
        attitude.header = rate.header
        q = quaternion_from_rpy(0.0, cmd.pitch, cmd.yaw)
        (attitude.quaternion.x, attitude.quaternion.y, attitude.quaternion.z,
         attitude.quaternion.w) = (float(v) for v in q)
        rate.twist.angular.z = cmd.yaw_rate
        self.pub_angles.publish(angles)
        self.pub_attitude.publish(attitude)
        self.pub_rate.publish(rate)
        if self._px4 is not None:
            self._px4.send(cmd.pitch, cmd.yaw, q)


class _Px4Output:
    """px4_msgs publishers on /fmu/in/*; UNTESTED here (px4_msgs is not installable)."""

    def __init__(self, node: Node):
        mode = node.get_parameter("px4_output").value
        if mode not in PX4_OUTPUTS:
            raise StartupError(f"px4_output must be one of {', '.join(PX4_OUTPUTS)}, "
                               f"got '{mode}'")
        try:
            from px4_msgs.msg import GimbalManagerSetAttitude, VehicleCommand
        except ImportError:
            raise StartupError(f"px4_output '{mode}' needs the px4_msgs package (build it "
                               "from https://github.com/PX4/px4_msgs in your workspace); "
                               "set px4_output:=none to publish standard messages only"
                               ) from None
        self.node, self.mode = node, mode
        self.msg_attitude, self.msg_command = GimbalManagerSetAttitude, VehicleCommand
        qos = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL,
                         history=HistoryPolicy.KEEP_LAST, depth=1)
        ids = {k: int(node.get_parameter(f"px4_{k}").value) for k in (
            "target_system", "target_component", "source_system", "source_component",
            "gimbal_device_id")}
        self.ids = ids
        if mode == "gimbal_attitude":
            self.pub = node.create_publisher(GimbalManagerSetAttitude,
                                             "/fmu/in/gimbal_manager_set_attitude", qos)
        else:
            self.pub = node.create_publisher(VehicleCommand, "/fmu/in/vehicle_command", qos)
        self.configured = False

    def _now_us(self) -> int:
        return int(self.node.get_clock().now().nanoseconds / 1000)

    def _command(self, command: int, params) -> object:
        msg = self.msg_command()
        msg.timestamp = self._now_us()
        msg.command = command
        for i, value in enumerate(params, start=1):
            setattr(msg, f"param{i}", value)
        msg.target_system = self.ids["target_system"]
        msg.target_component = self.ids["target_component"]
        msg.source_system = self.ids["source_system"]
        msg.source_component = self.ids["source_component"]
        msg.from_external = True
        return msg

    def send(self, pitch: float, yaw: float, q_flu) -> None:
        """Publish one gimbal set-point (REP 103 angles in, PX4 FRD conventions out)."""
        if self.mode == "gimbal_attitude":
            msg = self.msg_attitude()
            msg.timestamp = self._now_us()
            msg.origin_sysid = self.ids["source_system"]
            msg.origin_compid = self.ids["source_component"]
            msg.target_system = self.ids["target_system"]
            msg.target_component = self.ids["target_component"]
            msg.flags = 0  # angles relative to the vehicle (no yaw lock)
            msg.gimbal_device_id = self.ids["gimbal_device_id"]
            msg.q = [float(v) for v in quaternion_flu_to_frd(q_flu)]
            nan = float("nan")
            msg.angular_velocity_x = msg.angular_velocity_y = msg.angular_velocity_z = nan
            self.pub.publish(msg)
            return
        if not self.configured:  # take primary control of the gimbal once
            self.pub.publish(self._command(VEHICLE_CMD_DO_GIMBAL_MANAGER_CONFIGURE, [
                float(self.ids["source_system"]), float(self.ids["source_component"]),
                -1.0, -1.0, 0.0, 0.0, float(self.ids["gimbal_device_id"])]))
            self.configured = True
        px4_pitch, px4_yaw = to_px4_frd(pitch, yaw)
        nan = float("nan")
        self.pub.publish(self._command(VEHICLE_CMD_DO_GIMBAL_MANAGER_PITCHYAW, [
            math.degrees(px4_pitch), math.degrees(px4_yaw), nan, nan, 0.0, 0.0,
            float(self.ids["gimbal_device_id"])]))


def main(args=None) -> int:
    """Entry point of ``attention_to_setpoint``; returns the process exit code."""
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = AttentionNode()
        rclpy.spin(node)
    except (StartupError, AttentionError) as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(str(exc))
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
