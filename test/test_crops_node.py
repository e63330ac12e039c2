"""The node's attention crops (``~/crop/image``, ``~/crop/camera_info``) with real frames.

The node runs as its own process with config/saliency.yaml; this process publishes real
1280x720 car10 frames (and a CameraInfo) over rclpy and records what comes back.  The crop
rule itself (core/crops.py) is tested in test_crops.py; here: the topics are off by default,
switch on at run time, carry the input's header and pixels, a CameraInfo whose ROI says
where the crop lies (image_proc's convention, docs/CROPS.md), are centred on the peak the
node publishes, and a bad ``crop_area_fraction`` is refused at start and at run time.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from node_harness import (Client, NodeProcess, assert_refused_at_start, camera_info, make_image,
                          model_params, node_env, read_frames, set_parameters, stamp_of)

FRAME_ID = "car10_optical"
NS = "/saliency_node"
TIMEOUT_S = 60.0  # generous: the machine is shared with training runs


def _listen_to_crops(client: Client, ns: str = NS) -> None:
    """Record ``<ns>/crop/image`` and ``<ns>/crop/camera_info`` as crop_image / crop_info."""
    from sensor_msgs.msg import CameraInfo, Image

    client.listen("crop_image", Image, f"{ns}/crop/image")
    client.listen("crop_info", CameraInfo, f"{ns}/crop/camera_info")


def _wait_until(condition, what: str, node: NodeProcess, timeout: float = TIMEOUT_S) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert node.alive(), f"node died while waiting for {what}:\n{node.output[-3000:]}"
        assert time.monotonic() < end, f"no {what} within {timeout} s:\n{node.output[-3000:]}"
        time.sleep(0.02)


def _send(client: Client, node: NodeProcess, msg, info=None, outputs=("saliency",)) -> None:
    """Publish a frame (and CameraInfo), then wait for the node's answer on ``outputs``."""
    client.publish(msg, info)
    for name in outputs:
        assert client.wait_for(name, stamp_of(msg), timeout=TIMEOUT_S), \
            f"no {name} for stamp {stamp_of(msg)}:\n{node.output[-3000:]}"


def _check_crop(client: Client, msg, frame: np.ndarray, info, fraction: float) -> None:
    """Check the crop of ``msg`` and its CameraInfo: input, peak and fraction."""
    from skd_saliency_ros.core.crops import crop_around, crop_size

    crop = client.by_stamp("crop_image")[stamp_of(msg)]
    crop_info = client.by_stamp("crop_info")[stamp_of(msg)]
    assert len(crop) == 1 and len(crop_info) == 1, "duplicate crop outputs"
    crop, crop_info = crop[0], crop_info[0]
    height, width = frame.shape[:2]
    assert crop.header == msg.header and crop_info.header == msg.header
    roi = crop_info.roi
    x, y, w, h = roi.x_offset, roi.y_offset, roi.width, roi.height
    assert (crop.width, crop.height, crop.encoding) == (w, h, msg.encoding)
    assert 0 <= x and 0 <= y and x + w <= width and y + h <= height, roi
    got = np.frombuffer(bytes(crop.data), np.uint8).reshape(h, w, 3)
    np.testing.assert_array_equal(got, frame[y:y + h, x:x + w])  # the input's own pixels
    assert (w, h) == crop_size((width, height), fraction)
    assert abs(w * h - fraction * width * height) <= 0.5 * (w + h) + 0.25  # rounding only
    # image_proc's convention: the calibration stays the full frame's; the ROI says where.
    assert roi.do_rectify and (crop_info.binning_x, crop_info.binning_y) == (1, 1)
    assert (crop_info.width, crop_info.height) == (info.width, info.height)
    for field in ("k", "p", "d", "r"):
        assert list(getattr(crop_info, field)) == list(getattr(info, field)), field
    # Centred on the strongest peak the node published for this very frame.
    best = client.by_stamp("peaks")[stamp_of(msg)][0].poses[0].position
    assert x <= best.x + 0.5 < x + w and y <= best.y + 0.5 < y + h, (best, roi)
    want = crop_around((best.x, best.y), (width, height), fraction)
    assert (want.x_offset, want.y_offset, want.width, want.height) == (x, y, w, h)


def _enable_crops_refusing_bad_fractions(client: Client):
    """Set 0, 1.5 and NaN (each refused, naming the parameter), then crop_enable true.

    Returns the parameter client, for later changes.
    """
    from rclpy.parameter_client import AsyncParameterClient

    params = AsyncParameterClient(client.node, NS)
    assert params.wait_for_services(timeout_sec=30.0)
    for bad in (0.0, 1.5, math.nan):
        results, current = set_parameters(params, crop_area_fraction=bad)
        assert not results[0].successful, f"crop_area_fraction={bad} was accepted"
        assert "crop_area_fraction" in results[0].reason, results[0].reason
        assert current["crop_area_fraction"] == 0.25
    results, current = set_parameters(params, crop_enable=True)
    assert results[0].successful and current["crop_enable"] is True, results[0].reason
    return params


