"""The saliency node as users run it: its own process, config/saliency.yaml, real video frames.

Frames come from the shared data bundle (UAV123 clips) and are published at (at most) 10 Hz;
each next frame waits for the answer to the previous one, so every check below is about
what the node publishes, never about timing.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from node_harness import (REPO_ROOT, Client, NodeProcess, assert_refused_at_start, camera_info,
                          default_output_size, image_to_array, make_image, model_params,
                          node_env, read_frames, set_parameters, stamp_of)

FRAME_ID = "uav_camera_optical"
PERIOD_S = 0.1  # 10 Hz, the frame rate of the UAV123@10fps clips


def _engine():
    """Build a local engine on the node's (default) model, to check its maps and pairing."""
    from skd_saliency_ros.core.engine import SaliencyEngine

    return SaliencyEngine(device="cpu", max_gap_s=0.5)


def _send_and_wait(client, node, msg, info=None, outputs=("saliency",)):
    """Publish at most every PERIOD_S, then wait for the node's answer on ``outputs``."""
    wait = PERIOD_S - (time.monotonic() - getattr(client, "last_sent", 0.0))
    if wait > 0:
        time.sleep(wait)
    client.last_sent = time.monotonic()
    client.publish(msg, info)
    for name in outputs:
        assert client.wait_for(name, stamp_of(msg)), \
            f"no {name} for stamp {stamp_of(msg)}:\n{node.output[-3000:]}"


@pytest.fixture()
def person11(shared_data):
    """Twelve real 640x360 aerial frames (BGR)."""
    return read_frames(shared_data / "uav_unlabeled" / "person11.mp4", 12)


def test_stream_outputs_one_per_frame(ros_env, person11):
    """Saliency, peaks, bearings, overlay, target: one each per input, same header, valid."""
    env = node_env(ros_env)
    model = model_params()
    node = NodeProcess(env, params=model)
    client = Client(int(env["ROS_DOMAIN_ID"]))
    try:
        client.wait_connected(node)
        height, width = person11[0].shape[:2]
        info = camera_info(width, height, fx=500.0)
        sent = []
        for k, frame in enumerate(person11):
            msg = make_image(frame, "bgr8", 1000.0 + PERIOD_S * k, FRAME_ID)
            _send_and_wait(client, node, msg, info,
                           outputs=("saliency", "peaks", "bearings", "overlay", "target"))
            sent.append(msg)
        time.sleep(0.5)  # anything extra would arrive now
        stamps = [stamp_of(m) for m in sent]
        for name in ("saliency", "peaks", "bearings", "overlay", "target"):
            got = client.by_stamp(name)
            assert sorted(got) == sorted(stamps), f"{name}: stamps differ from the inputs"
            assert all(len(v) == 1 for v in got.values()), f"{name}: duplicate outputs"

        sal_by, peaks_by = client.by_stamp("saliency"), client.by_stamp("peaks")
        bear_by, over_by = client.by_stamp("bearings"), client.by_stamp("overlay")
        engine = _engine()
        for k, msg in enumerate(sent):
            sal_msg = sal_by[stamp_of(msg)][0]
            assert sal_msg.header.frame_id == FRAME_ID
            out_h, out_w = default_output_size(height, width)
            assert (sal_msg.encoding, sal_msg.height, sal_msg.width) == ("32FC1", out_h, out_w)
            sal = image_to_array(sal_msg)
            assert np.isfinite(sal).all() and sal.min() >= 0.0 and sal.max() <= 1.0
            assert sal.max() > 0.9 and sal.std() > 0.01, "map is (nearly) constant"
            # Same numbers as the engine run locally on the same frames and stamps.
            expected = engine.step(person11[k][:, :, ::-1].copy(), 1000.0 + PERIOD_S * k)
            from skd_saliency_ros.core.maps import upsample
            np.testing.assert_allclose(sal, upsample(expected.saliency, (out_h, out_w)),
                                       atol=2e-3)

            peaks = peaks_by[stamp_of(msg)][0]
            assert peaks.header.frame_id == FRAME_ID and 1 <= len(peaks.poses) <= 5
            scores = [p.position.z for p in peaks.poses]
            assert scores == sorted(scores, reverse=True)
            for p in peaks.poses:
                assert -0.5 <= p.position.x <= width - 0.5
                assert -0.5 <= p.position.y <= height - 0.5
                assert 0.3 <= p.position.z <= 1.0

            bearings = bear_by[stamp_of(msg)][0]
            assert bearings.header.frame_id == FRAME_ID
            assert len(bearings.poses) == len(peaks.poses)
            for b, p in zip(bearings.poses, peaks.poses):
                ray = np.array([b.position.x, b.position.y, b.position.z])
                assert abs(np.linalg.norm(ray) - 1.0) < 1e-6 and ray[2] > 0
                # The ray projects back onto the peak through K.
                assert abs(500.0 * ray[0] / ray[2] + (width - 1) / 2 - p.position.x) < 1e-3
                assert abs(500.0 * ray[1] / ray[2] + (height - 1) / 2 - p.position.y) < 1e-3

            target = client.by_stamp("target")[stamp_of(msg)][0]
            assert target.header.frame_id == FRAME_ID
            best = bearings.poses[0].position
            got = (target.vector.x, target.vector.y, target.vector.z)
            assert got == (best.x, best.y, best.z)

            overlay = over_by[stamp_of(msg)][0]
            assert (overlay.encoding, overlay.height, overlay.width) == ("bgr8", height, width)
            assert overlay.header.frame_id == FRAME_ID

        diag = client.wait_diagnostics(
            lambda d: d["_name"].endswith(": image") and int(d["frames_out"]) == len(sent))
        assert diag is not None, "no diagnostics reporting every frame"
        for key in ("input_rate_hz", "latency_mean_ms", "dropped", "invalid", "resets"):
            assert key in diag
        assert diag["invalid"] == "0"
        assert node.alive()
    finally:
        client.close()
        assert node.stop() == 0, node.output[-3000:]


