"""Exact tests of the bearing -> gimbal / yaw-rate math and its sign conventions."""

import math

import numpy as np
import pytest

from skd_saliency_ros.core.processes import stop_process
from skd_saliency_ros.core.attention import (AttentionError, AttitudeError, AttitudeHistory,
                                             Limits, Mounting, attention_command,
                                             bearing_to_body, body_to_bearing,
                                             direction_to_angles, mounting_from_quaternion,
                                             quaternion_flu_to_frd, quaternion_frd_to_flu,
                                             quaternion_from_rpy, rotation_from_quaternion,
                                             rotation_rpy, rpy_from_rotation, to_px4_frd)

DEG = math.pi / 180.0
FORWARD = (0.0, 0.0, 1.0)      # optical frame: z forward
RIGHT = (1.0, 0.0, 0.0)        # optical frame: x right
DOWN = (0.0, 1.0, 0.0)         # optical frame: y down


def test_level_camera_axes_map_to_body_axes():
    """Optical z/x/y = body forward / right (-y) / down (-z) for a level forward camera."""
    np.testing.assert_allclose(bearing_to_body(FORWARD, Mounting()), [1, 0, 0], atol=1e-15)
    np.testing.assert_allclose(bearing_to_body(RIGHT, Mounting()), [0, -1, 0], atol=1e-15)
    np.testing.assert_allclose(bearing_to_body(DOWN, Mounting()), [0, 0, -1], atol=1e-15)


def test_straight_ahead_with_camera_pitched_down_90_points_at_nadir():
    """Bearing on the optical axis of a nadir camera: body -z, pitch +90 deg, yaw undefined."""
    cmd = attention_command(FORWARD, Mounting(pitch=90 * DEG), Limits(), hold_yaw=0.25)
    np.testing.assert_allclose(cmd.direction_body, [0, 0, -1], atol=1e-12)
    assert cmd.pitch == pytest.approx(90 * DEG, abs=1e-12)
    assert not cmd.yaw_defined
    assert cmd.yaw == 0.25           # held, not invented
    assert cmd.yaw_rate == 0.0       # vehicle does not turn toward a target below it
    assert not cmd.saturated


def test_nadir_camera_image_top_is_body_forward():
    """For a camera pitched down 90 deg, the image's up direction (-y optical) is forward."""
    up_in_image = (0.0, -1.0, 0.0)
    np.testing.assert_allclose(bearing_to_body(up_in_image, Mounting(pitch=90 * DEG)),
                               [1, 0, 0], atol=1e-12)


def test_target_right_of_image_turns_right_with_negative_rep103_yaw():
    """A ray 30 deg to the right: yaw -30 deg (REP 103), negative yaw rate, PX4 yaw +30 deg."""
    ray = (math.sin(30 * DEG), 0.0, math.cos(30 * DEG))
    limits = Limits(yaw_rate_gain=0.5, max_yaw_rate=10.0)
    cmd = attention_command(ray, Mounting(), limits)
    assert cmd.yaw == pytest.approx(-30 * DEG, abs=1e-12)
    assert cmd.pitch == pytest.approx(0.0, abs=1e-12)
    assert cmd.yaw_rate == pytest.approx(-15 * DEG, abs=1e-12)
    px4_pitch, px4_yaw, px4_rate = to_px4_frd(cmd.pitch, cmd.yaw, cmd.yaw_rate)
    assert px4_yaw == pytest.approx(30 * DEG) and px4_rate == pytest.approx(15 * DEG)
    assert px4_pitch == pytest.approx(0.0, abs=1e-12)


def test_target_low_in_image_pitches_down_positive():
    """A ray 20 deg below the optical axis of a camera pitched down 10 deg: pitch 30 deg."""
    ray = (0.0, math.sin(20 * DEG), math.cos(20 * DEG))
    cmd = attention_command(ray, Mounting(pitch=10 * DEG))
    assert cmd.pitch == pytest.approx(30 * DEG, abs=1e-12)
    assert cmd.yaw == pytest.approx(0.0, abs=1e-12)
    assert cmd.yaw_rate == 0.0
    assert to_px4_frd(cmd.pitch, cmd.yaw)[0] == pytest.approx(-30 * DEG)  # MAVLink: down < 0


