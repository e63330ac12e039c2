"""Every px4_msgs message the attention adapter sends or reads, as plain field dicts (no ROS).

The ROS node copies these dicts onto the px4_msgs objects (``ros/attention_node.py``), so the
field names, units, signs and NaN conventions are decided here, where they are tested without
px4_msgs: ``test/test_px4_messages.py`` builds the real message classes from PX4's own .msg
definitions (vendored in ``test/vendored_px4_msgs``, PX4-Autopilot main) with rosbags, fills
them from these dicts, serialises them to CDR and reads them back.

Layouts differ between PX4 releases (checked against docs.px4.io, see docs/PX4.md):
OffboardControlMode has ``actuator`` up to v1.15 and ``thrust_and_torque`` /
``direct_actuator`` from v1.16; GimbalDeviceAttitudeStatus gains ``delta_yaw``,
``delta_yaw_velocity`` and ``gimbal_device_id`` after v1.15 and the YAW_IN_VEHICLE_FRAME /
YAW_IN_EARTH_FRAME flags after v1.16.  ``fit_to_layout`` adapts a dict to the fields of the
px4_msgs build that is installed, and refuses what cannot be adapted without changing meaning.

Conventions: timestamps in microseconds; PX4 body axes FRD, world NED, quaternions (w, x, y, z);
all angles here come in as REP 103 (FLU) radians and are converted once (see attention.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Iterable, Mapping, Sequence

import numpy as np

from skd_saliency_ros.core.attention import (AttentionError, AttitudeError, Mounting,
                                             mounting_from_quaternion, quaternion_flu_to_frd,
                                             quaternion_frd_to_flu, to_px4_frd)

NAN = float("nan")

VEHICLE_CMD_DO_GIMBAL_MANAGER_PITCHYAW = 1000
VEHICLE_CMD_DO_GIMBAL_MANAGER_CONFIGURE = 1001

DEVICE_FLAGS_YAW_LOCK = 16
DEVICE_FLAGS_YAW_IN_VEHICLE_FRAME = 32
DEVICE_FLAGS_YAW_IN_EARTH_FRAME = 64

#: px4_attitude_frame values: ``auto`` follows the MAVLink flag rules; ``vehicle`` also
#: reads a legacy YAW_LOCK status (no explicit frame flag) as vehicle-relative.
ATTITUDE_FRAMES = ("auto", "vehicle")

#: Fields of older layouts that the current dicts do not carry, with the value that keeps
#: the meaning (OffboardControlMode up to v1.15: ``actuator``).
LEGACY_DEFAULTS = {"OffboardControlMode": {"actuator": False}}


class Px4MessageError(AttentionError):
    """A px4_msgs message that cannot be built or read without changing its meaning."""


@dataclass(frozen=True)
class Px4Ids:
    """MAVLink ids: the autopilot addressed and the identity this node uses for gimbal control."""

    target_system: int = 1
    target_component: int = 1
    source_system: int = 1
    source_component: int = 191   # MAV_COMP_ID_ONBOARD_COMPUTER
    gimbal_device_id: int = 0     # 0 = all gimbals

    def check(self) -> None:
        """Reject ids outside MAVLink's 0..255, naming the parameter."""
        for name in ("target_system", "target_component", "source_system", "source_component",
                     "gimbal_device_id"):
            value = getattr(self, name)
            if not (isinstance(value, int) and 0 <= value <= 255):
                raise Px4MessageError(f"px4_{name} must be an integer 0..255, got {value!r}")


def _timestamp(timestamp_us: int) -> int:
    if isinstance(timestamp_us, bool) or not isinstance(timestamp_us, int) or timestamp_us < 0:
        raise Px4MessageError(f"timestamp must be a non-negative integer of microseconds, "
                              f"got {timestamp_us!r}")
    return timestamp_us


# --------------------------------------------------------------------------- gimbal commands
def gimbal_manager_set_attitude(timestamp_us: int, q_flu_xyzw: Sequence[float],
                                ids: Px4Ids = Px4Ids()) -> Dict[str, object]:
    """Build a GimbalManagerSetAttitude for an attitude relative to the vehicle (REP 103 q in).

    ``flags = 0``: no ROLL/PITCH/YAW_LOCK, so PX4's gimbal manager treats all three angles as
    relative to the vehicle body (input_mavlink.cpp, _set_control_data_from_set_attitude).
    Angular velocities NaN = not commanded.  PX4 only accepts it from the primary-control
    sysid/compid (``origin_*``), which DO_GIMBAL_MANAGER_CONFIGURE sets.
    """
    ids.check()
    q = [float(v) for v in quaternion_flu_to_frd(q_flu_xyzw)]
    if not all(math.isfinite(v) for v in q):
        raise Px4MessageError(f"gimbal attitude quaternion is not finite: {q}")
    return {"timestamp": _timestamp(timestamp_us),
            "origin_sysid": ids.source_system, "origin_compid": ids.source_component,
            "target_system": ids.target_system, "target_component": ids.target_component,
            "flags": 0, "gimbal_device_id": ids.gimbal_device_id, "q": q,
            "angular_velocity_x": NAN, "angular_velocity_y": NAN, "angular_velocity_z": NAN}


