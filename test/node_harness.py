"""Test harness for the saliency node: a real node process and a real rclpy client.

The node runs as its own process (``python -m skd_saliency_ros.ros.node --ros-args --params-file
config/saliency.yaml``), exactly as a user starts it; the test side is an rclpy node in its
own context on the same ROS domain that publishes real video frames and records every output.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
from skd_saliency_ros.core.frames import FrameSource
from skd_saliency_ros.core.processes import LoggedProcess

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = REPO_ROOT / "config" / "saliency.yaml"
SHM_PROFILE = REPO_ROOT / "config" / "fastdds_shm.xml"


def _test_side_profile() -> Path:
    """Write the shipped profile with 256 MiB segments, for this (test) process only.

    A shared-memory writer puts each sample into its own segment, so only the process that
    publishes the 8000x8000 test image (192 MB) needs a segment that large; the node under
    test keeps the shipped 32 MiB profile.
    """
    text = SHM_PROFILE.read_text()
    big = text.replace("<segment_size>33554432</segment_size>",
                       "<segment_size>268435456</segment_size>")
    assert big != text, f"{SHM_PROFILE}: no 32 MiB segment_size to enlarge"
    path = Path(tempfile.mkdtemp(prefix="skd_test_dds_")) / "fastdds_test.xml"
    path.write_text(big)
    return path


# Fast DDS reads its profile once per process, when the first participant is created; set it
# at import (pytest collects before any test runs) so this process uses shared memory too.
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(_test_side_profile()))


def node_env(ros_env: Dict[str, str]) -> Dict[str, str]:
    """Return the conftest ROS environment plus the shared-memory Fast DDS profile."""
    return dict(ros_env, FASTDDS_DEFAULT_PROFILES_FILE=str(SHM_PROFILE))


def read_frames(path: Path, count: int, start: int = 0) -> List[np.ndarray]:
    """Frames ``start`` .. ``start + count - 1`` (BGR, as OpenCV decodes them) of a real video.

    A video with fewer frames raises FrameSourceError naming it.
    """
    return list(FrameSource(path, order="bgr").frames(start, start + count))


class NodeProcess(LoggedProcess):
    """The saliency node in its own process; output captured line by line."""

    def __init__(self, env: Dict[str, str], params: Sequence[str] = (),
                 remaps: Sequence[str] = (), params_file: Path = PARAMS_FILE):
        cmd = [sys.executable, "-m", "skd_saliency_ros.ros.node", "--ros-args",
               "--params-file", str(params_file)]
        for p in params:
            cmd += ["-p", p]
        for r in remaps:
            cmd += ["-r", r]
        super().__init__(cmd, env, cwd=REPO_ROOT)


class Client:
    """rclpy test node: publishes images/CameraInfo, records every output of the node."""

    def __init__(self, domain_id: int, node_ns: str = "/saliency_node",
                 image_topic: str = "/image", info_topic: str = "/camera_info"):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseArray, Vector3Stamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("node_test_client", context=self.context)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_image = self.node.create_publisher(Image, image_topic, reliable)
        self.pub_info = self.node.create_publisher(CameraInfo, info_topic, reliable)
        self.lock = threading.Lock()
        self.received: Dict[str, List] = defaultdict(list)
        self.subs = {}
        for name, kind in (("saliency", Image), ("peaks", PoseArray),
                           ("bearings", PoseArray), ("overlay", Image),
                           ("target", Vector3Stamped)):
            self.subs[name] = self.node.create_subscription(
                kind, f"{node_ns}/{name}", lambda m, n=name: self._store(n, m), reliable)
        self.subs["diagnostics"] = self.node.create_subscription(
            DiagnosticArray, "/diagnostics", lambda m: self._store("diagnostics", m), 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self.executor.spin, daemon=True)
        self._spin.start()

    def _store(self, name: str, msg) -> None:
        with self.lock:
            self.received[name].append(msg)

    def listen(self, name: str, kind, topic: str) -> None:
        """Record another topic (reliable, depth 50) under ``name``, like the node's outputs."""
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.subs[name] = self.node.create_subscription(
            kind, topic, lambda m, n=name: self._store(n, m), reliable)

    def count(self, name: str) -> int:
        """Messages received on output ``name``."""
        with self.lock:
            return len(self.received[name])

    def by_stamp(self, name: str) -> Dict[tuple, List]:
        """Output messages grouped by header stamp (sec, nanosec)."""
        with self.lock:
            msgs = list(self.received[name])
        out: Dict[tuple, List] = defaultdict(list)
        for m in msgs:
            out[(m.header.stamp.sec, m.header.stamp.nanosec)].append(m)
        return out

    def wait_connected(self, node: NodeProcess, timeout: float = 120.0,
                       outputs: Sequence[str] = ("saliency", "peaks", "overlay")) -> None:
        """Wait until the node subscribes to our image topic and we see its outputs."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if not node.alive():
                raise AssertionError(f"node exited early:\n{node.output}")
            if self.pub_image.get_subscription_count() > 0 and \
                    all(self.subs[o].get_publisher_count() > 0 for o in outputs):
                time.sleep(0.5)  # let both directions finish matching
                return
            time.sleep(0.1)
        raise AssertionError(f"node did not connect within {timeout} s:\n{node.output}")

    def wait_matched(self, pub, node: NodeProcess, timeout: float = 120.0) -> None:
        """Wait until the node subscribes to ``pub`` and publishes ``~/saliency`` to us."""
        end = time.monotonic() + timeout
        while pub.get_subscription_count() == 0 or \
                self.subs["saliency"].get_publisher_count() == 0:
            assert node.alive() and time.monotonic() < end, node.output[-3000:]
            time.sleep(0.1)
        time.sleep(0.5)  # let both directions finish matching

    def wait_for(self, name: str, stamp: tuple, timeout: float = 30.0) -> bool:
        """Wait until an output ``name`` with header stamp ``stamp`` arrived."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if stamp in self.by_stamp(name):
                return True
            time.sleep(0.01)
        return False

    def wait_diagnostics(self, predicate, timeout: float = 20.0):
        """Wait for a DiagnosticStatus (as a key -> value dict) satisfying ``predicate``."""
        end = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < end:
            with self.lock:
                arrays = list(self.received["diagnostics"])
            for array in arrays[seen:]:
                for status in array.status:
                    values = {kv.key: kv.value for kv in status.values}
                    values["_level"] = status.level
                    values["_name"] = status.name
                    values["_message"] = status.message
                    if predicate(values):
                        return values
            seen = len(arrays)
            time.sleep(0.05)
        return None

    def last_diagnostics(self) -> Optional[dict]:
        """Return the newest DiagnosticStatus as a key -> value dict (None before any)."""
        with self.lock:
            arrays = list(self.received["diagnostics"])
        if not arrays or not arrays[-1].status:
            return None
        return {kv.key: kv.value for kv in arrays[-1].status[-1].values}

    def publish(self, image, info=None) -> None:
        """Publish CameraInfo (when given) then the image, as camera drivers do."""
        if info is not None:
            info.header = image.header
            self.pub_info.publish(info)
        self.pub_image.publish(image)

    def close(self) -> None:
        """Stop spinning and shut the context down."""
        self.executor.shutdown(timeout_sec=2.0)
        self._spin.join(timeout=5.0)  # out of rclpy before the node and context go away
        self.node.destroy_node()
        self.context.try_shutdown()


