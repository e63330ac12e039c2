"""Record what the saliency node publishes: overlay video, peaks CSV, latency.

The demo's recorder, usable on any running node: it subscribes to ``<node>/overlay``,
``<node>/peaks`` and ``<node>/saliency``, writes the overlays to an MP4 and one CSV row per
peak, and measures end-to-end latency as (time the saliency map arrives) - (its header
stamp), which is the camera's publish time when the camera stamps with the system clock.
"""

from __future__ import annotations

import csv
import threading
import time
from pathlib import Path
from typing import List, Optional, Tuple

import cv2
import numpy as np

CSV_COLUMNS = ("frame", "stamp_s", "rank", "x_px", "y_px", "score")


def output_files(out_dir: Path) -> Tuple[Path, Path]:
    """Return the overlay video and the peaks CSV a recorder writes (and replaces) in out_dir."""
    out_dir = Path(out_dir)
    return out_dir / "overlay.mp4", out_dir / "peaks.csv"


def _stamp_s(header) -> float:
    return float(header.stamp.sec) + 1e-9 * float(header.stamp.nanosec)


class Recorder:
    """Subscribe to a node's outputs in ``context`` and write them under ``out_dir``."""

    def __init__(self, context, out_dir: Path, node_ns: str = "/saliency_node",
                 fps: float = 10.0):
        import rclpy
        from geometry_msgs.msg import PoseArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.video_path, self.csv_path = output_files(self.out_dir)
        self.fps = fps
        self._lock = threading.Lock()
        self._writer: Optional[cv2.VideoWriter] = None
        self._csv_file = open(self.csv_path, "w", newline="")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(CSV_COLUMNS)
        self._frame_of_stamp = {}
        self.latencies_s: List[float] = []
        self.overlays = 0
        self.peak_msgs = 0
        self.node = rclpy.create_node("saliency_demo_recorder", context=context)
        qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
        self.subs = [
            self.node.create_subscription(Image, f"{node_ns}/saliency", self._on_saliency, qos),
            self.node.create_subscription(Image, f"{node_ns}/overlay", self._on_overlay, qos),
            self.node.create_subscription(PoseArray, f"{node_ns}/peaks", self._on_peaks, qos),
        ]

    def connected(self) -> bool:
        """Return True once every output topic has a publisher (the node is up)."""
        return all(s.get_publisher_count() > 0 for s in self.subs)

    def _frame_index(self, header) -> int:
        key = (header.stamp.sec, header.stamp.nanosec)
        return self._frame_of_stamp.setdefault(key, len(self._frame_of_stamp))

    def _on_saliency(self, msg) -> None:
        latency = time.time() - _stamp_s(msg.header)
        with self._lock:
            self.latencies_s.append(latency)
            self._frame_index(msg.header)

    def _on_overlay(self, msg) -> None:
        frame = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
        frame = frame[:, :msg.width * 3].reshape(msg.height, msg.width, 3)
        with self._lock:
            if self._writer is None:
                self._writer = cv2.VideoWriter(str(self.video_path),
                                               cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                               (msg.width, msg.height))
                if not self._writer.isOpened():
                    raise RuntimeError(f"{self.video_path}: OpenCV cannot write MP4 here")
                self._size = (msg.width, msg.height)
            if (msg.width, msg.height) != self._size:  # one video size per file
                frame = cv2.resize(np.ascontiguousarray(frame), self._size)
            self._writer.write(np.ascontiguousarray(frame))
            self.overlays += 1

    def _on_peaks(self, msg) -> None:
        with self._lock:
            index = self._frame_index(msg.header)
            stamp = f"{_stamp_s(msg.header):.6f}"
            for rank, pose in enumerate(msg.poses):
                self._csv.writerow((index, stamp, rank + 1, f"{pose.position.x:.2f}",
                                    f"{pose.position.y:.2f}", f"{pose.position.z:.4f}"))
            self.peak_msgs += 1

    def close(self) -> None:
        """Finish the files and destroy the node."""
        with self._lock:
            if self._writer is not None:
                self._writer.release()
            self._csv_file.close()
        self.node.destroy_node()

    def mean_latency_ms(self) -> float:
        """Mean end-to-end latency of the saliency maps received so far."""
        with self._lock:
            return 1000.0 * float(np.mean(self.latencies_s)) if self.latencies_s else float("nan")