def vehicle_command(timestamp_us: int, command: int, params: Sequence[float],
                    ids: Px4Ids = Px4Ids()) -> Dict[str, object]:
    """Build a VehicleCommand with seven params from this node (``from_external``)."""
    ids.check()
    if len(params) != 7:
        raise Px4MessageError(f"VehicleCommand takes 7 params, got {len(params)}")
    fields: Dict[str, object] = {"timestamp": _timestamp(timestamp_us)}
    fields.update({f"param{i}": float(v) for i, v in enumerate(params, start=1)})
    fields.update({"command": int(command),
                   "target_system": ids.target_system, "target_component": ids.target_component,
                   "source_system": ids.source_system, "source_component": ids.source_component,
                   "confirmation": 0, "from_external": True})
    return fields


def gimbal_manager_configure(timestamp_us: int, ids: Px4Ids = Px4Ids()) -> Dict[str, object]:
    """Build DO_GIMBAL_MANAGER_CONFIGURE: take primary gimbal control as source_system/component.

    param1/2 = primary sysid/compid, param3/4 = -1 (secondary control unchanged),
    param7 = gimbal device id.
    """
    return vehicle_command(timestamp_us, VEHICLE_CMD_DO_GIMBAL_MANAGER_CONFIGURE, [
        float(ids.source_system), float(ids.source_component), -1.0, -1.0, 0.0, 0.0,
        float(ids.gimbal_device_id)], ids)


def gimbal_manager_pitchyaw(timestamp_us: int, pitch: float, yaw: float,
                            ids: Px4Ids = Px4Ids()) -> Dict[str, object]:
    """Build DO_GIMBAL_MANAGER_PITCHYAW from REP 103 pitch/yaw (radians, relative to the vehicle).

    MAVLink wants degrees, pitch positive UP and yaw positive RIGHT: both signs flip.
    param3/4 (rates) NaN = not commanded, param5 = 0 flags (yaw relative to the vehicle).
    """
    if not (math.isfinite(pitch) and math.isfinite(yaw)):
        raise Px4MessageError(f"gimbal pitch/yaw must be finite, got {pitch}, {yaw}")
    px4_pitch, px4_yaw = to_px4_frd(pitch, yaw)
    return vehicle_command(timestamp_us, VEHICLE_CMD_DO_GIMBAL_MANAGER_PITCHYAW, [
        math.degrees(px4_pitch), math.degrees(px4_yaw), NAN, NAN, 0.0, 0.0,
        float(ids.gimbal_device_id)], ids)


# --------------------------------------------------------------------------- offboard yaw rate
def offboard_control_mode(timestamp_us: int) -> Dict[str, object]:
    """Build the OffboardControlMode heartbeat: velocity control only (hover and turn)."""
    return {"timestamp": _timestamp(timestamp_us), "position": False, "velocity": True,
            "acceleration": False, "attitude": False, "body_rate": False,
            "thrust_and_torque": False, "direct_actuator": False}


def trajectory_setpoint_yaw_rate(timestamp_us: int, yaw_rate: float) -> Dict[str, object]:
    """Build a TrajectorySetpoint that hovers (velocity 0, NED) and turns at a REP 103 yaw rate.

    Position, acceleration, jerk and yaw are NaN (= not controlled, PX4's convention), so
    only the zero velocity and ``yawspeed`` act; yawspeed is FRD (positive clockwise seen from
    above), hence ``-yaw_rate``.  Altitude is held by velocity only and may drift slowly.
    """
    if not math.isfinite(yaw_rate):
        raise Px4MessageError(f"yaw rate must be finite, got {yaw_rate}")
    return {"timestamp": _timestamp(timestamp_us), "position": [NAN, NAN, NAN],
            "velocity": [0.0, 0.0, 0.0], "acceleration": [NAN, NAN, NAN],
            "jerk": [NAN, NAN, NAN], "yaw": NAN, "yawspeed": -float(yaw_rate)}


def offboard_yaw_rate(last_rate: float, age_s: float, timeout_s: float) -> float:
    """Return the yaw rate to stream: the last one, or 0 (stop turning) once it is too old.

    ``age_s`` is infinite when no bearing arrived yet.
    """
    if last_rate is None or not math.isfinite(age_s) or age_s > timeout_s:
        return 0.0
    return float(last_rate)


