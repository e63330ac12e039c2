"""The px4_msgs field dicts of core/px4_messages.py against PX4's real message definitions.

px4_msgs cannot be installed here, so the message classes are built from PX4's own .msg files
(vendored in test/vendored_px4_msgs, PX4-Autopilot main; see its README) with rosbags'
typestore.  Every dict the adapter sends must set exactly the real fields, with the right
types, ranges and array lengths; it is then instantiated, serialised to CDR and read back.
The parsing side reads a serialised GimbalDeviceAttitudeStatus back into a camera attitude.
Older layouts (PX4 v1.15), transcribed from docs.px4.io, check the layout adaptation.
"""

import math
from pathlib import Path

import numpy as np
import pytest
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from skd_saliency_ros.core.attention import (AttitudeError, Mounting, quaternion_flu_to_frd,
                                             quaternion_from_rpy)
from skd_saliency_ros.core.px4_messages import (
    DEVICE_FLAGS_YAW_IN_EARTH_FRAME, DEVICE_FLAGS_YAW_IN_VEHICLE_FRAME, DEVICE_FLAGS_YAW_LOCK,
    VEHICLE_CMD_DO_GIMBAL_MANAGER_CONFIGURE, VEHICLE_CMD_DO_GIMBAL_MANAGER_PITCHYAW, Px4Ids,
    Px4MessageError, fit_to_layout, gimbal_manager_configure, gimbal_manager_pitchyaw,
    gimbal_manager_set_attitude, offboard_control_mode, offboard_yaw_rate,
    parse_gimbal_device_attitude_status, trajectory_setpoint_yaw_rate, yaw_frame)

DEG = math.pi / 180.0
VENDORED = Path(__file__).resolve().parent / "vendored_px4_msgs"
#: exact lengths of the upstream texts (see the README there): an edited copy fails here
UPSTREAM_CHARS = {"GimbalDeviceAttitudeStatus": 599, "GimbalManagerSetAttitude": 516,
                  "OffboardControlMode": 205, "TrajectorySetpoint": 637,
                  "VehicleCommand": 24391}

#: PX4 v1.15 layouts that differ from the vendored ones, transcribed from
#: https://docs.px4.io/v1.15/en/msg_docs/OffboardControlMode (also v1.14) and
#: https://docs.px4.io/v1.15/en/msg_docs/GimbalDeviceAttitudeStatus (also v1.14).
V115 = {
    "OffboardControlMode": """
uint64 timestamp
bool position
bool velocity
bool acceleration
bool attitude
bool body_rate
bool actuator
""",
    "GimbalDeviceAttitudeStatus": """
uint64 timestamp
uint8 target_system
uint8 target_component
uint16 device_flags
uint16 DEVICE_FLAGS_RETRACT = 1
uint16 DEVICE_FLAGS_NEUTRAL = 2
uint16 DEVICE_FLAGS_ROLL_LOCK = 4
uint16 DEVICE_FLAGS_PITCH_LOCK = 8
uint16 DEVICE_FLAGS_YAW_LOCK = 16
float32[4] q
float32 angular_velocity_x
float32 angular_velocity_y
float32 angular_velocity_z
uint32 failure_flags
bool received_from_mavlink
""",
}

INT_RANGES = {f"{sign}int{bits}": ((0, 2 ** bits - 1) if sign == "u"
                                   else (-2 ** (bits - 1), 2 ** (bits - 1) - 1))
              for sign in ("u", "") for bits in (8, 16, 32, 64)}


def _load(texts):
    store = get_typestore(Stores.EMPTY)
    types = {}
    for name, text in texts.items():
        types.update(get_types_from_msg(text, f"px4_msgs/msg/{name}"))
    store.register(types)
    return store, types


@pytest.fixture(scope="module")
def px4():
    """Typestore and definitions of the vendored (PX4 main) message files."""
    return _load({p.stem: p.read_text() for p in sorted(VENDORED.glob("*.msg"))})


@pytest.fixture(scope="module")
def px4_v115():
    """Typestore and definitions of the PX4 v1.15 layouts that differ."""
    return _load(V115)


def field_specs(types, name):
    """Return {field: (base type, array length or None)} of one message definition."""
    specs = {}
    for field, (kind, detail) in types[f"px4_msgs/msg/{name}"][1]:
        if kind.name == "BASE":
            specs[field] = (detail[0], None)
        elif kind.name == "ARRAY":
            specs[field] = (detail[0][1][0], detail[1])
        else:
            raise AssertionError(f"{name}.{field}: unexpected field kind {kind}")
    return specs