def test_reset_rules(ros_env, shared_data, person11):
    """First frame, gap, stamp backwards, resolution and encoding change each reset the state."""
    env = node_env(ros_env)
    model = model_params()
    node = NodeProcess(env, params=model + ["diagnostics_period_s:=0.2"])
    client = Client(int(env["ROS_DOMAIN_ID"]))
    big = read_frames(shared_data / "uav_gaze" / "car10.mp4", 2)
    # (frame BGR, encoding, stamp, expected reset reason or None)
    plan = [
        (person11[0], "bgr8", 50.0, "first frame"),
        (person11[1], "bgr8", 50.1, None),
        (person11[2], "bgr8", 52.0, "gap"),
        (person11[3], "bgr8", 52.1, None),
        (person11[4], "bgr8", 51.0, "stamp went backwards"),
        (big[0], "bgr8", 51.1, "resolution changed 640x360 -> 1280x720"),
        (big[1], "bgr8", 51.2, None),
        (big[1][:, :, ::-1].copy(), "rgb8", 51.3, "encoding changed bgr8 -> rgb8"),
        (person11[5][:, :, ::-1].copy(), "rgb8", 51.4, "resolution changed 1280x720 -> 640x360"),
    ]
    try:
        client.wait_connected(node)
        engine = _engine()
        resets = 0
        for index, (frame, encoding, stamp, reason) in enumerate(plan):
            msg = make_image(frame, encoding, stamp, FRAME_ID)
            _send_and_wait(client, node, msg)
            rgb = frame if encoding == "rgb8" else np.ascontiguousarray(frame[:, :, ::-1])
            if reason and reason.startswith("encoding"):
                engine.reset("default", reason=reason)
            expected = engine.step(rgb, stamp)
            assert (expected.reset_reason or "").startswith(reason or "") and \
                (expected.reset_reason is None) == (reason is None)
            sal = image_to_array(client.by_stamp("saliency")[stamp_of(msg)][0])
            from skd_saliency_ros.core.maps import upsample
            np.testing.assert_allclose(sal, upsample(expected.saliency, sal.shape), atol=2e-3,
                                       err_msg=f"frame at {stamp} s paired differently")
            if reason:
                resets += 1
            diag = client.wait_diagnostics(
                lambda d, n=resets, i=index: d.get("frames_out") == str(i + 1)
                and d["resets"] == str(n))
            assert diag is not None, f"diagnostics never showed {resets} resets after {stamp} s"
            if reason:
                assert diag["last_reset_reason"].startswith(reason), diag
        assert node.alive()
    finally:
        client.close()
        assert node.stop() == 0, node.output[-3000:]