# --------------------------------------------------------------------------- layouts
def _neutral(value) -> bool:
    """Tell whether a value means "not used" in PX4 messages: False, 0, NaN (also all-NaN)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return all(_neutral(v) for v in value)
    if isinstance(value, float) and math.isnan(value):
        return True
    return value is False or value == 0


def fit_to_layout(fields: Mapping[str, object], field_names: Iterable[str],
                  type_name: str) -> Dict[str, object]:
    """Adapt a field dict to the fields of the installed px4_msgs build of ``type_name``.

    A field the build lacks may be dropped only when its value is neutral (False/0/NaN); a
    field the dict lacks may be filled only from ``LEGACY_DEFAULTS``.  Anything else means the
    installed px4_msgs does not match the PX4 this was written for: refused, named.
    """
    names = list(field_names)
    legacy = LEGACY_DEFAULTS.get(type_name, {})
    out = {}
    for name, value in fields.items():
        if name in names:
            out[name] = value
        elif not _neutral(value):
            raise Px4MessageError(
                f"{type_name}.{name} = {value!r} is needed but the installed px4_msgs has no "
                f"such field (fields: {', '.join(names)}); build px4_msgs from the branch that "
                "matches your PX4 version")
    for name in names:
        if name not in out:
            if name not in legacy:
                raise Px4MessageError(
                    f"{type_name}.{name}: the installed px4_msgs has a field this adapter does "
                    "not know; build px4_msgs from the branch that matches your PX4 version")
            out[name] = legacy[name]
    return out


# --------------------------------------------------------------------------- gimbal attitude
@dataclass(frozen=True)
class GimbalAttitude:
    """A parsed GimbalDeviceAttitudeStatus: camera attitude relative to the vehicle, REP 103."""

    stamp_ns: int
    mounting: Mounting
    yaw_frame: str      # "vehicle", or "earth" when it was converted with delta_yaw


def yaw_frame(device_flags: int, frame: str = "auto") -> str:
    """Return the frame of a gimbal status' yaw per MAVLink: "vehicle" or "earth".

    YAW_IN_VEHICLE_FRAME (32) / YAW_IN_EARTH_FRAME (64) say it explicitly (both: invalid).
    Neither (every PX4 up to v1.16, which lacks these flags): YAW_LOCK (16) means earth frame
    for backwards compatibility, unless ``frame == "vehicle"`` (PX4's own AUX/PWM output,
    output_rc.cpp, reports servo angles relative to the vehicle but always sets YAW_LOCK).
    """
    if frame not in ATTITUDE_FRAMES:
        raise Px4MessageError(f"px4_attitude_frame must be one of {', '.join(ATTITUDE_FRAMES)}, "
                              f"got {frame!r}")
    flags = int(device_flags)
    vehicle = bool(flags & DEVICE_FLAGS_YAW_IN_VEHICLE_FRAME)
    earth = bool(flags & DEVICE_FLAGS_YAW_IN_EARTH_FRAME)
    if vehicle and earth:
        raise AttitudeError(f"gimbal status flags 0x{flags:x} set both YAW_IN_VEHICLE_FRAME and "
                            "YAW_IN_EARTH_FRAME, which MAVLink does not allow")
    if vehicle or earth:
        return "vehicle" if vehicle else "earth"
    if flags & DEVICE_FLAGS_YAW_LOCK and frame == "auto":
        return "earth"
    return "vehicle"


def _quaternion_multiply(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    """Return the Hamilton product of two (w, x, y, z) quaternions."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return np.array([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw])


def earth_to_vehicle(q_earth_wxyz: Sequence[float], delta_yaw: float) -> np.ndarray:
    """Rotate an earth-frame attitude into the vehicle frame: q_delta_yaw^-1 * q_earth.

    MAVLink defines q_earth = q_delta_yaw * q_vehicle; q_delta_yaw turns by ``delta_yaw``
    about the NED z (down) axis.
    """
    half = 0.5 * float(delta_yaw)
    q_delta_inverse = (math.cos(half), 0.0, 0.0, -math.sin(half))
    return _quaternion_multiply(q_delta_inverse, [float(v) for v in q_earth_wxyz])


def parse_gimbal_device_attitude_status(fields: Mapping[str, object],
                                        frame: str = "auto") -> GimbalAttitude:
    """Read GimbalDeviceAttitudeStatus fields as the camera attitude relative to the vehicle.

    ``q`` is the gimbal (camera, FRD axes) attitude, w, x, y, z.  An earth-frame yaw is
    converted with ``delta_yaw`` when the layout has it and it is finite (MAVLink defines it
    for exactly that), otherwise refused: this node never guesses the vehicle heading.
    """
    for name in ("timestamp", "device_flags", "q"):
        if name not in fields:
            raise Px4MessageError(f"GimbalDeviceAttitudeStatus has no field {name!r}")
    q = np.asarray(fields["q"], dtype=np.float64).reshape(-1)
    if q.shape != (4,):
        raise Px4MessageError(f"GimbalDeviceAttitudeStatus.q must have 4 elements, got {q.size}")
    which = yaw_frame(int(fields["device_flags"]), frame)
    if which == "earth":
        delta = float(fields.get("delta_yaw", NAN))
        if not math.isfinite(delta):
            raise AttitudeError(
                f"gimbal reports its yaw in the earth frame (device_flags "
                f"0x{int(fields['device_flags']):x}) and gives no finite delta_yaw to convert it "
                "to the vehicle frame; refusing it (for PX4's AUX/PWM gimbal output set "
                "px4_attitude_frame:=vehicle)")
        q = earth_to_vehicle(q, delta)
    mounting = mounting_from_quaternion(quaternion_frd_to_flu(q))
    return GimbalAttitude(stamp_ns=int(fields["timestamp"]) * 1000, mounting=mounting,
                          yaw_frame=which)
