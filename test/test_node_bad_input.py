"""Bad input never kills the node: it warns, publishes nothing for the bad frame, keeps serving.

One node process (config/saliency.yaml) gets a real 10 Hz stream from the shared data with a
broken or unusual message after every few valid frames.  Valid frames must each get exactly
one answer, invalid ones none, and the node must still be serving at the end.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from node_harness import (Client, NodeProcess, default_output_size, image_to_array,
                          make_image, model_params, node_env, read_frames, stamp_of)

FRAME_ID = "uav_camera_optical"


def _bad_messages(frame: np.ndarray):
    """(name, Image) for each kind of invalid message; ``frame`` is a real 640x360 BGR frame."""
    good = make_image(frame, "bgr8", 0.0, FRAME_ID)
    height, width = frame.shape[:2]

    empty = make_image(frame, "bgr8", 0.0, FRAME_ID)
    empty.data = b""
    wrong_step = make_image(frame, "bgr8", 0.0, FRAME_ID)
    wrong_step.step = width  # one byte per pixel for a 3-byte encoding
    truncated = make_image(frame, "bgr8", 0.0, FRAME_ID)
    truncated.data = bytes(good.data[: len(good.data) // 2])
    unsupported = make_image(frame, "bgr8", 0.0, FRAME_ID)
    unsupported.encoding = "jpeg"
    tiny = make_image(frame[:1, :1], "bgr8", 0.0, FRAME_ID)
    huge = make_image(np.zeros((8000, 8000, 3), np.uint8), "bgr8", 0.0, FRAME_ID)
    return [("empty data", empty), ("wrong step", wrong_step), ("truncated data", truncated),
            ("unsupported encoding", unsupported), ("1x1 image", tiny),
            ("8000x8000 image", huge)]


def test_bad_input_is_survived(ros_env, shared_data):
    """Every kind of bad frame is dropped with a warning; valid frames around it are served."""
    env = node_env(ros_env)
    # Reliable input: a best-effort reader loses an 8000x8000 frame (192 MB, thousands of
    # fragments); the node must actually receive it to show that it rejects it.
    node = NodeProcess(env, params=model_params() + ["qos_reliability:=reliable"])
    client = Client(int(env["ROS_DOMAIN_ID"]))
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    # Its own writer, so that the slow huge sample does not hold up the valid stream.
    huge_pub = client.node.create_publisher(
        Image, "/image", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    frames = read_frames(shared_data / "uav_unlabeled" / "person11.mp4", 12)
    big = read_frames(shared_data / "uav_gaze" / "car10.mp4", 1)[0]
    try:
        client.wait_connected(node)
        valid, invalid = [], []
        stamp = 100.0

        def send(msg, expect_output: bool):
            nonlocal stamp
            msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp), \
                int(round((stamp % 1) * 1e9))
            stamp += 0.1
            time.sleep(0.1)  # 10 Hz
            (huge_pub if msg.width * msg.height > 4096 * 4096 else client.pub_image).publish(msg)
            (valid if expect_output else invalid).append(msg)
            if expect_output:
                assert client.wait_for("saliency", stamp_of(msg)), \
                    f"valid frame {stamp_of(msg)} got no answer:\n{node.output[-3000:]}"

        k = 0
        for _name, bad in _bad_messages(frames[0]):
            send(make_image(frames[k], "bgr8", 0.0, FRAME_ID), True)
            k += 1
            send(bad, False)
            assert node.alive(), node.output[-3000:]
        # Unusual but valid: a mid-stream resolution change and a stamp going backwards.
        send(make_image(big, "bgr8", 0.0, FRAME_ID), True)
        send(make_image(frames[k], "bgr8", 0.0, FRAME_ID), True)
        stamp -= 5.0
        send(make_image(frames[k + 1], "bgr8", 0.0, FRAME_ID), True)
        send(make_image(frames[k + 2], "bgr8", 0.0, FRAME_ID), True)
        time.sleep(1.0)

        answered = client.by_stamp("saliency")
        for msg in valid:
            out = answered[stamp_of(msg)]
            assert len(out) == 1
            sal = image_to_array(out[0])
            assert sal.shape == default_output_size(msg.height, msg.width)
            assert np.isfinite(sal).all() and 0.0 <= sal.min() and sal.max() <= 1.0
        for msg in invalid:
            assert stamp_of(msg) not in answered, \
                f"{msg.width}x{msg.height} '{msg.encoding}' frame was answered"
            assert stamp_of(msg) not in client.by_stamp("peaks")
        assert client.count("saliency") == len(valid)

        diag = client.wait_diagnostics(
            lambda d: d.get("frames_out") == str(len(valid)) and int(d["invalid"]) == 6,
            timeout=60.0)
        assert diag is not None, f"diagnostics do not count the invalid frames: " \
            f"{client.last_diagnostics()}\n{node.output[-3000:]}"
        assert int(diag["resets"]) >= 3  # first frame, resolution there and back, backwards
        assert node.alive(), node.output[-3000:]
        warnings = [line for line in node.lines if "WARN" in line and "frame dropped" in line]
        for text in ("data is empty", "1x1 image", "8000x8000 image"):
            assert any(text in line for line in warnings), \
                f"no warning about '{text}':\n{node.output[-3000:]}"
        assert "Traceback" not in node.output
    finally:
        client.close()
        assert node.stop() == 0, node.output[-3000:]


def _vm_hwm_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of process ``pid`` in MB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError(f"no VmHWM for process {pid}")


def test_compressed_bombs_are_refused_before_decoding(ros_env, shared_data):
    """transport: compressed; PNG/JPEG headers declaring 16000x16000 are refused unread.

    A header-only PNG (undecodable) must be refused for its size, a real 250 kB PNG of
    16000x16000 (768 MB decoded) without the node's peak memory growing by hundreds of
    MB, a JPEG whose SOF declares 16000x16000 likewise, a 300x4 PNG as too small; all are
    counted invalid and the real JPEG frames around them are answered.
    """
    import cv2
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage

    from compressed_bombs import jpeg_declaring, png_bomb, png_header_only

    frames = read_frames(shared_data / "uav_unlabeled" / "person11.mp4", 5)
    bad = [("png", png_header_only()), ("png", png_bomb()),
           ("jpeg", jpeg_declaring(frames[0], 16000, 16000)),
           ("png", cv2.imencode(".png", frames[0][:4, :300])[1].tobytes())]
    env = node_env(ros_env)
    node = NodeProcess(env, params=model_params() + ["transport:=compressed",
                                                     "qos_reliability:=reliable"])
    client = Client(int(env["ROS_DOMAIN_ID"]))
    pub = client.node.create_publisher(CompressedImage, "/image/compressed",
                                       QoSProfile(depth=10,
                                                  reliability=ReliabilityPolicy.RELIABLE))
    try:
        client.wait_matched(pub, node)
        stamp, valid = 300.0, []

        def send(fmt, data):
            nonlocal stamp
            msg = CompressedImage(format=fmt)
            msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp), \
                int(round((stamp % 1) * 1e9))
            msg.header.frame_id = FRAME_ID
            msg.data = data
            stamp += 0.1
            pub.publish(msg)
            return msg

        for k, (fmt, data) in enumerate(bad):
            valid.append(send("jpeg", cv2.imencode(".jpg", frames[k])[1].tobytes()))
            assert client.wait_for("saliency", stamp_of(valid[-1]), timeout=60.0), \
                node.output[-3000:]
            if k == 0:
                baseline = _vm_hwm_mb(node.proc.pid)
            send(fmt, data)
        valid.append(send("jpeg", cv2.imencode(".jpg", frames[4])[1].tobytes()))
        assert client.wait_for("saliency", stamp_of(valid[-1]), timeout=60.0), \
            node.output[-3000:]
        diag = client.wait_diagnostics(lambda d: d.get("invalid") == str(len(bad)),
                                       timeout=60.0)
        assert diag is not None, f"{client.last_diagnostics()}\n{node.output[-3000:]}"
        assert client.count("saliency") == len(valid)
        growth = _vm_hwm_mb(node.proc.pid) - baseline
        print(f"node peak RSS growth over the bombs: {growth:.1f} MB")
        assert growth < 200.0, f"peak RSS grew by {growth:.0f} MB: a bomb was decoded"
        text = node.output
        assert "16000x16000 image has more pixels than max_input_pixels" in text, text[-3000:]
        assert "smaller than min_input_size" in text, text[-3000:]
        assert "cannot be decoded" not in text, text[-3000:]
        assert node.alive() and "Traceback" not in text, text[-3000:]
    finally:
        client.close()
        assert node.stop() == 0, node.output[-3000:]


@pytest.mark.parametrize("problem", ["non_finite", "failed"])
def test_model_without_maps_publishes_nothing_and_reports_error(ros_env, shared_data,
                                                                tmp_path, problem):
    """Models that pass the load check but give no map for any real frame.

    ``non_finite``: NaN on every frame (no fake all-zero map may be published); ``failed``:
    onnxruntime raises on every frame.  Nothing is published, the node warns (throttled),
    counts the frames and /diagnostics goes to ERROR; it keeps running.
    """
    from diagnostic_msgs.msg import DiagnosticStatus

    from bad_models import fails_off_grey, nan_off_grey
    from skd_saliency_ros.core.engine import SaliencyEngine
    from skd_saliency_ros.core.maps import fill_pair, resize_area

    build, status_text, log_text = {
        "non_finite": (nan_off_grey, "not finite", "not finite"),
        "failed": (fails_off_grey, "failed in the model", "out of data bounds")}[problem]
    model = build(tmp_path / f"{problem}.onnx")
    frames = read_frames(shared_data / "uav_unlabeled" / "person11.mp4", 20)
    engine = SaliencyEngine(model, device="cpu", backend="onnxruntime")  # passes the check
    for frame in frames:  # the premise: no usable map for each of these very frames
        small = resize_area(np.ascontiguousarray(frame[:, :, ::-1]), engine.input_size)
        pair = fill_pair(np.empty((6, *engine.input_size), np.float32), small, small)
        try:
            assert not np.isfinite(engine.predict(pair[None])).all()
        except Exception as exc:  # noqa: BLE001 - onnxruntime's own error types
            assert problem == "failed", exc
    env = node_env(ros_env)
    node = NodeProcess(env, params=[f"model_path:={model}"])
    client = Client(int(env["ROS_DOMAIN_ID"]))
    try:
        client.wait_connected(node)
        for k, frame in enumerate(frames):
            client.publish(make_image(frame, "bgr8", 500.0 + 0.1 * k, FRAME_ID))
            time.sleep(0.1)
        diag = client.wait_diagnostics(
            lambda d: d.get(problem) and int(d[problem]) + int(d["dropped"]) == len(frames),
            timeout=60.0)
        assert diag is not None, f"{client.last_diagnostics()}\n{node.output[-3000:]}"
        assert int(diag[problem]) > 0 and diag["frames_out"] == "0", diag
        assert client.count("saliency") == 0 and client.count("peaks") == 0
        error = client.wait_diagnostics(
            lambda d: d["_level"] == DiagnosticStatus.ERROR and status_text in d["_message"],
            timeout=30.0)
        assert error is not None, f"{client.last_diagnostics()}\n{node.output[-3000:]}"
        # Every line about the problem is throttled (onnxruntime's own log included).
        lines = [line for line in node.lines if log_text in line]
        assert 1 <= len(lines) < len(frames) // 2, node.output[-3000:]
        assert all("WARN" in line for line in lines), node.output[-3000:]
        assert node.alive() and "Traceback" not in node.output, node.output[-3000:]
    finally:
        client.close()
        assert node.stop() == 0, node.output[-3000:]
