"""Pure math that turns a saliency bearing into gimbal angles and a vehicle yaw-rate command.

No ROS types here, so the conversions are tested exactly and reused by any adapter.

Conventions (all angles in radians, all frames right-handed):

- Camera optical frame (REP 103 / sensor_msgs): x right, y down, z forward (the bearing rays
  that the saliency node publishes are unit vectors in this frame).
- Camera mounting frame ("camera_link"): x forward (optical axis), y left, z up.
- Vehicle body frame (REP 103 ``base_link``, FLU): x forward, y left, z up.
- Mounting and gimbal attitudes are roll/pitch/yaw of the camera_link frame in the body frame,
  REP 103 fixed-axis x-y-z: ``R = Rz(yaw) @ Ry(pitch) @ Rx(roll)``.  Because z is up,
  **positive pitch points the camera down** (pitch = +pi/2 looks straight down) and
  **positive yaw turns it left**.  A positive yaw rate turns the vehicle left (counter-clockwise
  seen from above).
- PX4 / MAVLink use FRD body axes: flip the sign of pitch, yaw and yaw rate (see docs/PX4.md).

For a camera on a gimbal, pass the gimbal's MEASURED attitude at the time of the camera frame as
the mounting: the bearing was measured in the camera's frame at that moment, and the returned
angles are the absolute attitude that points the optical axis at the target.  With a fixed
mounting instead of the measured one, a gimbal that obeys the command makes the next command
swing back (see ``AttitudeHistory`` and test_attention's closed-loop simulation).
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.vectors import unit_vector

# optical (x right, y down, z forward) -> camera_link (x forward, y left, z up)
OPTICAL_TO_LINK = np.array([[0.0, 0.0, 1.0],
                            [-1.0, 0.0, 0.0],
                            [0.0, -1.0, 0.0]])


class AttentionError(SkdError, ValueError):
    """A bearing or a parameter that cannot be turned into a command."""


class AttitudeError(AttentionError):
    """No trustworthy camera attitude for a bearing: none yet, too old, or in an unusable frame.

    Raised instead of guessing: a command computed on a made-up attitude points the gimbal at
    the wrong place, so the caller sends no gimbal command at all.
    """


@dataclass(frozen=True)
class Mounting:
    """Camera attitude in the body frame (REP 103 roll/pitch/yaw, radians)."""

    roll: float = 0.0
    pitch: float = 0.0
    yaw: float = 0.0


@dataclass(frozen=True)
class Limits:
    """Command limits; the pitch range is in the REP 103 sense (positive = down)."""

    pitch_min: float = math.radians(-30.0)   # 30 deg up
    pitch_max: float = math.radians(90.0)    # straight down
    yaw_min: float = -math.pi
    yaw_max: float = math.pi
    max_yaw_rate: float = math.radians(30.0)  # rad/s, magnitude
    yaw_rate_gain: float = 1.0                # (rad/s) per rad of yaw error
    yaw_deadband: float = math.radians(2.0)   # no turn below this yaw error
    min_horizontal: float = math.sin(math.radians(1.0))  # below: yaw is undefined (nadir)

    def check(self) -> None:
        """Reject inconsistent limits with a message that names the parameter."""
        if not self.pitch_min <= self.pitch_max:
            raise AttentionError(f"pitch_min {self.pitch_min} > pitch_max {self.pitch_max}")
        if not self.yaw_min <= self.yaw_max:
            raise AttentionError(f"yaw_min {self.yaw_min} > yaw_max {self.yaw_max}")
        for name in ("max_yaw_rate", "yaw_rate_gain", "yaw_deadband", "min_horizontal"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise AttentionError(f"{name} must be finite and >= 0, got {value}")


@dataclass(frozen=True)
class AttentionCommand:
    """What to send: gimbal attitude in the body frame and a vehicle yaw rate."""

    pitch: float            # gimbal pitch, REP 103 (positive = down), limited
    yaw: float              # gimbal yaw, REP 103 (positive = left), limited
    yaw_rate: float         # vehicle yaw rate, REP 103 (positive = left / CCW), limited
    direction_body: np.ndarray  # unit target direction in the body frame (FLU)
    yaw_defined: bool       # False when the target is (nearly) straight up or down
    saturated: bool         # True when any limit clipped the command


def rotation_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Return ``Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (REP 103 fixed-axis roll, pitch, yaw)."""
    cr, sr = math.cos(roll), math.sin(roll)
    cp, sp = math.cos(pitch), math.sin(pitch)
    cy, sy = math.cos(yaw), math.sin(yaw)
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    return rz @ ry @ rx


