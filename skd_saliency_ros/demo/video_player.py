"""Publish a video file as a camera would: sensor_msgs/Image (bgr8) at the video's frame rate.

Used by the demo (its own process, like a camera driver) and handy for trying the node on any
clip: ``python -m skd_saliency_ros.demo.video_player clip.mp4 --topic image``.  Each frame is
stamped with the ROS clock when it is published, so a subscriber can measure latency.
The player waits until someone subscribes before it starts, so no frame is sent into the void.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import cv2
import numpy as np


def open_video(path: Path) -> cv2.VideoCapture:
    """Open ``path`` with OpenCV or raise a clear error naming the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: OpenCV cannot decode this video")
    return cap


def frame_message(frame: np.ndarray, stamp, frame_id: str):
    """Image message of a BGR frame (data filled with tobytes: one copy, no per-byte loop)."""
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(frame.shape[0]), int(frame.shape[1])
    msg.encoding = "bgr8"
    msg.step = int(frame.shape[1] * 3)
    msg.data = np.ascontiguousarray(frame).tobytes()
    return msg


def play(video: Path, topic: str = "image", frame_id: str = "camera_optical_frame",
         rate_hz: Optional[float] = None, max_frames: Optional[int] = None,
         wait_s: float = 120.0) -> int:
    """Publish the frames of ``video``; return the number published."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    cap = open_video(video)
    fps = rate_hz or cap.get(cv2.CAP_PROP_FPS) or 10.0
    rclpy.init()
    node = rclpy.create_node("video_player")
    pub = node.create_publisher(Image, topic, QoSProfile(
        depth=5, reliability=ReliabilityPolicy.RELIABLE))
    count = 0
    try:
        end = time.monotonic() + wait_s
        while pub.get_subscription_count() == 0:
            if time.monotonic() > end:
                raise TimeoutError(f"nobody subscribed to {pub.topic_name} within {wait_s} s")
            time.sleep(0.05)
        time.sleep(0.5)  # let the match settle on both sides
        start = time.monotonic()
        while max_frames is None or count < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            delay = start + count / fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pub.publish(frame_message(frame, node.get_clock().now().to_msg(), frame_id))
            count += 1
    finally:
        cap.release()
        node.destroy_node()
        rclpy.try_shutdown()
    return count


def main(argv=None) -> int:
    """Command line: publish a video file on an Image topic."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path, help="video file (anything OpenCV decodes)")
    parser.add_argument("--topic", default="image", help="Image topic (default: image)")
    parser.add_argument("--frame-id", default="camera_optical_frame",
                        help="header.frame_id of the images")
    parser.add_argument("--rate", type=float, default=None,
                        help="frames per second (default: the video's own rate)")
    parser.add_argument("--frames", type=int, default=None,
                        help="stop after this many frames (default: the whole video)")
    args = parser.parse_args(argv)
    if args.rate is not None and not args.rate > 0:
        parser.error(f"--rate must be > 0, got {args.rate}")
    try:
        count = play(args.video, args.topic, args.frame_id, args.rate, args.frames)
    except (FileNotFoundError, ValueError, TimeoutError) as exc:
        print(f"video_player: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"video_player: published {count} frames from {args.video}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