def check_value(where, base, value):
    """Fail unless ``value`` is a Python value of exactly PX4's field type and range."""
    if base == "bool":
        assert isinstance(value, bool), f"{where}: {value!r} is not a bool"
    elif base in INT_RANGES:
        assert isinstance(value, int) and not isinstance(value, bool), \
            f"{where}: {value!r} is not an int"
        low, high = INT_RANGES[base]
        assert low <= value <= high, f"{where}: {value} outside {base}"
    elif base in ("float32", "float64"):
        assert isinstance(value, float), f"{where}: {value!r} is not a float"
    else:
        raise AssertionError(f"{where}: unexpected type {base}")


def check_fields(types, name, fields):
    """Fail unless the dict sets every field of the definition, and only those, correctly."""
    specs = field_specs(types, name)
    assert set(fields) == set(specs), (
        f"{name}: missing {sorted(set(specs) - set(fields))}, "
        f"unknown {sorted(set(fields) - set(specs))}")
    for field, (base, length) in specs.items():
        value = fields[field]
        if length is None:
            check_value(f"{name}.{field}", base, value)
        else:
            assert isinstance(value, (list, tuple)) and len(value) == length, \
                f"{name}.{field}: {value!r} is not {length} values"
            for i, item in enumerate(value):
                check_value(f"{name}.{field}[{i}]", base, item)


def instantiate(store, types, name, fields):
    """Build the rosbags message object (arrays as numpy arrays of the field's dtype)."""
    specs = field_specs(types, name)
    kwargs = {k: (np.array(v, dtype=np.dtype(specs[k][0])) if k in specs and specs[k][1]
                  else v) for k, v in fields.items()}
    return store.types[f"px4_msgs/msg/{name}"](**kwargs)


def round_trip(store, types, name, fields):
    """Check, instantiate, serialise to CDR and deserialise; return the message read back."""
    check_fields(types, name, fields)
    typename = f"px4_msgs/msg/{name}"
    raw = store.serialize_cdr(instantiate(store, types, name, fields), typename)
    back = store.deserialize_cdr(raw, typename)
    for field, (base, _) in field_specs(types, name).items():
        got = np.asarray(getattr(back, field), dtype=np.float64)
        want = np.asarray(fields[field], dtype=np.dtype(base) if base.startswith("float")
                          else np.float64).astype(np.float64)
        np.testing.assert_array_equal(got, want, err_msg=f"{name}.{field}")
    return back


# --------------------------------------------------------------------------- vendored texts
def test_vendored_definitions_are_the_upstream_texts(px4):
    """The five files are complete (upstream lengths) and parse to the fields PX4 documents."""
    for name, chars in UPSTREAM_CHARS.items():
        assert len((VENDORED / f"{name}.msg").read_text()) == chars, name
    _, types = px4
    assert list(field_specs(types, "VehicleCommand"))[-7:] == [
        "command", "target_system", "target_component", "source_system", "source_component",
        "confirmation", "from_external"]
    assert field_specs(types, "VehicleCommand")["source_component"] == ("uint16", None)
    assert field_specs(types, "GimbalManagerSetAttitude")["q"] == ("float32", 4)
    consts = {c[0]: c[2] for c in types["px4_msgs/msg/VehicleCommand"][0]}
    assert consts["VEHICLE_CMD_DO_GIMBAL_MANAGER_PITCHYAW"] == \
        VEHICLE_CMD_DO_GIMBAL_MANAGER_PITCHYAW
    assert consts["VEHICLE_CMD_DO_GIMBAL_MANAGER_CONFIGURE"] == \
        VEHICLE_CMD_DO_GIMBAL_MANAGER_CONFIGURE
    flags = {c[0]: c[2] for c in types["px4_msgs/msg/GimbalDeviceAttitudeStatus"][0]}
    assert (flags["DEVICE_FLAGS_YAW_LOCK"], flags["DEVICE_FLAGS_YAW_IN_VEHICLE_FRAME"],
            flags["DEVICE_FLAGS_YAW_IN_EARTH_FRAME"]) == (
        DEVICE_FLAGS_YAW_LOCK, DEVICE_FLAGS_YAW_IN_VEHICLE_FRAME,
        DEVICE_FLAGS_YAW_IN_EARTH_FRAME)


# --------------------------------------------------------------------------- what is sent
IDS = Px4Ids(target_system=1, target_component=1, source_system=1, source_component=191,
             gimbal_device_id=154)


