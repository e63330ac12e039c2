"""The three helper processes of the node benchmark: camera, pass-through and latency probe.

``python -m bench.node_bench_roles ROLE ...`` with ROLE one of

* ``camera``: publishes real video frames (rgb8, resized to --width x --height) at --rate Hz,
  header.stamp = wall-clock time at publish, best-effort like a camera driver; waits for a
  subscriber first, prints ``publishing`` then one JSON line with every stamp it sent;
* ``passthrough``: the yardstick.  Subscribes like the saliency node (best effort, depth 5)
  and republishes each Image unchanged (reliable, depth 5, as the node's outputs), so the
  chain costs exactly one extra hop of transport and (de)serialisation;
* ``probe``: subscribes to an Image topic *raw* (no deserialisation: the stamp is read from
  the CDR bytes) and prints one JSON line of (stamp_ns, receive_ns) pairs on exit.

Each process stops on SIGINT/SIGTERM and writes its JSON line to stdout, so the
orchestrator (bench/node_bench.py) needs nothing but pipes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import struct
import sys
import time
from pathlib import Path
from typing import List

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VIDEO = "uav_gaze/car10.mp4"


def _data_dir() -> Path:
    env = os.environ.get("SKD_DATA_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def _qos(reliable: bool, depth: int = 5):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=(ReliabilityPolicy.RELIABLE if reliable
                                   else ReliabilityPolicy.BEST_EFFORT),
                      durability=DurabilityPolicy.VOLATILE)


def load_frames(video: Path, count: int, width: int, height: int) -> List:
    """At most ``count`` real frames of ``video`` as RGB uint8 arrays of the requested size."""
    import cv2

    from skd_saliency_ros.core.frames import FrameSource, FrameSourceError

    try:  # opening reads the first frame: a source without one is refused here
        frames = itertools.islice(FrameSource(video).frames(), count)
        return [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in frames]
    except FrameSourceError as exc:
        raise SystemExit(f"camera: {exc}") from exc


def _stop_on_signals(flag: dict) -> None:
    def handler(_signum, _frame):
        flag["stop"] = True
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def camera(args) -> int:
    """Publish frames at a fixed rate until --duration or a signal; report the stamps."""
    import rclpy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from skd_saliency_ros.ros.image_io import numpy_to_image

    frames = load_frames(Path(args.video) if args.video else _data_dir() / DEFAULT_VIDEO,
                         args.frames, args.width, args.height)
    rclpy.init()
    node = rclpy.create_node("bench_camera")
    pub = node.create_publisher(Image, args.topic, _qos(reliable=False))
    msgs = [numpy_to_image(frame, "rgb8", Header(frame_id="bench_camera")) for frame in frames]
    flag = {"stop": False}
    _stop_on_signals(flag)
    deadline = time.monotonic() + args.wait_subscribers
    while pub.get_subscription_count() < args.subscribers and not flag["stop"]:
        if time.monotonic() > deadline:
            print(json.dumps({"error": f"no subscriber on {args.topic} after "
                                       f"{args.wait_subscribers} s"}), flush=True)
            return 1
        time.sleep(0.05)
    time.sleep(args.settle)  # discovery of the other direction (subscriber -> us) settles
    print("publishing", flush=True)
    period = 1.0 / args.rate
    sent = []
    start = time.monotonic()
    index = 0
    while not flag["stop"] and time.monotonic() - start < args.duration:
        target = start + index * period
        delay = target - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        msg = msgs[index % len(msgs)]
        now = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now, 1_000_000_000)
        pub.publish(msg)
        sent.append(now)
        index += 1
    print(json.dumps({"sent_ns": sent}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def passthrough(args) -> int:
    """Republish every received Image unchanged (the transport-only yardstick)."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_passthrough")
    pub = node.create_publisher(Image, args.out_topic, _qos(reliable=True))
    node.create_subscription(Image, args.in_topic, pub.publish, _qos(reliable=False))
    print("ready", flush=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def cdr_stamp_ns(raw: bytes) -> int:
    """header.stamp of a serialised message whose first field is std_msgs/Header."""
    if len(raw) < 12:
        raise ValueError(f"serialised message of {len(raw)} bytes has no header")
    endian = "<" if raw[1] == 1 else ">"  # CDR encapsulation: 0x0001 LE, 0x0000 BE
    sec, nanosec = struct.unpack_from(endian + "iI", raw, 4)
    return sec * 1_000_000_000 + nanosec


def probe(args) -> int:
    """Record (stamp, arrival) of every message on a topic, raw, until a signal."""
    import rclpy
    from sensor_msgs.msg import Image

    rclpy.init()
    node = rclpy.create_node("bench_probe")
    pairs = []

    def on_raw(raw: bytes) -> None:
        now = time.time_ns()
        pairs.append((cdr_stamp_ns(raw), now))

    node.create_subscription(Image, args.topic, on_raw, _qos(reliable=False, depth=10),
                             raw=True)
    flag = {"stop": False}
    _stop_on_signals(flag)
    print("ready", flush=True)
    while not flag["stop"] and rclpy.ok():
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps({"pairs_ns": pairs}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def main(argv=None) -> int:
    """Command line of the three roles."""
    parser = argparse.ArgumentParser(prog="python -m bench.node_bench_roles")
    sub = parser.add_subparsers(dest="role", required=True)
    cam = sub.add_parser("camera")
    cam.add_argument("--topic", default="/bench/image")
    cam.add_argument("--width", type=int, required=True)
    cam.add_argument("--height", type=int, required=True)
    cam.add_argument("--rate", type=float, default=30.0)
    cam.add_argument("--duration", type=float, required=True)
    cam.add_argument("--frames", type=int, default=30, help="distinct video frames cycled")
    cam.add_argument("--video", default=None, help="default: $SKD_DATA_DIR/" + DEFAULT_VIDEO)
    cam.add_argument("--subscribers", type=int, default=1)
    cam.add_argument("--wait-subscribers", type=float, default=120.0)
    cam.add_argument("--settle", type=float, default=1.0)
    pas = sub.add_parser("passthrough")
    pas.add_argument("--in-topic", default="/bench/image")
    pas.add_argument("--out-topic", default="/bench/passthrough")
    prb = sub.add_parser("probe")
    prb.add_argument("--topic", required=True)
    args = parser.parse_args(argv)
    return {"camera": camera, "passthrough": passthrough, "probe": probe}[args.role](args)


if __name__ == "__main__":
    sys.exit(main())
