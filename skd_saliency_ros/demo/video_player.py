"""Publish a video file as a camera would: sensor_msgs/Image (bgr8) at the video's frame rate.

Used by the demo (its own process, like a camera driver) and handy for trying the node on any
clip: ``python -m skd_saliency_ros.demo.video_player clip.mp4 --topic image``.  Each frame is
stamped with the ROS clock when it is published, so a subscriber can measure latency.
The player waits until someone subscribes before it starts, so no frame is sent into the void.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Optional

from skd_saliency_ros.core.frames import FrameSource, FrameSourceError


def play(video: Path, topic: str = "image", frame_id: str = "camera_optical_frame",
         rate_hz: Optional[float] = None, max_frames: Optional[int] = None,
         wait_s: float = 120.0) -> int:
    """Publish the frames of ``video``; return the number published."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from skd_saliency_ros.ros.image_io import numpy_to_image

    source = FrameSource(video, order="bgr")  # published as bgr8, as OpenCV decodes it
    fps = rate_hz or source.fps or 10.0
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
        for frame in itertools.islice(source.frames(), max_frames):
            delay = start + count / fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            stamp = node.get_clock().now().to_msg()
            pub.publish(numpy_to_image(frame, "bgr8", Header(stamp=stamp, frame_id=frame_id)))
            count += 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return count


def main(argv=None) -> int:
    """Command line: publish a video file on an Image topic."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", type=Path, help="video file (anything OpenCV decodes) or a "
                                                 "folder of frame images")
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
    except (FrameSourceError, TimeoutError) as exc:
        print(f"video_player: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"video_player: published {count} frames from {args.video}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