def test_gimbal_manager_set_attitude_round_trips(px4):
    """FRD quaternion w, x, y, z; flags 0 (vehicle-relative); ids; no angular velocity."""
    store, types = px4
    q_flu = quaternion_from_rpy(0.0, 30 * DEG, -40 * DEG)
    fields = gimbal_manager_set_attitude(1_234_567, q_flu, IDS)
    back = round_trip(store, types, "GimbalManagerSetAttitude", fields)
    expected = quaternion_from_rpy(0.0, -30 * DEG, 40 * DEG)  # FRD: pitch, yaw flip
    np.testing.assert_allclose(back.q, [expected[3], *expected[:3]], atol=1e-7)
    assert (back.origin_sysid, back.origin_compid, back.gimbal_device_id) == (1, 191, 154)
    assert back.flags == 0 and math.isnan(back.angular_velocity_z)
    assert back.timestamp == 1_234_567


def test_gimbal_manager_commands_round_trip(px4):
    """CONFIGURE takes primary control; PITCHYAW has MAVLink degrees, up and right positive."""
    store, types = px4
    configure = round_trip(store, types, "VehicleCommand", gimbal_manager_configure(5, IDS))
    assert configure.command == VEHICLE_CMD_DO_GIMBAL_MANAGER_CONFIGURE
    assert (configure.param1, configure.param2, configure.param3, configure.param4) == \
        (1.0, 191.0, -1.0, -1.0)
    assert configure.param7 == 154.0 and configure.from_external
    pitchyaw = round_trip(store, types, "VehicleCommand",
                          gimbal_manager_pitchyaw(6, 65 * DEG, -30 * DEG, IDS))
    assert pitchyaw.command == VEHICLE_CMD_DO_GIMBAL_MANAGER_PITCHYAW
    assert pitchyaw.param1 == pytest.approx(-65.0, abs=1e-4)   # 65 deg down = -65 (up +)
    assert pitchyaw.param2 == pytest.approx(30.0, abs=1e-4)    # 30 deg right = +30
    assert math.isnan(pitchyaw.param3) and math.isnan(pitchyaw.param4)
    assert (pitchyaw.param5, pitchyaw.source_system, pitchyaw.source_component) == (0.0, 1, 191)


def test_offboard_messages_round_trip(px4):
    """Heartbeat: velocity only.  Set-point: hover (velocity 0), rest NaN, yawspeed FRD."""
    store, types = px4
    mode = round_trip(store, types, "OffboardControlMode", offboard_control_mode(7))
    assert mode.velocity and not (mode.position or mode.acceleration or mode.attitude
                                  or mode.body_rate or mode.thrust_and_torque
                                  or mode.direct_actuator)
    setpoint = round_trip(store, types, "TrajectorySetpoint",
                          trajectory_setpoint_yaw_rate(8, 20 * DEG))
    np.testing.assert_array_equal(setpoint.velocity, [0.0, 0.0, 0.0])
    assert np.isnan(setpoint.position).all() and np.isnan(setpoint.acceleration).all()
    assert np.isnan(setpoint.jerk).all() and math.isnan(setpoint.yaw)
    assert setpoint.yawspeed == pytest.approx(-20 * DEG)  # left turn (REP 103) = CCW = FRD -


def test_a_wrong_field_is_rejected(px4):
    """The check can fail: misnamed, missing, mistyped, out-of-range and wrong-length fields."""
    store, types = px4
    good = offboard_control_mode(1)
    bad_name = dict(good)
    bad_name["thrust"] = bad_name.pop("thrust_and_torque")
    with pytest.raises(AssertionError, match="thrust"):
        check_fields(types, "OffboardControlMode", bad_name)
    with pytest.raises(TypeError):  # rosbags itself refuses an unknown field name
        instantiate(store, types, "OffboardControlMode", bad_name)
    command = gimbal_manager_configure(1, IDS)
    with pytest.raises(AssertionError, match="source_system"):
        check_fields(types, "VehicleCommand", dict(command, source_system=300))
    with pytest.raises(AssertionError, match="param1"):
        check_fields(types, "VehicleCommand", dict(command, param1=1))
    setpoint = trajectory_setpoint_yaw_rate(1, 0.0)
    with pytest.raises(AssertionError, match="velocity"):
        check_fields(types, "TrajectorySetpoint", dict(setpoint, velocity=[0.0, 0.0]))