def test_mounting_yaw_and_roll():
    """A camera yawed 90 deg looks left (+y); rolled +90 deg its image right looks down."""
    np.testing.assert_allclose(bearing_to_body(FORWARD, Mounting(yaw=90 * DEG)), [0, 1, 0],
                               atol=1e-12)
    # Rx(+90 deg) maps camera_link -y (image right) to body -z.
    np.testing.assert_allclose(bearing_to_body(RIGHT, Mounting(roll=90 * DEG)), [0, 0, -1],
                               atol=1e-12)


def test_limits_clip_and_flag_saturation():
    """Pitch, yaw and yaw rate are clipped to their limits and the command says so."""
    limits = Limits(pitch_min=-10 * DEG, pitch_max=45 * DEG, yaw_min=-20 * DEG,
                    yaw_max=20 * DEG, max_yaw_rate=5 * DEG, yaw_rate_gain=1.0)
    cmd = attention_command(FORWARD, Mounting(pitch=80 * DEG, yaw=-60 * DEG), limits)
    assert cmd.pitch == pytest.approx(45 * DEG)
    assert cmd.yaw == pytest.approx(-20 * DEG)
    assert cmd.yaw_rate == pytest.approx(-5 * DEG)
    assert cmd.saturated
    up = attention_command(FORWARD, Mounting(pitch=-40 * DEG), limits)
    assert up.pitch == pytest.approx(-10 * DEG) and up.saturated


def test_deadband_suppresses_small_turns():
    """Yaw errors inside the deadband give a zero rate, outside a proportional one."""
    limits = Limits(yaw_deadband=3 * DEG, yaw_rate_gain=2.0, max_yaw_rate=1.0)
    small = attention_command(FORWARD, Mounting(yaw=2 * DEG), limits)
    assert small.yaw_rate == 0.0 and small.yaw == pytest.approx(2 * DEG)
    big = attention_command(FORWARD, Mounting(yaw=4 * DEG), limits)
    assert big.yaw_rate == pytest.approx(8 * DEG)


def test_unnormalised_bearing_gives_same_command():
    """Only the direction of the ray matters."""
    a = attention_command((0.2, -0.1, 1.0), Mounting(pitch=0.3))
    b = attention_command((2.0, -1.0, 10.0), Mounting(pitch=0.3))
    assert a.pitch == pytest.approx(b.pitch) and a.yaw == pytest.approx(b.yaw)