def test_crops_off_by_default_then_on_at_run_time(ros_env, shared_data):
    """Off by default: nothing on the crop topics; on: one crop per frame, exact pixels.

    Also: without a CameraInfo the crop image comes, its CameraInfo not (warned); a bad
    crop_area_fraction is refused at run time with a reason and the old value stays; a new
    fraction applies to the next frame.
    """
    frames = read_frames(shared_data / "uav_gaze" / "car10.mp4", 8)  # 1280x720 BGR
    height, width = frames[0].shape[:2]
    info = camera_info(width, height, fx=900.0)
    env = node_env(ros_env)
    node = NodeProcess(env, params=model_params())
    client = Client(int(env["ROS_DOMAIN_ID"]))
    _listen_to_crops(client)
    try:
        client.wait_connected(node)
        _wait_until(lambda: all(client.subs[n].get_publisher_count() > 0
                                for n in ("crop_image", "crop_info")),
                    "crop publishers", node)
        stamps = iter(100.0 + 0.1 * k for k in range(100))

        def image(k):
            return make_image(frames[k], "bgr8", next(stamps), FRAME_ID)

        for k in range(2):  # the default: crop_enable false
            _send(client, node, image(k), outputs=("saliency", "peaks"))
        time.sleep(0.5)  # a crop of these frames would have arrived by now
        assert client.count("crop_image") == 0 and client.count("crop_info") == 0

        params = _enable_crops_refusing_bad_fractions(client)

        no_info = image(2)  # no CameraInfo has arrived yet: the image, no CameraInfo
        _send(client, node, no_info, outputs=("saliency", "crop_image"))
        assert node.wait_for_line("crop/camera_info: no CameraInfo has arrived", TIMEOUT_S), \
            node.output[-3000:]
        for k in range(3, 6):
            msg = image(k)
            _send(client, node, msg, info,
                  outputs=("peaks", "bearings", "crop_image", "crop_info"))
            _check_crop(client, msg, frames[k], info, 0.25)
        assert stamp_of(no_info) not in client.by_stamp("crop_info")

        results, _ = set_parameters(params, crop_area_fraction=0.1)
        assert results[0].successful, results[0].reason
        for k in range(6, 8):
            msg = image(k)
            _send(client, node, msg, info,
                  outputs=("peaks", "bearings", "crop_image", "crop_info"))
            _check_crop(client, msg, frames[k], info, 0.1)
            assert (client.by_stamp("crop_image")[stamp_of(msg)][0].width,
                    client.by_stamp("crop_image")[stamp_of(msg)][0].height) == (405, 228)
        assert node.alive()
    finally:
        client.close()
        assert node.stop() == 0, node.output[-3000:]
    assert "Traceback" not in node.output


def _red_channel_model(path):
    """Write a real ONNX model whose map is the frame's red channel (uniform frame: flat)."""
    from onnx import TensorProto, helper, numpy_helper

    from bad_models import write_model

    def const(name, value):
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(
            np.asarray(value, np.int64), name))

    nodes = [const("starts", [0]), const("ends", [1]), const("axes", [1]),
             helper.make_node("Slice", ["frames", "starts", "ends", "axes"], ["saliency"])]
    return write_model(path, nodes, "saliency", ["batch", 1, 32, 32], 32,
                       input_type=TensorProto.FLOAT, meta={"arch": "red-channel-test-model"})


