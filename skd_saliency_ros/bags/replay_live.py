r"""Live replay: play a bag into DDS at recorded speed and record a running node's answers.

The bag's image (and CameraInfo) messages are published verbatim (their recorded CDR bytes)
on their recorded topics, each preceded by /clock at the message's recording time, so a node
started with ``use_sim_time:=true`` runs on the bag's clock.  The node's ``saliency``,
``peaks`` and ``bearings`` answers are matched to the sent frames by header stamp; a frame
without an answer on a topic after ``--drain`` seconds is a drop on that topic, and latency is
the wall time from publishing the frame to receiving the answer (both in this process).

Start the node first (shared-memory transport recommended for full-HD images)::

    FASTDDS_DEFAULT_PROFILES_FILE=config/fastdds_shm.xml python -m skd_saliency_ros.ros.node \\
        --ros-args --params-file config/saliency.yaml -r image:=/camera/image_raw \\
        -r camera_info:=/camera/camera_info -p use_sim_time:=true
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from skd_saliency_ros.bags.bag_io import CAMERA_INFO_TYPE, COMPRESSED_TYPE, IMAGE_TYPE, InputBag
from skd_saliency_ros.core.stamps import stamp_ns

OUTPUT_TOPICS = (("saliency", IMAGE_TYPE), ("peaks", "geometry_msgs/msg/PoseArray"),
                 ("bearings", "geometry_msgs/msg/PoseArray"))


def _msg_class(msgtype: str):
    from geometry_msgs.msg import PoseArray
    from sensor_msgs.msg import CameraInfo, CompressedImage, Image
    return {IMAGE_TYPE: Image, COMPRESSED_TYPE: CompressedImage, CAMERA_INFO_TYPE: CameraInfo,
            "geometry_msgs/msg/PoseArray": PoseArray}[msgtype]


class _Recorder:
    """Raw subscriptions on the node's outputs; keeps (stamp -> receive time, bytes)."""

    def __init__(self, node, ns: str):
        from rclpy.serialization import deserialize_message
        self._deserialize = deserialize_message
        qos = _reliable_qos(depth=100)
        self.lock = threading.Lock()
        self.received: Dict[str, Dict[int, tuple]] = {}
        self.duplicates: Dict[str, int] = {}
        self.subs = {}
        for suffix, msgtype in OUTPUT_TOPICS:
            topic = f"{ns}/{suffix}"
            self.received[topic] = {}
            self.duplicates[topic] = 0
            self.subs[topic] = node.create_subscription(
                _msg_class(msgtype), topic,
                lambda raw, t=topic, c=_msg_class(msgtype): self._on(t, c, raw), qos, raw=True)

    def _on(self, topic: str, cls, raw: bytes) -> None:
        now = time.monotonic()
        stamp = stamp_ns(self._deserialize(raw, cls).header.stamp)
        with self.lock:
            if stamp in self.received[topic]:
                self.duplicates[topic] += 1
            else:
                self.received[topic][stamp] = (now, raw)

    def count(self, topic: str) -> int:
        with self.lock:
            return len(self.received[topic])


