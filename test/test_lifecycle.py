"""The saliency node as a managed (lifecycle) node, driven through its real services.

The node runs as its own process; this process calls ``/saliency_node/change_state``,
``get_state`` and ``~/enable`` exactly as a lifecycle manager or a mission script would, and
publishes real UAV123 frames.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from bench.lifecycle import LifecycleClient, run_cycles, summary
from node_harness import (Client, NodeProcess, camera_info, make_image, node_env, read_frames,
                          stamp_of)


@pytest.fixture(scope="module")
def person11(shared_data):
    """Real 640x360 aerial frames (BGR)."""
    return read_frames(shared_data / "uav_unlabeled" / "person11.mp4", 12)


def test_pause_and_resume_cycles(person11):
    """Deactivate stops every map within 0.5 s; activate resumes with a reset temporal state.

    Three cycles alternate change_state and ~/enable (docs/RELIABILITY.md has the 20-cycle
    run with RSS).
    """
    result = run_cycles(3, person11, rate_hz=10.0, active_s=0.8, quiet_s=0.8)
    s = summary(result)
    assert result["node_alive"]
    assert s["all_transitions_ok"], result["rows"]
    assert s["late_maps"] == 0, result["rows"]
    assert s["resumed"] == 3 and s["resets_reported"] == 3, result["rows"]


def test_autostart_false_waits_for_a_manager(ros_env, person11):
    """autostart:=false stays unconfigured; configure/activate/cleanup work via services."""
    from lifecycle_msgs.msg import Transition

    env = node_env(ros_env)
    node = NodeProcess(env, params=["autostart:=false"])
    client = LifecycleClient(int(env["ROS_DOMAIN_ID"]), person11, rate_hz=10.0)
    try:
        assert node.wait_for_line("unconfigured", 120), node.output
        assert client.state() == "unconfigured"
        time.sleep(0.5)
        assert not client.maps_since(0.0), "an unconfigured node published maps"
        # activating an unconfigured node is refused by the state machine, not a crash
        assert not client.transition(Transition.TRANSITION_ACTIVATE)
        assert client.transition(Transition.TRANSITION_CONFIGURE)
        assert client.state() == "inactive"
        time.sleep(0.5)
        assert not client.maps_since(0.0), "an inactive node published maps"
        diag = client.wait_diag(lambda d: "inactive" in d["_message"], 0.0, 10.0)
        assert diag is not None and diag["_level"] == 0, diag  # paused is not an error
        t_on = time.monotonic()
        assert client.transition(Transition.TRANSITION_ACTIVATE)
        assert client.wait_map(t_on, 30.0) is not None, node.output[-3000:]
        # back to unconfigured and up again: the engine is loaded anew
        assert client.transition(Transition.TRANSITION_DEACTIVATE)
        assert client.transition(Transition.TRANSITION_CLEANUP)
        assert client.state() == "unconfigured"
        ok, message = client.set_enabled(True)  # ~/enable configures and activates
        assert ok and message == "active", message
        t_on = time.monotonic()
        assert client.wait_map(t_on, 30.0) is not None, node.output[-3000:]
        ok, message = client.set_enabled(False)
        assert ok and message == "inactive", message
        ok, message = client.set_enabled(False)  # idempotent
        assert ok and message == "inactive", message
        assert node.alive()
    finally:
        client.close()
        assert node.stop() == 0, node.output[-3000:]
    assert "Traceback" not in node.output


def test_bad_parameter_fails_configure_without_killing_the_node(ros_env, person11):
    """With autostart off, a configure that cannot load the model FAILS; the node lives on."""
    from lifecycle_msgs.msg import Transition

    env = node_env(ros_env)
    node = NodeProcess(env, params=["autostart:=false", "model_path:=/nonexistent/model.pt"])
    client = LifecycleClient(int(env["ROS_DOMAIN_ID"]), person11[:1], rate_hz=1.0)
    try:
        assert node.wait_for_line("unconfigured", 120), node.output
        assert not client.transition(Transition.TRANSITION_CONFIGURE)
        assert client.state() == "unconfigured"
        ok, message = client.set_enabled(True)
        assert not ok and "/nonexistent/model.pt" in message, message
        assert node.alive()
    finally:
        client.close()
        assert node.stop() == 0, node.output[-3000:]
    assert "Traceback" not in node.output


def test_remapping_only_the_image_still_finds_camera_info(ros_env, person11):
    """-r image:=/drone/cam/image_raw reads /drone/cam/camera_info (image_transport's rule).

    Also: ~/camera_info describes ~/saliency (K scaled to the map), so the ray through a map
    pixel is the ray through the matching input pixel.
    """
    from skd_saliency_ros.core.peaks import pixels_to_bearings

    env = node_env(ros_env)
    node = NodeProcess(env, remaps=["image:=/drone/cam/image_raw"])
    client = Client(int(env["ROS_DOMAIN_ID"]), image_topic="/drone/cam/image_raw",
                    info_topic="/drone/cam/camera_info")
    from sensor_msgs.msg import CameraInfo
    infos = []
    client.node.create_subscription(CameraInfo, "/saliency_node/camera_info", infos.append, 10)
    try:
        client.wait_connected(node)
        assert "info /drone/cam/camera_info" in node.output, node.output[-2000:]
        height, width = person11[0].shape[:2]
        for k, frame in enumerate(person11[:4]):
            msg = make_image(frame, "bgr8", 300.0 + 0.1 * k, "cam_optical")
            client.publish(msg, camera_info(width, height, fx=500.0))
            assert client.wait_for("bearings", stamp_of(msg)), node.output[-3000:]
            time.sleep(0.1)
        time.sleep(0.3)
        assert infos, "no ~/camera_info for the saliency map"
        sal = client.by_stamp("saliency")[stamp_of(msg)][0]
        info = [i for i in infos if stamp_of(i) == stamp_of(msg)][0]
        assert (info.width, info.height) == (sal.width, sal.height)
        assert info.header.frame_id == "cam_optical"
        full = camera_info(width, height, fx=500.0)
        s = sal.width / width
        pixels = np.array([[10.0, 20.0], [width - 1.0, height - 1.0], [300.0, 100.0]])
        rays_full = pixels_to_bearings(pixels, np.asarray(full.k), np.asarray(full.d),
                                       full.distortion_model)
        rays_map = pixels_to_bearings((pixels + 0.5) * s - 0.5, np.asarray(info.k),
                                      np.asarray(info.d), info.distortion_model)
        np.testing.assert_allclose(rays_map, rays_full, atol=1e-9)
    finally:
        client.close()
        assert node.stop() == 0, node.output[-3000:]


def test_diagnostics_expected_rate_bounds(ros_env, person11):
    """A camera below min_rate_hz WARNs; a silent camera is an ERROR, not merely stale."""
    env = node_env(ros_env)
    node = NodeProcess(env, params=["min_rate_hz:=[50.0]", "diagnostics_period_s:=0.5"])
    client = Client(int(env["ROS_DOMAIN_ID"]))
    try:
        client.wait_connected(node)

        def slow_window_with_output(d):  # a window that had maps: its latency is measured
            return "below 50 Hz" in d["_message"] and float(d["output_rate_hz"]) > 0 and \
                math.isfinite(float(d["stamp_latency_mean_ms"]))

        # Publish about 10 Hz (far below 50; camera clock = ours) until a window that had
        # maps WARNs; a loaded machine may need a while (the first window can hold no map).
        end, k, warn = time.monotonic() + 90.0, 0, None
        while warn is None and time.monotonic() < end:
            client.publish(make_image(person11[k % 12], "bgr8", time.time(), "cam"))
            k += 1
            time.sleep(0.1)
            if k % 5 == 0 and k >= 30:
                warn = client.wait_diagnostics(slow_window_with_output, timeout=0.01)
        assert warn is not None and warn["_level"] == b"\x01", client.last_diagnostics()
        # age of the frame at publish, from its stamp: transport + queue + inference
        assert 0.0 < float(warn["stamp_latency_mean_ms"]) < 1000.0, warn
        error = client.wait_diagnostics(lambda d: "no input images" in d["_message"],
                                        timeout=10.0)
        assert error is not None and error["_level"] == b"\x02", error
    finally:
        client.close()
        assert node.stop() == 0, node.output[-3000:]