def test_angles_round_trip_through_rotation():
    """The returned angles rotate camera_link's x axis onto the body direction."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        pitch, yaw, defined = direction_to_angles(d)
        assert defined
        np.testing.assert_allclose(rotation_rpy(0.0, pitch, yaw)[:, 0], d, atol=1e-12)


def test_quaternions_match_rotation_and_px4_frame():
    """quaternion_from_rpy matches rotation_rpy; the FRD conversion flips pitch and yaw."""
    roll, pitch, yaw = 0.1, 0.7, -1.2
    x, y, z, w = quaternion_from_rpy(roll, pitch, yaw)
    rot = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                    [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                    [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    np.testing.assert_allclose(rot, rotation_rpy(roll, pitch, yaw), atol=1e-12)
    # FRD attitude of (roll, pitch, yaw) FLU is (roll, -pitch, -yaw) FRD
    expected = quaternion_from_rpy(roll, -pitch, -yaw)
    w2, x2, y2, z2 = quaternion_flu_to_frd((x, y, z, w))
    np.testing.assert_allclose([x2, y2, z2, w2], expected, atol=1e-12)


@pytest.mark.parametrize("ray", [(0, 0, 0), (float("nan"), 0, 1), (1, 2)])
def test_bad_bearing_is_a_clear_error(ray):
    """Zero, non-finite or wrongly sized rays are refused."""
    with pytest.raises(AttentionError, match="bearing"):
        attention_command(ray)


def test_huge_bearings_keep_their_direction():
    """The norm of (3e200, -1e200, 1e201) overflowed to inf: a zero ray and a NaN command."""
    a = attention_command((0.3, -0.1, 1.0), Mounting(pitch=0.3))
    b = attention_command((3e200, -1e200, 1e201), Mounting(pitch=0.3))
    assert (b.pitch, b.yaw) == pytest.approx((a.pitch, a.yaw), abs=1e-12)
    np.testing.assert_allclose(np.linalg.norm(b.direction_body), 1.0, atol=1e-12)
    np.testing.assert_allclose(body_to_bearing((1e300, 1e300, 0.0), Mounting()),
                               body_to_bearing((1.0, 1.0, 0.0), Mounting()), atol=1e-12)


@pytest.mark.parametrize("direction", [(0, 0, 0), (float("nan"), 0, 1), (1, 2)])
def test_direction_without_a_direction_is_refused(direction):
    """A zero or non-finite body direction gave NaN angles; it is refused like a bad bearing."""
    with pytest.raises(AttentionError, match="direction"):
        direction_to_angles(direction)
    with pytest.raises(AttentionError, match="direction"):
        body_to_bearing(direction, Mounting())


def test_bad_limits_are_a_clear_error():
    """Inverted ranges and negative rates name the offending parameter."""
    with pytest.raises(AttentionError, match="pitch_min"):
        attention_command(FORWARD, limits=Limits(pitch_min=1.0, pitch_max=0.0))
    with pytest.raises(AttentionError, match="max_yaw_rate"):
        attention_command(FORWARD, limits=Limits(max_yaw_rate=-1.0))


def test_frd_quaternion_reads_back_as_rep103():
    """PX4 (w, x, y, z) FRD of (roll, -pitch, -yaw) is REP 103 (roll, pitch, yaw), exactly."""
    roll, pitch, yaw = 0.2, 0.9, -0.4
    x, y, z, w = quaternion_from_rpy(roll, -pitch, -yaw)   # the same attitude in FRD terms
    np.testing.assert_allclose(quaternion_frd_to_flu((w, x, y, z)),
                               quaternion_from_rpy(roll, pitch, yaw), atol=1e-15)
    m = mounting_from_quaternion(quaternion_frd_to_flu((w, x, y, z)))
    assert (m.roll, m.pitch, m.yaw) == pytest.approx((roll, pitch, yaw), abs=1e-12)


@pytest.mark.parametrize("rpy", [(0.1, 0.7, -1.2), (0.0, 90 * DEG, 0.3), (0.2, -90 * DEG, 0.3),
                                 (3.0, 0.1, 3.1), (0.0, 45 * DEG, 0.0)])
def test_rpy_from_quaternion_rebuilds_the_rotation(rpy):
    """Also at the nadir gimbal lock, where roll and yaw turn about one axis."""
    rot = rotation_from_quaternion(quaternion_from_rpy(*rpy))
    np.testing.assert_allclose(rot, rotation_rpy(*rpy), atol=1e-12)
    np.testing.assert_allclose(rotation_rpy(*rpy_from_rotation(rot)), rot, atol=1e-12)
    m = mounting_from_quaternion(2.5 * quaternion_from_rpy(*rpy))  # scale does not matter
    np.testing.assert_allclose(rotation_rpy(m.roll, m.pitch, m.yaw), rot, atol=1e-12)


@pytest.mark.parametrize("q", [(0, 0, 0, 0), (float("nan"), 0, 0, 1), (0, 0, 1)])
def test_unusable_attitude_quaternion_is_refused(q):
    """No rotation is invented from a zero, non-finite or short quaternion."""
    with pytest.raises(AttitudeError, match="quaternion"):
        mounting_from_quaternion(q)


def test_body_to_bearing_inverts_bearing_to_body():
    """The simulated camera sees a body direction under the ray that maps back onto it."""
    mounting = Mounting(roll=0.1, pitch=0.5, yaw=-0.3)
    d = np.array([0.6, -0.3, -0.74])
    d /= np.linalg.norm(d)
    np.testing.assert_allclose(bearing_to_body(body_to_bearing(d, mounting), mounting), d,
                               atol=1e-12)


def test_attitude_history_picks_the_sample_not_newer_than_the_bearing():
    """Newest sample at or before the stamp; none before, or too old: AttitudeError."""
    history = AttitudeHistory(maxlen=4)
    with pytest.raises(AttitudeError, match="no camera attitude received"):
        history.at(10, 1.0)
    s = 1_000_000_000
    for t, pitch in ((1 * s, 0.1), (3 * s, 0.3), (2 * s, 0.2)):  # out of order on purpose
        history.add(t, Mounting(pitch=pitch))
    assert history.at(2 * s + 5, 1.0).pitch == 0.2       # not the newer 0.3
    assert history.at(3 * s, 1.0).pitch == 0.3           # same stamp counts
    with pytest.raises(AttitudeError, match="at or before"):
        history.at(s - 1, 1.0)
    with pytest.raises(AttitudeError, match="stale"):
        history.at(5 * s, 1.0)                           # 2 s after the newest sample
    for t in (4, 5, 6):
        history.add(t * s, Mounting(pitch=t / 10))
    assert len(history) == 4
    with pytest.raises(AttitudeError, match="at or before"):
        history.at(2 * s, 10.0)                          # 1 s and 2 s were dropped


def _simulate_gimbal(target_body, steps, feedback, mount_pitch):
    """Simulate a gimbal that moves exactly to each command, a target fixed in the body frame.

    With ``feedback`` the command uses the gimbal's measured attitude, otherwise the static
    mount_pitch (the old behaviour).  Returns the commanded pitches in degrees.
    """
    gimbal = Mounting(pitch=mount_pitch)
    commanded = []
    for _ in range(steps):
        ray = body_to_bearing(target_body, gimbal)          # what the camera sees now
        mounting = gimbal if feedback else Mounting(pitch=mount_pitch)
        cmd = attention_command(ray, mounting)
        commanded.append(round(math.degrees(cmd.pitch), 9))
        gimbal = Mounting(pitch=cmd.pitch, yaw=cmd.yaw)     # the gimbal obeys
    return commanded


def test_closed_loop_with_measured_attitude_converges_and_stays():
    """Target 20 deg below a 45 deg camera: feedback 65, 65, 65; static mount 65, 45, 65, 45."""
    target = rotation_rpy(0.0, 65 * DEG, 0.0)[:, 0]         # fixed in the body frame
    assert _simulate_gimbal(target, 4, feedback=True, mount_pitch=45 * DEG) == [65.0] * 4
    # the old bug, documented: once centred the static mounting swings the command back
    assert _simulate_gimbal(target, 4, feedback=False, mount_pitch=45 * DEG) == \
        [65.0, 45.0, 65.0, 45.0]


def test_closed_loop_yaw_converges_too():
    """A target 40 deg right and 30 deg down: the feedback command settles in one step."""
    target = rotation_rpy(0.0, 30 * DEG, -40 * DEG)[:, 0]
    gimbal = Mounting(pitch=10 * DEG)
    for _ in range(3):
        cmd = attention_command(body_to_bearing(target, gimbal), gimbal)
        gimbal = Mounting(pitch=cmd.pitch, yaw=cmd.yaw)
        assert (cmd.pitch, cmd.yaw) == pytest.approx((30 * DEG, -40 * DEG), abs=1e-12)


# --------------------------------------------------------------------------- the adapter node
def test_adapter_parameter_table_refuses_bad_values_with_their_name():
    """The adapter's ParamTable: defaults pass; each bad value is refused, naming the parameter."""
    from skd_saliency_ros.ros.attention_node import ATTENTION_PARAMS, attention_settings_from

    defaults = ATTENTION_PARAMS.defaults()
    assert ATTENTION_PARAMS.validate(defaults) is None
    for name, value, text in (
            ("pitch_min_deg", 100.0, "pitch_min"),
            ("yaw_deadband_deg", -1.0, "yaw_deadband must be finite and >= 0"),
            ("attitude_source", "imu", "attitude_source must be one of"),
            ("px4_output", "servo", "px4_output must be one of"),
            ("px4_attitude_frame", "earth", "px4_attitude_frame must be one of"),
            ("px4_offboard_rate_hz", 1.0, "px4_offboard_rate_hz must be >= 2"),
            ("px4_source_component", 300, "px4_source_component must be an integer 0..255"),
            ("attitude_timeout_s", float("nan"), "attitude_timeout_s must be finite and > 0"),
            ("yaw_rate_timeout_s", 0.0, "yaw_rate_timeout_s must be finite and > 0"),
            ("mount_pitch_deg", "down", "mount_pitch_deg must be a number"),
            ("mount_pitch_deg", True, "mount_pitch_deg must be a number")):
        reason = ATTENTION_PARAMS.validate({**defaults, name: value})
        assert reason and text in reason, (name, value, reason)
    assert "read-only" in ATTENTION_PARAMS.refuse_change(defaults, {"body_frame": "odom"})
    assert "pitch_min" in ATTENTION_PARAMS.refuse_change(defaults, {"pitch_min_deg": 100.0})
    assert ATTENTION_PARAMS.refuse_change(defaults, {"use_sim_time": True}) is None
    settings = attention_settings_from({**defaults, "mount_pitch_deg": 90})  # an integer
    assert settings.mounting.pitch == pytest.approx(90 * DEG)
    assert settings.limits.pitch_max == pytest.approx(90 * DEG)