def test_builders_refuse_bad_input():
    """Negative stamps, non-finite angles and ids outside 0..255 are clear errors."""
    with pytest.raises(Px4MessageError, match="timestamp"):
        offboard_control_mode(-1)
    with pytest.raises(Px4MessageError, match="yaw rate"):
        trajectory_setpoint_yaw_rate(1, float("nan"))
    with pytest.raises(Px4MessageError, match="px4_source_component"):
        gimbal_manager_configure(1, Px4Ids(source_component=300))
    with pytest.raises(Px4MessageError, match="finite"):
        gimbal_manager_pitchyaw(1, float("inf"), 0.0)


def test_offboard_yaw_rate_times_out():
    """Stream the last rate while fresh; 0 (stop turning) once stale or before any bearing."""
    assert offboard_yaw_rate(0.3, 0.1, 0.5) == 0.3
    assert offboard_yaw_rate(0.3, 0.6, 0.5) == 0.0
    assert offboard_yaw_rate(None, math.inf, 0.5) == 0.0


# --------------------------------------------------------------------------- older layouts
def test_layout_adapts_to_px4_v115_offboard_control_mode(px4_v115):
    """v1.15 has ``actuator`` instead of thrust_and_torque/direct_actuator: adapted, sent."""
    store, types = px4_v115
    names = field_specs(types, "OffboardControlMode")
    fitted = fit_to_layout(offboard_control_mode(9), names, "OffboardControlMode")
    back = round_trip(store, types, "OffboardControlMode", fitted)
    assert back.velocity and not back.actuator
    needed = dict(offboard_control_mode(9), thrust_and_torque=True)
    with pytest.raises(Px4MessageError, match="thrust_and_torque"):
        fit_to_layout(needed, names, "OffboardControlMode")
    with pytest.raises(Px4MessageError, match="extra"):
        fit_to_layout(offboard_control_mode(9), list(names) + ["extra"], "OffboardControlMode")


# --------------------------------------------------------------------------- what is read
def _status(store, types, name, q_frd_wxyz, flags, **extra):
    """Serialise a GimbalDeviceAttitudeStatus and read it back as a field dict."""
    fields = {"timestamp": 2_000_000, "target_system": 0, "target_component": 0,
              "device_flags": flags, "q": [float(v) for v in q_frd_wxyz],
              "angular_velocity_x": float("nan"), "angular_velocity_y": float("nan"),
              "angular_velocity_z": float("nan"), "failure_flags": 0,
              "received_from_mavlink": True, **extra}
    back = round_trip(store, types, name, fields)
    return {field: getattr(back, field) for field in field_specs(types, name)}


def _frd_q(roll, pitch, yaw):
    x, y, z, w = quaternion_from_rpy(roll, pitch, yaw)
    return [w, x, y, z]


MAIN_EXTRA = {"delta_yaw": float("nan"), "delta_yaw_velocity": float("nan"),
              "gimbal_device_id": 154}


def test_gimbal_status_vehicle_frame_becomes_rep103_mounting(px4):
    """FRD (roll, pitch, yaw) = (5, -40, 25) deg -> REP 103 (5, 40, -25): down 40, right 25."""
    store, types = px4
    fields = _status(store, types, "GimbalDeviceAttitudeStatus",
                     _frd_q(5 * DEG, -40 * DEG, 25 * DEG),
                     DEVICE_FLAGS_YAW_IN_VEHICLE_FRAME, **MAIN_EXTRA)
    status = parse_gimbal_device_attitude_status(fields)
    assert status.stamp_ns == 2_000_000_000 and status.yaw_frame == "vehicle"
    m = status.mounting
    np.testing.assert_allclose([m.roll, m.pitch, m.yaw], [5 * DEG, 40 * DEG, -25 * DEG],
                               atol=1e-6)


def test_gimbal_status_earth_frame_is_converted_with_delta_yaw(px4):
    """Earth-frame yaw 25 + 70 deg with delta_yaw 70 deg is 25 deg relative to the vehicle."""
    store, types = px4
    fields = _status(store, types, "GimbalDeviceAttitudeStatus",
                     _frd_q(0.0, -30 * DEG, 95 * DEG), DEVICE_FLAGS_YAW_IN_EARTH_FRAME,
                     **dict(MAIN_EXTRA, delta_yaw=70 * DEG))
    status = parse_gimbal_device_attitude_status(fields)
    assert status.yaw_frame == "earth"
    m = status.mounting
    np.testing.assert_allclose([m.roll, m.pitch, m.yaw], [0.0, 30 * DEG, -25 * DEG], atol=1e-6)
    no_delta = dict(fields, delta_yaw=float("nan"))
    with pytest.raises(AttitudeError, match="earth frame"):
        parse_gimbal_device_attitude_status(no_delta)