def _wait(future, what):
    end = time.monotonic() + 30.0
    while not future.done() and time.monotonic() < end:
        time.sleep(0.02)
    assert future.done(), f"{what} timed out"
    return future.result()


def _check_declared(params):
    """Check that the running node declares exactly the YAML's parameters, described."""
    import yaml

    from skd_saliency_ros.ros.params import SPECS

    names = set(_wait(params.list_parameters(), "list_parameters").result.names)
    doc = yaml.safe_load((REPO_ROOT / "config" / "saliency.yaml").read_text())
    rclpy_own = {"use_sim_time", "start_type_description_service"}  # every rclpy node has them
    assert names - rclpy_own == set(doc["/**"]["ros__parameters"])
    described = _wait(params.describe_parameters(sorted(SPECS)), "describe").descriptors
    for desc in described:
        assert desc.description and desc.read_only == SPECS[desc.name].read_only, desc.name


def test_runtime_parameters(ros_env, person11):
    """Valid run-time changes take effect; invalid and read-only ones are refused with a reason."""
    env = node_env(ros_env)
    node = NodeProcess(env, params=model_params())
    client = Client(int(env["ROS_DOMAIN_ID"]))
    try:
        client.wait_connected(node)
        from rclpy.parameter_client import AsyncParameterClient
        params = AsyncParameterClient(client.node, "/saliency_node")
        assert params.wait_for_services(timeout_sec=30.0)
        _check_declared(params)
        rejected = {
            "top_k": -1, "min_score": 1.5, "overlay_alpha": "strong", "output_scale": 0.0,
            "model_path": "/tmp/other.pt", "cameras": ["a/image", "b/image"],
            "qos_reliability": "reliable", "max_input_pixels": 10,
        }
        for name, value in rejected.items():
            results, current = set_parameters(params, **{name: value})
            assert not results[0].successful, f"{name}={value!r} was accepted"
            assert results[0].reason, f"{name}={value!r} refused without a reason"
            assert current[name] != value, f"{name} changed although refused"
        results, _ = set_parameters(params, max_input_pixels=10)
        assert "min_input_size" in results[0].reason

        # rclpy's own parameters stay settable
        results, _ = set_parameters(params, use_sim_time=False)
        assert results[0].successful, results[0].reason
        results, current = set_parameters(params, top_k=2, min_score=0.1,
                                          nms_radius=0.05, overlay_alpha=0.8, output_scale=0.5,
                                          max_gap_s=5.0)
        assert all(r.successful for r in results), [r.reason for r in results]
        assert current == {"top_k": 2, "min_score": 0.1, "nms_radius": 0.05,
                           "overlay_alpha": 0.8, "output_scale": 0.5, "max_gap_s": 5.0}
        height, width = person11[0].shape[:2]
        for k, stamp in enumerate((10.0, 13.0)):  # 3 s apart: no reset with max_gap_s 5
            msg = make_image(person11[k], "bgr8", stamp, FRAME_ID)
            _send_and_wait(client, node, msg, outputs=("saliency", "peaks"))
            sal = client.by_stamp("saliency")[stamp_of(msg)][0]
            assert (sal.height, sal.width) == (math.floor(height * 0.5 + 0.5),
                                               math.floor(width * 0.5 + 0.5))
            assert 1 <= len(client.by_stamp("peaks")[stamp_of(msg)][0].poses) <= 2
        diag = client.wait_diagnostics(lambda d: d.get("frames_out") == "2")
        assert diag is not None and diag["resets"] == "1", diag  # the first frame only
        assert node.alive()
    finally:
        client.close()
        assert node.stop() == 0, node.output[-3000:]