def _start_node(ros_env, *ros_args):
    import subprocess
    import sys
    from pathlib import Path
    return subprocess.Popen(
        [sys.executable, "-m", "skd_saliency_ros.ros.attention_node", "--ros-args",
         "-r", "bearings:=/saliency_node/bearings", *ros_args],
        env=ros_env, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)


def test_adapter_node_publishes_angles_and_yaw_rate(ros_env, monkeypatch):
    """A real attention_to_setpoint process: nadir camera, target at the image's right edge."""
    import time

    import rclpy
    import rclpy.executors
    from geometry_msgs.msg import Pose, PoseArray, QuaternionStamped, TwistStamped
    from geometry_msgs.msg import Vector3Stamped
    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE"):
        monkeypatch.setenv(key, ros_env[key])
    proc = _start_node(ros_env, "-p", "mount_pitch_deg:=90", "-p", "max_yaw_rate_deg_s:=30.0")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("attention_test", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    got = {"angles": [], "attitude": [], "rate": []}
    try:
        node.create_subscription(Vector3Stamped, "/attention_to_setpoint/gimbal_angles",
                                 got["angles"].append, 10)
        node.create_subscription(QuaternionStamped, "/attention_to_setpoint/gimbal_attitude",
                                 got["attitude"].append, 10)
        node.create_subscription(TwistStamped, "/attention_to_setpoint/yaw_rate",
                                 got["rate"].append, 10)
        pub = node.create_publisher(PoseArray, "/saliency_node/bearings", 10)
        deadline = time.monotonic() + 60
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0]
            executor.spin_once(timeout_sec=0.1)
        assert pub.get_subscription_count() > 0, "attention_to_setpoint never subscribed"

        def send(rays):
            msg = PoseArray()
            msg.header.frame_id = "camera_optical_frame"
            msg.header.stamp.sec = 42
            for ray in rays:
                pose = Pose()
                pose.position.x, pose.position.y, pose.position.z = ray
                msg.poses.append(pose)
            n = len(got["rate"])
            end = time.monotonic() + 20
            while len(got["rate"]) == n and time.monotonic() < end:
                pub.publish(msg)
                for _ in range(5):
                    executor.spin_once(timeout_sec=0.05)
            assert len(got["rate"]) > n, "no answer from attention_to_setpoint"

        right = (math.sin(30 * DEG), 0.0, math.cos(30 * DEG))  # 30 deg right in the image
        send([right, FORWARD])  # the first ray is the strongest peak
        angles = got["angles"][-1]
        assert angles.header.frame_id == "base_link" and angles.header.stamp.sec == 42
        # nadir camera: image right = body right; the target is 60 deg below the horizon
        assert angles.vector.x == 0.0
        assert angles.vector.y == pytest.approx(60 * DEG, abs=1e-9)
        assert angles.vector.z == pytest.approx(-90 * DEG, abs=1e-9)
        assert got["rate"][-1].twist.angular.z == pytest.approx(-30 * DEG, abs=1e-9)
        q = got["attitude"][-1].quaternion
        np.testing.assert_allclose([q.x, q.y, q.z, q.w],
                                   quaternion_from_rpy(0.0, 60 * DEG, -90 * DEG), atol=1e-9)
        send([])  # nothing salient: stop turning
        assert got["rate"][-1].twist.angular.z == 0.0

        # run-time parameters: inconsistent limits are refused with a reason, mounting applies
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters
        client = node.create_client(SetParameters, "/attention_to_setpoint/set_parameters")
        assert client.wait_for_service(timeout_sec=30)

        def set_param(name, value):
            req = SetParameters.Request(parameters=[Parameter(name=name, value=ParameterValue(
                type=ParameterType.PARAMETER_DOUBLE, double_value=value))])
            future = client.call_async(req)
            executor.spin_until_future_complete(future, timeout_sec=30)
            return future.result().results[0]

        refused = set_param("pitch_min_deg", 100.0)
        assert not refused.successful and "pitch_min" in refused.reason
        assert set_param("mount_pitch_deg", 0.0).successful
        send([FORWARD])
        assert got["angles"][-1].vector.y == pytest.approx(0.0, abs=1e-12)
        assert got["angles"][-1].vector.z == pytest.approx(0.0, abs=1e-12)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        stop_process(proc, timeout=10)