def test_gimbal_status_legacy_yaw_lock(px4_v115):
    """v1.15 layout, YAW_LOCK only: earth frame per MAVLink (refused) unless told "vehicle"."""
    store, types = px4_v115
    q = _frd_q(0.0, -20 * DEG, 10 * DEG)
    fields = _status(store, types, "GimbalDeviceAttitudeStatus", q, DEVICE_FLAGS_YAW_LOCK)
    assert "delta_yaw" not in fields
    with pytest.raises(AttitudeError, match="px4_attitude_frame:=vehicle"):
        parse_gimbal_device_attitude_status(fields)
    m = parse_gimbal_device_attitude_status(fields, frame="vehicle").mounting
    np.testing.assert_allclose([m.pitch, m.yaw], [20 * DEG, -10 * DEG], atol=1e-6)
    plain = _status(store, types, "GimbalDeviceAttitudeStatus", q, 0)
    assert parse_gimbal_device_attitude_status(plain).yaw_frame == "vehicle"


def test_gimbal_status_invalid_input_is_refused():
    """Both frame flags, a zero quaternion, a missing field, an unknown frame mode."""
    with pytest.raises(AttitudeError, match="both"):
        yaw_frame(DEVICE_FLAGS_YAW_IN_VEHICLE_FRAME | DEVICE_FLAGS_YAW_IN_EARTH_FRAME)
    with pytest.raises(AttitudeError, match="zero"):
        parse_gimbal_device_attitude_status({"timestamp": 1, "device_flags": 0,
                                             "q": [0.0, 0.0, 0.0, 0.0]})
    with pytest.raises(Px4MessageError, match="'q'"):
        parse_gimbal_device_attitude_status({"timestamp": 1, "device_flags": 0})
    with pytest.raises(Px4MessageError, match="px4_attitude_frame"):
        yaw_frame(0, "earth")


# --------------------------------------------------------------------------- the ROS glue
def _fake_px4_class(types, name):
    """Return a stand-in for a generated px4_msgs class, fields from the real definition."""
    specs = field_specs(types, name)

    class Fake:
        __name__ = name

        @classmethod
        def get_fields_and_field_types(cls):
            return {field: base if length is None else f"{base}[{length}]"
                    for field, (base, length) in specs.items()}

        def __init__(self):
            for field in specs:
                object.__setattr__(self, field, None)

    Fake.__name__ = name
    return Fake


def test_ros_layer_copies_every_field(px4, px4_v115):
    """attention_node.fill_message sets every field of the installed layout, none left unset."""
    from skd_saliency_ros.ros.attention_node import fill_message, message_fields

    for (store, types), name, fields in (
            (px4, "TrajectorySetpoint", trajectory_setpoint_yaw_rate(3, 0.2)),
            (px4, "VehicleCommand", gimbal_manager_pitchyaw(3, 0.1, 0.2, IDS)),
            (px4, "GimbalManagerSetAttitude",
             gimbal_manager_set_attitude(3, quaternion_from_rpy(0, 0.3, 0.1), IDS)),
            (px4_v115, "OffboardControlMode", offboard_control_mode(3))):
        msg = fill_message(_fake_px4_class(types, name), fields)
        copied = message_fields(msg)
        assert None not in copied.values(), name
        round_trip(store, types, name, copied)


def test_ros_layer_names_a_rejected_field(px4):
    """A value the generated class refuses becomes a Px4MessageError naming the field."""
    from skd_saliency_ros.ros.attention_node import fill_message

    _, types = px4
    base = _fake_px4_class(types, "OffboardControlMode")

    class Strict(base):
        def __setattr__(self, field, value):
            assert field != "velocity", "velocity must be of type 'bool'"
            object.__setattr__(self, field, value)

    Strict.__name__ = "OffboardControlMode"
    with pytest.raises(Px4MessageError, match="OffboardControlMode.velocity"):
        fill_message(Strict, offboard_control_mode(1))


def test_mounting_round_trip_through_flu_frd():
    """The FRD conversion used for sending and the one used for reading are inverses."""
    q = quaternion_from_rpy(0.1, 0.6, -0.9)
    from skd_saliency_ros.core.attention import quaternion_frd_to_flu
    np.testing.assert_allclose(quaternion_frd_to_flu(quaternion_flu_to_frd(q)), q, atol=1e-15)
    assert Mounting() == Mounting(0.0, 0.0, 0.0)