def test_flat_map_gives_no_crop_and_is_counted(ros_env, shared_data, tmp_path):
    """A frame whose map has no peak publishes no crop; diagnostics count it (crop_no_peak).

    Two cameras, so the crop topics live in the camera's namespace (~/front/crop/...); the
    model is the frame's red channel, so a uniform frame gives a flat map by construction
    and a real frame a real peak.
    """
    frame = read_frames(shared_data / "uav_gaze" / "car10.mp4", 1)[0]
    model = _red_channel_model(tmp_path / "red.onnx")
    env = node_env(ros_env)
    node = NodeProcess(env, params=[f"model_path:={model}", "crop_enable:=true",
                                    "cameras:=[front/image_raw,down/image_raw]"])
    client = Client(int(env["ROS_DOMAIN_ID"]), node_ns=f"{NS}/front",
                    image_topic="/front/image_raw", info_topic="/front/camera_info")
    _listen_to_crops(client, ns=f"{NS}/front")
    try:
        client.wait_connected(node)
        _wait_until(lambda: client.subs["crop_image"].get_publisher_count() > 0,
                    "the ~/front/crop/image publisher", node)
        uniform = np.full_like(frame, 90)
        flat = make_image(uniform, "bgr8", 50.0, FRAME_ID)
        _send(client, node, flat, outputs=("saliency", "peaks"))
        assert not client.by_stamp("peaks")[stamp_of(flat)][0].poses  # premise: flat map
        real = make_image(frame, "bgr8", 50.1, FRAME_ID)
        _send(client, node, real, outputs=("saliency", "crop_image"))
        assert stamp_of(flat) not in client.by_stamp("crop_image")
        diag = client.wait_diagnostics(lambda d: d["_name"].endswith(": front")
                                       and d["frames_out"] == "2", timeout=TIMEOUT_S)
        assert diag is not None and diag["crop_no_peak"] == "1", diag
        assert node.alive()
    finally:
        client.close()
        assert node.stop() == 0, node.output[-3000:]
    assert "Traceback" not in node.output


def test_crop_of_paired_pixel_encodings_keeps_whole_cells(shared_data):
    """yuv422 and Bayer crops start on whole cells, so they decode as the frame does there.

    Without that, an odd offset would swap U and V of a UYVY row or turn bayer_rggb8 into
    another pattern under the same name.  A compressed frame is cropped from its decoding.
    """
    import cv2
    from sensor_msgs.msg import CompressedImage

    from skd_saliency_ros.core.crops import Crop
    from skd_saliency_ros.ros.image_io import image_to_numpy, image_to_rgb8
    from skd_saliency_ros.ros.outputs import cell_aligned, crop_image, crop_source

    bgr = read_frames(shared_data / "uav_gaze" / "car10.mp4", 1)[0][:240, :320]
    odd = Crop(x_offset=31, y_offset=17, width=101, height=57)
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_Y422)  # UYVY, (H, W, 2)
    bayer = bgr[:, :, ::-1].copy()
    mosaic = np.zeros(bgr.shape[:2], np.uint8)  # RGGB from the RGB frame
    mosaic[0::2, 0::2], mosaic[0::2, 1::2] = bayer[0::2, 0::2, 0], bayer[0::2, 1::2, 1]
    mosaic[1::2, 0::2], mosaic[1::2, 1::2] = bayer[1::2, 0::2, 1], bayer[1::2, 1::2, 2]
    for encoding, pixels, cell in (("yuv422", yuv, (2, 1)), ("bayer_rggb8", mosaic, (2, 2)),
                                   ("bgr8", bgr, (1, 1))):
        msg = make_image(pixels, encoding, 1.0, FRAME_ID)
        source, source_encoding = crop_source(msg, image_to_rgb8(msg))
        assert source_encoding == encoding
        crop = cell_aligned(odd, (320, 240), encoding)
        assert crop.x_offset % cell[0] == 0 and crop.y_offset % cell[1] == 0, crop
        assert crop.x_offset <= 31 and crop.x_offset + crop.width >= 132, crop  # holds odd
        assert crop.y_offset <= 17 and crop.y_offset + crop.height >= 74, crop
        assert crop.width <= 101 + cell[0] and crop.height <= 57 + cell[1], crop
        out = crop_image(source, encoding, crop, msg.header)
        assert out.encoding == encoding and out.header == msg.header
        region = (slice(crop.y_offset, crop.y_offset + crop.height),
                  slice(crop.x_offset, crop.x_offset + crop.width))
        np.testing.assert_array_equal(image_to_numpy(out), pixels[region])
        if encoding == "yuv422":  # converted pixel pair by pair: equal where aligned
            np.testing.assert_array_equal(image_to_rgb8(out), image_to_rgb8(msg)[region])
    assert cell_aligned(odd, (320, 240), "bgr8") == odd
    ok, jpeg = cv2.imencode(".jpg", bgr)
    compressed = CompressedImage(format="jpeg", data=jpeg.tobytes())
    decoded = np.zeros((240, 320, 3), np.uint8)
    source, encoding = crop_source(compressed, decoded)
    assert encoding == "rgb8" and source is decoded


@pytest.mark.parametrize("value", ["0.0", "1.5", ".nan"])
def test_bad_crop_area_fraction_stops_the_node_at_start(ros_env, value):
    """crop_area_fraction outside (0, 1] in the params: one error line naming it, exit 1."""
    assert_refused_at_start(node_env(ros_env), [f"crop_area_fraction:={value}"],
                            "crop_area_fraction")