@pytest.mark.parametrize("param", ["px4_output:=pitchyaw_command", "attitude_source:=px4",
                                   "px4_offboard_enable:=true"])
def test_adapter_node_px4_parts_without_px4_msgs_fail_clearly(ros_env, param):
    """Each px4_msgs part needs px4_msgs: one clear fatal line and exit code 1 (it is absent)."""
    try:
        import px4_msgs  # noqa: F401
        pytest.skip("px4_msgs is installed here; this test covers its absence")
    except ImportError:
        pass
    proc = _start_node(ros_env, "-p", param)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert "needs the px4_msgs package" in out


def test_warnings_are_throttled_per_kind_of_problem():
    """The same problem (numbers aside) is logged once per period; a new one at once."""
    from skd_saliency_ros.ros.throttle import WarnThrottle

    class Logger:
        def __init__(self):
            self.lines = []

        def warning(self, text):
            self.lines.append(text)

    logger = Logger()
    warn = WarnThrottle(logger, period_s=60.0)
    warn("no camera attitude received yet")
    warn("camera attitude is stale: 2.000 s older")
    warn("camera attitude is stale: 3.500 s older")
    warn("no camera attitude received yet")
    assert logger.lines == ["no camera attitude received yet",
                            "camera attitude is stale: 2.000 s older"]
    warn.period_s = 0.0  # the next line of a kind says how many were suppressed
    warn("camera attitude is stale: 9.000 s older")
    assert logger.lines[-1] == "camera attitude is stale: 9.000 s older (1 similar messages " \
                               "suppressed)"