def test_two_cameras_one_node(ros_env, person11, shared_data):
    """Several camera topics: own output namespace and temporal state each, one node."""
    env = node_env(ros_env)
    node = NodeProcess(env, params=model_params()
                       + ["cameras:=[front/image_raw,down/image_raw]"])
    front = Client(int(env["ROS_DOMAIN_ID"]), node_ns="/saliency_node/front",
                   image_topic="/front/image_raw", info_topic="/front/camera_info")
    down = Client(int(env["ROS_DOMAIN_ID"]), node_ns="/saliency_node/down",
                  image_topic="/down/image_raw", info_topic="/down/camera_info")
    big = read_frames(shared_data / "uav_gaze" / "car10.mp4", 3)
    try:
        front.wait_connected(node)
        down.wait_connected(node)
        for k in range(3):
            f = make_image(person11[k], "bgr8", 20.0 + PERIOD_S * k, "front_optical")
            d = make_image(big[k], "bgr8", 20.0 + PERIOD_S * k, "down_optical")
            front.publish(f)
            down.publish(d)
            assert front.wait_for("saliency", stamp_of(f)), node.output[-3000:]
            assert down.wait_for("saliency", stamp_of(d)), node.output[-3000:]
            sf = front.by_stamp("saliency")[stamp_of(f)][0]
            sd = down.by_stamp("saliency")[stamp_of(d)][0]
            assert (sf.header.frame_id, sf.height) == ("front_optical",
                                                       default_output_size(360, 640)[0])
            assert (sd.header.frame_id, sd.height) == ("down_optical",
                                                       default_output_size(720, 1280)[0])
        time.sleep(0.5)
        assert front.count("saliency") == 3 and down.count("saliency") == 3
        for label in ("front", "down"):  # interleaved cameras never reset each other
            d = front.wait_diagnostics(lambda v, lab=label: v["_name"].endswith(lab)
                                       and v["frames_out"] == "3")
            assert d is not None and d["resets"] == "1", d
    finally:
        front.close()
        down.close()
        assert node.stop() == 0, node.output[-3000:]


@pytest.mark.parametrize("problem", ["missing", "not_a_checkpoint"])
def test_bad_model_stops_node(ros_env, tmp_path, problem):
    """A missing or unreadable model: one clear error line, exit code 1, no traceback."""
    path = tmp_path / "model.pt"
    if problem == "not_a_checkpoint":
        path.write_text("this is not a model\n")
    assert_refused_at_start(node_env(ros_env), [f"model_path:={path}"], str(path))


def test_compressed_transport_answers_real_jpeg_frames(ros_env, shared_data):
    """Read <image>/compressed JPEG frames with transport: compressed.

    60 real 1280x720 frames at 10 Hz: at least 95 % answered with the input's stamp and
    frame_id; maps equal the engine's on the decoded JPEG and differ from the raw-frame maps
    only by the JPEG error (measured).
    """
    import cv2
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage

    from skd_saliency_ros.core.maps import upsample

    frames = read_frames(shared_data / "uav_gaze" / "car10.mp4", 60)   # 1280x720 BGR
    env = node_env(ros_env)
    node = NodeProcess(env, params=model_params() + ["transport:=compressed"])
    client = Client(int(env["ROS_DOMAIN_ID"]))
    pub = client.node.create_publisher(CompressedImage, "/image/compressed",
                                       QoSProfile(depth=50,
                                                  reliability=ReliabilityPolicy.RELIABLE))
    try:
        client.wait_matched(pub, node)
        sent = []
        for k, frame in enumerate(frames):
            msg = CompressedImage(format="jpeg")
            msg.header = make_image(frame, "bgr8", 2000.0 + PERIOD_S * k, FRAME_ID).header
            msg.data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            pub.publish(msg)
            sent.append(msg)
            time.sleep(PERIOD_S)
        time.sleep(1.0)
        got = client.by_stamp("saliency")
        answered = [m for m in sent if stamp_of(m) in got]
        assert len(answered) >= 0.95 * len(sent), f"{len(answered)}/{len(sent)}"
        engine_jpeg, engine_raw = _engine(), _engine()
        worst_raw = 0.0
        for k, msg in enumerate(sent):
            decoded = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
            want = engine_jpeg.step(decoded[:, :, ::-1].copy(), 2000.0 + PERIOD_S * k)
            raw = engine_raw.step(frames[k][:, :, ::-1].copy(), 2000.0 + PERIOD_S * k)
            if stamp_of(msg) not in got:
                continue
            out = got[stamp_of(msg)][0]
            assert out.header.frame_id == FRAME_ID
            sal = image_to_array(out)
            size = (out.height, out.width)
            np.testing.assert_allclose(sal, upsample(want.saliency, size), atol=2e-3)
            worst_raw = max(worst_raw, float(np.abs(sal - upsample(raw.saliency, size)).max()))
        print(f"JPEG q90 vs raw frames: largest map difference {worst_raw:.3f}")
        assert worst_raw < 0.1, worst_raw  # measured 0.019 at quality 90 on car10
    finally:
        client.close()
        assert node.stop() == 0, node.output[-3000:]