def quaternion_from_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """Quaternion (x, y, z, w) of ``rotation_rpy(roll, pitch, yaw)``, w >= 0."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    q = np.array([sr * cp * cy - cr * sp * sy,
                  cr * sp * cy + sr * cp * sy,
                  cr * cp * sy - sr * sp * cy,
                  cr * cp * cy + sr * sp * sy])
    return q if q[3] >= 0 else -q


def bearing_to_body(bearing_optical: Sequence[float], mounting: Mounting) -> np.ndarray:
    """Rotate a bearing ray from the camera optical frame into the body frame (FLU), unit."""
    ray = unit_vector(bearing_optical, 3, "bearing", AttentionError, min_norm=1e-9)
    for name in ("roll", "pitch", "yaw"):
        if not math.isfinite(getattr(mounting, name)):
            raise AttentionError(f"mounting {name} is not finite")
    rot = rotation_rpy(mounting.roll, mounting.pitch, mounting.yaw)
    return rot @ (OPTICAL_TO_LINK @ ray)


def direction_to_angles(direction_body: Sequence[float],
                        min_horizontal: float = Limits.min_horizontal):
    """Return (pitch, yaw, yaw_defined) that point camera_link's x axis along a body direction.

    Roll is always zero.  When the horizontal part of the direction is below ``min_horizontal``
    the yaw is undefined and returned as 0 with ``yaw_defined`` False.
    """
    d = unit_vector(direction_body, 3, "body direction", AttentionError, min_norm=1e-9)
    horizontal = math.hypot(d[0], d[1])
    pitch = math.atan2(-d[2], horizontal)
    if horizontal < min_horizontal:
        return pitch, 0.0, False
    return pitch, math.atan2(d[1], d[0]), True


def attention_command(bearing_optical: Sequence[float], mounting: Mounting = Mounting(),
                      limits: Limits = Limits(), hold_yaw: float = 0.0) -> AttentionCommand:
    """Gimbal pitch/yaw and a limited vehicle yaw rate that turn toward one bearing.

    ``hold_yaw`` is the gimbal yaw to keep when the target is straight below/above (yaw
    undefined); the vehicle does not turn then.
    """
    limits.check()
    d = bearing_to_body(bearing_optical, mounting)
    pitch, yaw, defined = direction_to_angles(d, limits.min_horizontal)
    if not defined:
        yaw = hold_yaw
    pitch_c = min(max(pitch, limits.pitch_min), limits.pitch_max)
    yaw_c = min(max(yaw, limits.yaw_min), limits.yaw_max)
    yaw_rate = 0.0
    rate_saturated = False
    if defined and abs(yaw) > limits.yaw_deadband:
        wanted = limits.yaw_rate_gain * yaw
        yaw_rate = min(max(wanted, -limits.max_yaw_rate), limits.max_yaw_rate)
        rate_saturated = yaw_rate != wanted
    saturated = pitch_c != pitch or yaw_c != yaw or rate_saturated
    return AttentionCommand(pitch=pitch_c, yaw=yaw_c, yaw_rate=yaw_rate, direction_body=d,
                            yaw_defined=defined, saturated=saturated)


def to_px4_frd(pitch: float, yaw: float, yaw_rate: Optional[float] = None):
    """REP 103 (FLU) gimbal pitch/yaw and yaw rate -> PX4/MAVLink FRD sign convention.

    MAVLink DO_GIMBAL_MANAGER_PITCHYAW wants pitch positive up and yaw positive right (degrees
    there; radians here), PX4 yawspeed is positive clockwise: all three flip sign.
    """
    out = (-pitch, -yaw)
    return out if yaw_rate is None else out + (-yaw_rate,)


def quaternion_flu_to_frd(q_xyzw: Sequence[float]) -> np.ndarray:
    """Quaternion of an attitude in FLU body axes -> the same attitude in FRD axes, (w, x, y, z).

    FRD = FLU with y and z negated, so the rotation axis' y, z components flip; the result is
    in PX4's (w, x, y, z) order.
    """
    x, y, z, w = (float(v) for v in q_xyzw)
    return np.array([w, x, -y, -z])


def quaternion_frd_to_flu(q_wxyz: Sequence[float]) -> np.ndarray:
    """Convert a PX4 quaternion (w, x, y, z) in FRD axes to the same attitude in FLU (x, y, z, w).

    The inverse of ``quaternion_flu_to_frd``: y and z of the rotation axis flip sign.
    """
    w, x, y, z = (float(v) for v in q_wxyz)
    return np.array([x, -y, -z, w])


def rotation_from_quaternion(q_xyzw: Sequence[float]) -> np.ndarray:
    """Rotation matrix of a quaternion (x, y, z, w); normalised first, refused when unusable."""
    x, y, z, w = unit_vector(q_xyzw, 4, "attitude quaternion", AttitudeError, min_norm=1e-6)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def rpy_from_rotation(rot: np.ndarray) -> Tuple[float, float, float]:
    """REP 103 (roll, pitch, yaw) with ``rotation_rpy(roll, pitch, yaw) == rot``.

    At pitch = +-90 deg (a nadir camera) roll and yaw turn about the same axis; roll is then
    reported as 0 and the whole turn as yaw, which rebuilds the same rotation.
    """
    pitch = math.atan2(-rot[2, 0], math.hypot(rot[0, 0], rot[1, 0]))
    if math.hypot(rot[2, 1], rot[2, 2]) < 1e-9:  # gimbal lock
        return 0.0, pitch, math.atan2(-rot[0, 1], rot[1, 1])
    return math.atan2(rot[2, 1], rot[2, 2]), pitch, math.atan2(rot[1, 0], rot[0, 0])


def mounting_from_quaternion(q_xyzw: Sequence[float]) -> Mounting:
    """Camera attitude (camera_link in the body frame, quaternion x, y, z, w) as a Mounting."""
    roll, pitch, yaw = rpy_from_rotation(rotation_from_quaternion(q_xyzw))
    return Mounting(roll=roll, pitch=pitch, yaw=yaw)


def body_to_bearing(direction_body: Sequence[float], mounting: Mounting) -> np.ndarray:
    """Return the optical-frame ray under which a body direction is seen (bearing_to_body^-1)."""
    d = unit_vector(direction_body, 3, "body direction", AttentionError, min_norm=1e-9)
    rot = rotation_rpy(mounting.roll, mounting.pitch, mounting.yaw)
    return OPTICAL_TO_LINK.T @ (rot.T @ d)  # rotations keep the unit length


def _sample_stamp(sample: Tuple[int, Mounting]) -> int:
    return sample[0]


@dataclass
class AttitudeHistory:
    """The last measured camera attitudes, to look up the one valid at a bearing's stamp.

    A bearing was measured in the camera frame at the moment the image was taken; the
    saliency node publishes it tens of milliseconds later, by which time the gimbal may have
    moved.  ``at`` therefore returns the newest sample that is NOT newer than the bearing,
    and refuses (``AttitudeError``) when there is none or it is older than the timeout.
    Stamps are integer nanoseconds on one clock (ROS time of the headers).
    """

    maxlen: int = 256
    _samples: List[Tuple[int, Mounting]] = field(default_factory=list, repr=False)

    def add(self, stamp_ns: int, mounting: Mounting) -> None:
        """Keep one sample, in stamp order (samples may arrive out of order)."""
        insort(self._samples, (stamp_ns, mounting), key=_sample_stamp)
        del self._samples[:max(0, len(self._samples) - self.maxlen)]

    def __len__(self) -> int:
        return len(self._samples)

    def at(self, stamp_ns: int, timeout_s: float) -> Mounting:
        """Attitude valid at ``stamp_ns``: newest sample at or before it, at most timeout_s old."""
        if not self._samples:
            raise AttitudeError("no camera attitude received yet")
        index = bisect_right(self._samples, stamp_ns, key=_sample_stamp)
        if index == 0:
            oldest = self._samples[0][0]
            raise AttitudeError(
                f"no camera attitude at or before the bearing stamp {stamp_ns * 1e-9:.3f} s "
                f"(oldest kept sample {oldest * 1e-9:.3f} s); clocks out of step?")
        chosen = self._samples[index - 1]
        age = (stamp_ns - chosen[0]) * 1e-9
        if age > timeout_s:
            raise AttitudeError(f"camera attitude is stale: the newest sample before the bearing "
                                f"is {age:.3f} s older than it (attitude_timeout_s {timeout_s})")
        return chosen[1]