def test_adapter_node_bad_attitude_parameters_fail_clearly(ros_env):
    """An unknown attitude_source or an offboard rate below PX4's 2 Hz stops the node."""
    for param, text in (("attitude_source:=imu", "attitude_source must be one of"),
                        ("px4_offboard_rate_hz:=1.0", "px4_offboard_rate_hz must be >= 2")):
        proc = _start_node(ros_env, "-p", param)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 1 and text in out, out


def test_adapter_node_topic_attitude_closes_the_loop(ros_env, monkeypatch):
    """Real node, attitude_source topic: 45 -> 65 deg, then it STAYS at 65 once centred.

    Also: the sample not newer than the bearing is used, a stale attitude gives no gimbal
    command (yaw rate 0 and a warning), and ~/offboard_enable refuses without px4_msgs.
    """
    import sys
    import time
    from pathlib import Path

    import rclpy
    import rclpy.executors
    from geometry_msgs.msg import Pose, PoseArray, QuaternionStamped, TwistStamped
    from geometry_msgs.msg import Vector3Stamped
    from std_srvs.srv import SetBool

    from skd_saliency_ros.core.processes import LoggedProcess

    for key in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE"):
        monkeypatch.setenv(key, ros_env[key])
    node_proc = LoggedProcess(
        [sys.executable, "-m", "skd_saliency_ros.ros.attention_node", "--ros-args",
         "-r", "bearings:=/saliency_node/bearings", "-r", "gimbal_attitude_in:=/gimbal/attitude",
         "-p", "attitude_source:=topic", "-p", "attitude_timeout_s:=0.5"],
        ros_env, cwd=Path(__file__).resolve().parents[1])
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("attention_topic_test", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    angles, rates = [], []
    try:
        node.create_subscription(Vector3Stamped, "/attention_to_setpoint/gimbal_angles",
                                 angles.append, 10)
        node.create_subscription(TwistStamped, "/attention_to_setpoint/yaw_rate",
                                 rates.append, 10)
        pub_bearings = node.create_publisher(PoseArray, "/saliency_node/bearings", 10)
        pub_attitude = node.create_publisher(QuaternionStamped, "/gimbal/attitude", 10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (pub_bearings.get_subscription_count() == 0
                                               or pub_attitude.get_subscription_count() == 0):
            assert node_proc.alive(), node_proc.output
            executor.spin_once(timeout_sec=0.1)
        assert pub_attitude.get_subscription_count() > 0, "node never subscribed"

        def attitude(sec, pitch_deg):
            msg = QuaternionStamped()
            msg.header.stamp.sec, msg.header.frame_id = sec, "base_link"
            (msg.quaternion.x, msg.quaternion.y, msg.quaternion.z,
             msg.quaternion.w) = (float(v) for v in quaternion_from_rpy(0, pitch_deg * DEG, 0))
            return msg

        def bearing(sec, nanosec, ray):
            msg = PoseArray()
            msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = ray
            msg.poses.append(pose)
            return msg

        def send(outputs, *msgs):
            n = len(outputs)
            end = time.monotonic() + 10
            while len(outputs) == n and time.monotonic() < end:
                pub_attitude.publish(msgs[0])  # first the attitude, then the bearing
                executor.spin_once(timeout_sec=0.05)
                for msg in msgs[1:]:
                    pub_bearings.publish(msg)
                for _ in range(4):
                    executor.spin_once(timeout_sec=0.05)
            assert len(outputs) > n, f"no answer; node says: {node_proc.tail()}"

        below_20 = (0.0, math.sin(20 * DEG), math.cos(20 * DEG))  # 20 deg below the axis
        send(angles, attitude(100, 45.0), bearing(100, 100_000_000, below_20))
        assert angles[-1].vector.y == pytest.approx(65 * DEG, abs=1e-6)
        # the gimbal moved to 65 at t=101 and the target is centred: the command STAYS at 65
        # (a static 45 deg mounting would swing back to 45; the t=100 sample is too old here)
        send(angles, attitude(101, 65.0), bearing(101, 100_000_000, FORWARD))
        assert angles[-1].vector.y == pytest.approx(65 * DEG, abs=1e-6)
        assert angles[-1].vector.z == pytest.approx(0.0, abs=1e-9)
        # a late bearing taken at t=100.5 uses the 45 deg sample, not the newer 65 one (85)
        send(angles, attitude(101, 65.0), bearing(100, 500_000_000, below_20))
        assert angles[-1].vector.y == pytest.approx(65 * DEG, abs=1e-6)

        # stale: 2 s after the newest attitude (timeout 0.5 s) -> no gimbal command
        count = len(angles)
        send(rates, attitude(101, 65.0), bearing(103, 0, FORWARD))
        assert rates[-1].twist.angular.z == 0.0
        for _ in range(6):
            executor.spin_once(timeout_sec=0.05)
        assert len(angles) == count
        assert node_proc.wait_for_line("camera attitude is stale", timeout=5), node_proc.output

        client = node.create_client(SetBool, "/attention_to_setpoint/offboard_enable")
        assert client.wait_for_service(timeout_sec=10)
        future = client.call_async(SetBool.Request(data=True))
        executor.spin_until_future_complete(future, timeout_sec=10)
        assert not future.result().success
        assert "needs the px4_msgs package" in future.result().message
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        node_proc.stop(timeout=10)