def _wait_for(cond, timeout: float, period: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(period)
    return cond()


def _latency_stats(values: List[float]) -> Dict[str, Optional[float]]:
    if not values:
        return {"mean_ms": None, "p50_ms": None, "p95_ms": None, "max_ms": None}
    ms = 1000.0 * np.asarray(values)
    return {"mean_ms": round(float(ms.mean()), 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2), "max_ms": round(float(ms.max()), 2)}


def replay_live(bag_path: Path, out: Optional[Path], args,
                gaze_path: Optional[Path] = None) -> dict:
    """Play one bag into DDS, record the answers, return per-topic drops and latency.

    The running node answers with its own parameters; replay's settings play no part here.
    """
    from skd_saliency_ros.bags.replay_common import load_sequence_gaze
    ns = args.ns.rstrip("/")
    with _player_node() as node, InputBag(bag_path, topic=args.topic,
                                          distro=args.distro) as bag:
        gaze = load_sequence_gaze(gaze_path, bag, args.match) if gaze_path else None
        recorder = _Recorder(node, ns)
        pubs = _publishers(node, bag)
        _wait_for_node(pubs[bag.image_topic], recorder, bag.image_topic, ns, args.wait)
        sent, inputs, played = _play(bag, pubs, args)
        expect = {f"{ns}/saliency": True, f"{ns}/peaks": True,
                  f"{ns}/bearings": bag.info_topic is not None}
        received = _collect(recorder, sent, expect, args.drain)
        stats = {"bag": str(bag_path), "frames": len(sent), "seconds": round(played, 3),
                 "fps": round(len(sent) / played, 2) if played > 0 else None,
                 "rate": args.rate, "topic": bag.image_topic, "camera_info": bag.info_topic,
                 "topics": _topic_stats(expect, received, sent, recorder.duplicates),
                 "output": str(out) if out is not None else None}
        if out is not None:
            _write_live_bag(out, args, bag, inputs, received, sent, ns)
        if gaze is not None:
            _score_live(stats, received[f"{ns}/saliency"], sent, gaze, args)
    _print_topics(stats)
    return stats


@contextlib.contextmanager
def _player_node():
    """Yield an rclpy node in its own context, spun on a thread; tear it all down after."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    context = rclpy.Context()
    rclpy.init(context=context)
    node = executor = spinner = None
    try:
        node = rclpy.create_node("saliency_replay_player", context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        yield node
    finally:
        if executor is not None:
            executor.shutdown()
        if spinner is not None:  # out of rclpy before the node and context go away
            spinner.join(timeout=2.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)


def _reliable_qos(depth: int):
    """Reliable, volatile, keep-last ``depth``: the bag's publishers and the output recorder."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def _publishers(node, bag) -> dict:
    """Return topic -> publisher: /clock, the bag's image topic and its CameraInfo (if any)."""
    from rosgraph_msgs.msg import Clock
    qos = _reliable_qos(depth=10)
    pubs = {"/clock": node.create_publisher(Clock, "/clock", qos),
            bag.image_topic: node.create_publisher(_msg_class(bag.image_type),
                                                   bag.image_topic, qos)}
    if bag.info_topic:
        pubs[bag.info_topic] = node.create_publisher(_msg_class(CAMERA_INFO_TYPE),
                                                     bag.info_topic, qos)
    return pubs


def _wait_for_node(image_pub, recorder: _Recorder, image_topic: str, ns: str,
                   wait_s: float) -> None:
    """Wait until a node takes the images and publishes saliency, or raise ReplayError."""
    from skd_saliency_ros.bags.replay_common import ReplayError
    saliency_topic = f"{ns}/saliency"
    if not _wait_for(lambda: image_pub.get_subscription_count() > 0
                     and recorder.subs[saliency_topic].get_publisher_count() > 0, wait_s):
        raise ReplayError(
            f"live: no saliency node answered within {wait_s:g} s: nobody "
            f"subscribes to '{image_topic}' and publishes '{saliency_topic}'. "
            "Start the node first (see docs/EVALUATION.md), remap its 'image' input "
            f"to {image_topic} and check --ns and ROS_DOMAIN_ID")
    time.sleep(0.5)  # let discovery of the remaining endpoints settle


def _play(bag, pubs: dict, args):
    """Publish the bag at recorded speed (x --rate), each message after /clock at its time.

    Return (sent: header stamp -> (send time, ordinal, bag_ns), inputs: (topic, msgtype,
    bag_ns, raw) of every message published, seconds of playing).
    """
    from rosgraph_msgs.msg import Clock
    from tqdm import tqdm
    total = bag.image_count if args.max_frames is None else min(bag.image_count,
                                                                args.max_frames)
    sent: Dict[int, tuple] = {}
    inputs: List[tuple] = []
    bar = tqdm(total=total, desc=f"live {bag.path.name}", unit="frame",
               disable=not args.progress)
    first_ns, ordinal, t0 = None, -1, None
    for m in bag.messages():
        if m.topic == bag.image_topic:
            ordinal += 1
            if args.max_frames is not None and ordinal >= args.max_frames:
                break
        if first_ns is None:
            first_ns, t0 = m.bag_ns, time.monotonic()
        delay = t0 + (m.bag_ns - first_ns) / 1e9 / args.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        clock = Clock()
        clock.clock.sec, clock.clock.nanosec = divmod(int(m.bag_ns), 1_000_000_000)
        pubs["/clock"].publish(clock)
        now = time.monotonic()
        pubs[m.topic].publish(m.raw)
        inputs.append((m.topic, m.msgtype, m.bag_ns, m.raw))
        if m.topic == bag.image_topic:
            sent[stamp_ns(m.msg.header.stamp)] = (now, ordinal, m.bag_ns)
            bar.update(1)
    bar.close()
    return sent, inputs, (time.monotonic() - t0 if t0 is not None else 0.0)


def _collect(recorder: _Recorder, sent: Dict[int, tuple], expect: Dict[str, bool],
             drain_s: float) -> Dict[str, Dict[int, tuple]]:
    """Wait up to ``drain_s`` for every expected answer; return a copy of what came."""
    _wait_for(lambda: all(recorder.count(t) >= len(sent)
                          for t, want in expect.items() if want), drain_s)
    time.sleep(0.2)
    with recorder.lock:
        return {t: dict(v) for t, v in recorder.received.items()}


def _topic_stats(expect: Dict[str, bool], received: Dict[str, Dict[int, tuple]],
                 sent: Dict[int, tuple], duplicates: Dict[str, int]) -> dict:
    """Per output topic: expected, received, drops, unmatched, duplicates, latency."""
    topics = {}
    for topic, want in expect.items():
        got = received[topic]
        matched = [s for s in sent if s in got]
        topics[topic] = {
            "expected": len(sent) if want else 0, "received": len(got),
            "drops": len(sent) - len(matched) if want else 0,
            "unmatched": len(set(got) - set(sent)),
            "duplicates": duplicates[topic],
            "latency": _latency_stats([got[s][0] - sent[s][0] for s in matched])}
    return topics


def _write_live_bag(out: Path, args, bag, inputs: List[tuple],
                    received: Dict[str, Dict[int, tuple]], sent: Dict[int, tuple],
                    ns: str) -> None:
    """Write the played input and the answers, each answer at its frame's recording time."""
    from skd_saliency_ros.bags.replay_common import input_storage, maybe_output_bag
    storage = args.storage or input_storage(bag.path)
    with maybe_output_bag(out, args.overwrite, storage, args.distro) as obag:
        for topic, msgtype, bag_ns, raw in inputs:
            obag.write_raw(topic, msgtype, bag_ns, raw, typestore=bag.reader.typestore)
        for suffix, msgtype in OUTPUT_TOPICS:
            topic = f"{ns}/{suffix}"
            for stamp, (_, raw) in sorted(received[topic].items()):
                bag_ns = sent[stamp][2] if stamp in sent else stamp
                obag.write_raw(topic, msgtype, bag_ns, raw)


def _print_topics(stats: dict) -> None:
    from skd_saliency_ros.bags.replay_common import PROG
    for topic, t in stats["topics"].items():
        if t["expected"]:
            lat = t["latency"]
            print(f"{PROG}: live {topic}: {t['received']}/{t['expected']} received, "
                  f"{t['drops']} dropped, latency mean {lat['mean_ms']} ms, p95 "
                  f"{lat['p95_ms']} ms, max {lat['max_ms']} ms", flush=True)


def _score_live(stats: dict, saliency: Dict[int, tuple], sent: Dict[int, tuple], gaze,
                args) -> None:
    """Score the received maps (dropped frames are not scored; their count is reported)."""
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image

    from skd_saliency_ros.ros.image_io import image_to_numpy
    from skd_saliency_ros.bags.replay_common import FrameMatcher, add_scores
    matcher = FrameMatcher(args.match, gaze)
    maps = []
    for stamp in sorted(sent):
        if stamp in saliency:
            msg = deserialize_message(saliency[stamp][1], Image)
            maps.append((matcher(sent[stamp][1], stamp), np.array(image_to_numpy(msg))))
    if not maps:
        print("saliency_replay: live: no saliency map came back; nothing to score",
              file=sys.stderr)
        return
    add_scores(stats, maps, gaze)