def make_image(arr: np.ndarray, encoding: str, stamp_s: float, frame_id: str):
    """sensor_msgs/Image of a dense array, stamped ``stamp_s`` (ros.image_io.numpy_to_image)."""
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    from skd_saliency_ros.ros.image_io import numpy_to_image

    stamp = Time(sec=int(stamp_s), nanosec=int(round((stamp_s - int(stamp_s)) * 1e9)))
    return numpy_to_image(arr, encoding, Header(stamp=stamp, frame_id=frame_id))


def stamp_of(msg) -> tuple:
    """Header stamp as a hashable (sec, nanosec)."""
    return (msg.header.stamp.sec, msg.header.stamp.nanosec)


def default_output_size(height: int, width: int):
    """(H, W) of ~/saliency for an input of that size at the default output_scale."""
    from skd_saliency_ros.ros.outputs import saliency_size
    from skd_saliency_ros.ros.params import SPECS

    width, height = saliency_size(width, height, SPECS["output_scale"].default)
    return height, width


def camera_info(width: int, height: int, fx: float):
    """Build a pinhole CameraInfo (no distortion) for a width x height image."""
    from sensor_msgs.msg import CameraInfo

    info = CameraInfo()
    info.width, info.height = width, height
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    info.k = [fx, 0.0, cx, 0.0, fx, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, 0.0, 0.0, fx, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def image_to_array(msg) -> np.ndarray:
    """Decode a 32FC1 or bgr8 output image (dense rows) to numpy."""
    if msg.encoding == "32FC1":
        return np.frombuffer(bytes(msg.data), np.float32).reshape(msg.height, msg.width)
    if msg.encoding == "bgr8":
        return np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.width, 3)
    raise AssertionError(f"unexpected output encoding {msg.encoding}")


def run_node_to_exit(env: Dict[str, str], model_path, timeout: float = 120.0):
    """Start the node with ``model_path`` and the shipped config; (exit code, its output)."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "skd_saliency_ros.ros.node", "--ros-args", "--params-file",
         str(PARAMS_FILE), "-p", f"model_path:={model_path}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def assert_refused_at_start(env: Dict[str, str], params: Sequence[str], needle: str) -> None:
    """Start the node with ``params``: it must exit 1 with one error line naming ``needle``."""
    node = NodeProcess(env, params=list(params))
    try:
        node.proc.wait(timeout=120)
    finally:
        code = node.stop()
    assert code == 1, node.output
    errors = [line for line in node.output.splitlines() if "FATAL" in line or "ERROR" in line]
    assert len(errors) == 1 and needle in errors[0], node.output
    assert "Traceback" not in node.output


def model_params() -> List[str]:
    """Return the parameter overrides that select the model (none: the trained default).

    The tests run the real default model; a missing one is a failure, never a skip.
    """
    import pytest

    from skd_saliency_ros.core.checkpoint import DEFAULT_MODEL

    if not DEFAULT_MODEL.is_file():
        pytest.fail(f"default model {DEFAULT_MODEL} is missing; train it first "
                    "(docs/TRAINING.md)")
    return []


def set_parameters(params, **values):
    """Call SetParameters on the node's service; return (results, values after)."""
    from rclpy.parameter import Parameter, parameter_value_to_python

    future = params.set_parameters([Parameter(k, value=v) for k, v in values.items()])
    end = time.monotonic() + 30.0
    while not future.done() and time.monotonic() < end:
        time.sleep(0.02)
    assert future.done(), "set_parameters timed out"
    results = future.result().results
    got = params.get_parameters(list(values))
    end = time.monotonic() + 30.0
    while not got.done() and time.monotonic() < end:
        time.sleep(0.02)
    current = {k: parameter_value_to_python(v)
               for k, v in zip(values, got.result().values)}
    return results, current
