"""rosbag2 reading and writing with the ``rosbags`` library (no rosbag2_py, no ros2 CLI).

Reading goes through ``rosbags.highlevel.AnyReader``: it builds its type store from the
definitions stored in the bag, so bags from Humble, Jazzy or newer all decode; bags without
stored definitions fall back to the chosen distro's store.  Every failure (missing path,
truncated or corrupt storage, wrong message type) becomes a :class:`BagError` that names the
bag and the problem.

Writing is atomic: a bag is built in a hidden temporary directory beside the final path and
renamed into place only when it is complete, so an interrupted run never leaves a
half-written bag under the final name.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.frames import FrameSource
from skd_saliency_ros.core.output_paths import Output, check_outputs
from skd_saliency_ros.core.processes import raise_if_stop_requested

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
IMAGE_TYPES = (IMAGE_TYPE, COMPRESSED_TYPE)
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
DISTROS = ("humble", "jazzy")
STORAGES = ("sqlite3", "mcap")


class BagError(SkdError, ValueError):
    """A bag that is missing, unreadable, or does not hold what was asked for."""


def typestore_for(distro: str = "humble"):
    """Return the rosbags type store of a ROS 2 distro ("humble" or "jazzy")."""
    from rosbags.typesys import Stores, get_typestore
    stores = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}
    if distro not in stores:
        raise BagError(f"unknown distro '{distro}'; choose one of {', '.join(DISTROS)}")
    return get_typestore(stores[distro])


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no detail'}"


@dataclass
class BagMessage:
    """One message read from a bag, with its raw CDR bytes for verbatim copying."""

    topic: str
    msgtype: str
    bag_ns: int      # recording timestamp
    raw: bytes
    msg: object      # rosbags dataclass (same field names as the rclpy message)
    connection: object


class InputBag:
    """A rosbag2 opened for reading, with its image topic (and CameraInfo) chosen.

    Use as a context manager.  ``topic`` selects the image topic; without it the bag must
    hold exactly one sensor_msgs/Image or CompressedImage topic.
    """

    def __init__(self, path, topic: Optional[str] = None, distro: str = "humble"):
        self.path = Path(path)
        self.requested_topic = topic
        self.distro = distro
        self.reader = None
        self.image_topic: Optional[str] = None
        self.image_type: Optional[str] = None
        self.info_topic: Optional[str] = None
        self.image_count = 0
        self.custom_data: dict = {}

    # -- opening -----------------------------------------------------------------------
    def __enter__(self) -> "InputBag":
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        """Open the bag and pick the topics; raise BagError with the reason otherwise."""
        from rosbags.highlevel import AnyReader
        if not self.path.exists():
            raise BagError(f"{self.path}: no such bag (expected a rosbag2 directory with "
                           "metadata.yaml, or a .db3 / .mcap file)")
        if self.path.is_dir() and not (self.path / "metadata.yaml").is_file():
            raise BagError(f"{self.path}: not a rosbag2 directory (no metadata.yaml)")
        try:
            reader = AnyReader([self.path], default_typestore=typestore_for(self.distro))
            reader.open()
        except BagError:
            raise
        except Exception as exc:  # sqlite3, mcap, yaml and rosbags errors all land here
            raise BagError(f"{self.path}: cannot open bag: it is truncated or corrupt, or not "
                           f"a rosbag2 ({_short(exc)})") from exc
        self.reader = reader
        self.custom_data = _custom_data(self.path)
        try:
            self._choose_topics()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the reader (idempotent)."""
        if self.reader is not None:
            with contextlib.suppress(Exception):
                self.reader.close()
            self.reader = None

    def topics(self) -> dict:
        """Map topic -> message type of every topic in the bag."""
        return {c.topic: c.msgtype for c in self.reader.connections}

    def _choose_topics(self) -> None:
        topics = self.topics()
        listing = ", ".join(f"{t} [{m}]" for t, m in sorted(topics.items())) or "no topics"
        if self.requested_topic is not None:
            topic = self.requested_topic
            if topic not in topics:
                raise BagError(f"{self.path}: topic '{topic}' is not in the bag "
                               f"(it has: {listing})")
            if topics[topic] not in IMAGE_TYPES:
                raise BagError(f"{self.path}: topic '{topic}' carries {topics[topic]}, not an "
                               f"image type ({' or '.join(IMAGE_TYPES)})")
        else:
            images = sorted(t for t, m in topics.items() if m in IMAGE_TYPES)
            if not images:
                raise BagError(f"{self.path}: no image topic (sensor_msgs/msg/Image or "
                               f"CompressedImage) in the bag; it has: {listing}")
            if len(images) > 1:
                raise BagError(f"{self.path}: several image topics ({', '.join(images)}); "
                               "choose one with --topic")
            topic = images[0]
        self.image_topic, self.image_type = topic, topics[topic]
        infos = sorted(t for t, m in topics.items() if m == CAMERA_INFO_TYPE)
        base = topic.rsplit("/", 1)[0]
        if topic.endswith("/compressed"):  # image_transport: /cam/image_raw/compressed
            base = base.rsplit("/", 1)[0]
        same_ns = [t for t in infos if t.rsplit("/", 1)[0] == base]
        self.info_topic = same_ns[0] if same_ns else (infos[0] if len(infos) == 1 else None)
        self.image_count = sum(c.msgcount for c in self.reader.connections if c.topic == topic)

    # -- reading -----------------------------------------------------------------------
    def image_size(self) -> Optional[Tuple[int, int]]:
        """(width, height) of the first image that decodes (None: none does).

        A gaze file is checked against it before any work; images that do not decode are
        skipped here as replay skips them.
        """
        from skd_saliency_ros.ros.image_io import ImageEncodingError
        for m in self.messages([self.image_topic]):
            try:
                rgb = decode_rgb(m.msg, m.msgtype)
            except ImageEncodingError:
                continue
            return int(rgb.shape[1]), int(rgb.shape[0])
        return None

    def connections(self, topics: Optional[Sequence[str]] = None) -> List[object]:
        """Return the connections of ``topics`` (default: the image and CameraInfo topics)."""
        if topics is None:
            topics = [t for t in (self.image_topic, self.info_topic) if t]
        return [c for c in self.reader.connections if c.topic in topics]

    def messages(self, topics: Optional[Sequence[str]] = None) -> Iterator[BagMessage]:
        """Yield the messages of ``topics`` in recording order, deserialized."""
        conns = self.connections(topics)
        try:
            for conn, bag_ns, raw in self.reader.messages(connections=conns):
                raise_if_stop_requested()
                try:
                    msg = self.reader.deserialize(raw, conn.msgtype)
                except Exception as exc:
                    raise BagError(f"{self.path}: message on '{conn.topic}' at {bag_ns} ns "
                                   f"cannot be decoded as {conn.msgtype} ({_short(exc)})"
                                   ) from exc
                yield BagMessage(conn.topic, conn.msgtype, bag_ns, bytes(raw), msg, conn)
        except BagError:
            raise
        except Exception as exc:
            raise BagError(f"{self.path}: reading failed, the bag is truncated or corrupt "
                           f"({_short(exc)})") from exc


def _custom_data(path: Path) -> dict:
    """``custom_data`` of a bag directory's metadata.yaml ({} when absent)."""
    meta = path / "metadata.yaml"
    if not meta.is_file():
        return {}
    try:
        import yaml
        info = yaml.safe_load(meta.read_text()).get("rosbag2_bagfile_information", {})
        return dict(info.get("custom_data") or {})
    except Exception:  # noqa: BLE001 - the reader already accepted the file
        return {}


def decode_rgb(msg, msgtype: str, min_size: Optional[int] = None,
               max_pixels: Optional[int] = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a (rosbags or rclpy) Image or CompressedImage message.

    The node's size rule applies (``min_input_size`` / ``max_input_pixels``, the node's
    defaults unless given): a compressed image is checked from its header before decoding,
    so a small file in a bag that declares a huge image is refused, never decoded.
    """
    from skd_saliency_ros.ros.image_io import (ImageEncodingError, check_size,
                                               compressed_to_rgb8, image_to_rgb8)
    from skd_saliency_ros.ros.params import SPECS

    min_size = SPECS["min_input_size"].default if min_size is None else int(min_size)
    max_pixels = SPECS["max_input_pixels"].default if max_pixels is None else int(max_pixels)
    if msgtype == IMAGE_TYPE:
        check_size(int(msg.width), int(msg.height), min_size, max_pixels)
        return image_to_rgb8(msg)
    if msgtype == COMPRESSED_TYPE:
        return compressed_to_rgb8(msg, min_size, max_pixels)
    raise ImageEncodingError(f"{msgtype} is not an image type")


# -- writing ---------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_bag_path(out, overwrite: bool = False):
    """Yield a temporary bag path beside ``out``; move it to ``out`` only on success.

    On any exception (including KeyboardInterrupt) the temporary bag is deleted and ``out``
    is untouched.  With ``overwrite`` an existing ``out`` is replaced only after the new bag
    is complete.
    """
    out = Path(out)
    check_outputs([Output("output bag", out, folder=True)], overwrite=overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield tmpdir / out.name
        if out.exists():
            if out.is_dir() and not out.is_symlink():
                shutil.rmtree(out)
            else:
                out.unlink()
        os.replace(tmpdir / out.name, out)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


class OutputBag:
    """A rosbags Writer used inside :func:`atomic_bag_path`."""

    def __init__(self, path, storage: str = "sqlite3", distro: str = "humble"):
        from rosbags.rosbag2 import StoragePlugin, Writer
        if storage not in STORAGES:
            raise BagError(f"unknown storage '{storage}'; choose one of {', '.join(STORAGES)}")
        plugin = StoragePlugin.SQLITE3 if storage == "sqlite3" else StoragePlugin.MCAP
        self.typestore = typestore_for(distro)
        self.writer = Writer(Path(path), version=Writer.VERSION_LATEST, storage_plugin=plugin)
        self._conns = {}

    def __enter__(self) -> "OutputBag":
        self.writer.open()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.writer.close()
        else:
            with contextlib.suppress(Exception):
                self.writer.abort()

    def connection(self, topic: str, msgtype: str, typestore=None):
        """Return (creating once) the connection of ``topic``."""
        if topic not in self._conns:
            self._conns[topic] = self.writer.add_connection(
                topic, msgtype, typestore=typestore or self.typestore)
        return self._conns[topic]

    def write_raw(self, topic: str, msgtype: str, bag_ns: int, raw: bytes,
                  typestore=None) -> None:
        """Write already-serialized CDR bytes (verbatim copy of an input message)."""
        self.writer.write(self.connection(topic, msgtype, typestore), int(bag_ns), raw)

    def write(self, topic: str, msgtype: str, bag_ns: int, msg) -> None:
        """Serialize a rosbags message of this bag's type store and write it."""
        raw = self.typestore.serialize_cdr(msg, msgtype)
        self.writer.write(self.connection(topic, msgtype), int(bag_ns), raw)


# -- message builders (rosbags types) ---------------------------------------------------
def ros_time(typestore, ns: int):
    """builtin_interfaces/Time from integer nanoseconds."""
    Time = typestore.types["builtin_interfaces/msg/Time"]
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def header(typestore, ns: int, frame_id: str):
    """std_msgs/Header."""
    Header = typestore.types["std_msgs/msg/Header"]
    return Header(stamp=ros_time(typestore, ns), frame_id=frame_id)


def image_msg(typestore, arr: np.ndarray, encoding: str, hdr):
    """sensor_msgs/Image (rosbags type) from a dense array in the encoding's layout.

    The rosbags twin of ros.image_io.numpy_to_image: the same checks, step and byte order
    (ros.image_io.image_fields); only ``data`` differs, because a rosbags message is a plain
    dataclass whose uint8[] field is the numpy array itself (its serializer wants one), where
    an rclpy message takes an array.array.
    """
    from skd_saliency_ros.ros.image_io import image_fields
    fields = image_fields(arr, encoding)
    Image = typestore.types[IMAGE_TYPE]
    return Image(header=hdr, height=fields.height, width=fields.width, encoding=encoding,
                 is_bigendian=fields.is_bigendian, step=fields.step,
                 data=fields.pixels.reshape(-1).view(np.uint8))


def camera_info_msg(typestore, hdr, width: int, height: int, hfov_deg: float):
    """Pinhole CameraInfo of a ``hfov_deg`` horizontal field of view, square pixels."""
    CameraInfo = typestore.types[CAMERA_INFO_TYPE]
    RoI = typestore.types["sensor_msgs/msg/RegionOfInterest"]
    f = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    k = np.array([f, 0, cx, 0, f, cy, 0, 0, 1], dtype=np.float64)
    p = np.array([f, 0, cx, 0, 0, f, cy, 0, 0, 0, 1, 0], dtype=np.float64)
    return CameraInfo(header=hdr, height=int(height), width=int(width),
                      distortion_model="plumb_bob", d=np.zeros(5), k=k,
                      r=np.eye(3).reshape(-1), p=p, binning_x=0, binning_y=0,
                      roi=RoI(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


# -- video -> bag converter --------------------------------------------------------------
FLOAT32_EXACT = 2 ** 24  # float32 holds every integer up to this one exactly


def _check_observers_fit_float32(gaze) -> None:
    """Refuse observer ids that Point32.z (float32) would turn into other ids."""
    ids = gaze.observer_ids[np.abs(gaze.observer_ids) > FLOAT32_EXACT]
    if ids.size:
        raise BagError(f"{gaze.path}: observer id(s) {ids[:3].tolist()} cannot be written "
                       f"exactly as Point32.z (float32 holds integers only up to "
                       f"{FLOAT32_EXACT}); renumber the observers (gaze-import numbers "
                       "large ids 1..O)")


DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000  # a fixed epoch: reproducible bags


def _check_numbers(fps: Optional[float], max_frames: Optional[int],
                   hfov_deg: Optional[float]) -> None:
    """Refuse numbers that would be ignored or make a bag of nonsense, before any work.

    ``--fps 0`` used to fall back to the container's rate unnoticed, a negative one to a
    misleading "pass --fps"; NaN or inf would stamp every frame alike.
    """
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise BagError(f"make-bag: --fps {fps:g} must be a positive, finite frame rate")
    if max_frames is not None and int(max_frames) < 1:
        raise BagError(f"make-bag: --max-frames {max_frames} must be >= 1")
    if hfov_deg is not None and not (math.isfinite(hfov_deg) and 0 < hfov_deg < 180):
        raise BagError(f"make-bag: --hfov {hfov_deg:g} must be a field of view in (0, 180) "
                       "degrees")


def make_bag(video, out, gaze=None, storage: str = "sqlite3", topic: str = "/camera/image_raw",
             encoding: str = "rgb8", frame_id: str = "camera_optical_frame",
             max_frames: Optional[int] = None, fps: Optional[float] = None,
             start_ns: int = DEFAULT_START_NS, hfov_deg: Optional[float] = None,
             gaze_topic: str = "/gaze/fixations", overwrite: bool = False,
             distro: str = "humble", progress: bool = True,
             compress: Optional[str] = None) -> dict:
    """Turn a video (and its gaze file) into a rosbag2 of sensor_msgs/Image at the video rate.

    Frame k is stamped ``start_ns + round(k * 1e9 / fps)`` (header and recording time).  With
    ``hfov_deg`` a pinhole CameraInfo is written on ``<namespace>/camera_info`` for every
    frame.  With ``gaze`` its fixations of frame k go to ``gaze_topic`` as a
    geometry_msgs/PolygonStamped with the frame's stamp (x, y in pixels, z = observer id);
    the gaze file must describe exactly this video's frame count.  With ``compress`` ("png",
    lossless, or "jpeg") frames are sensor_msgs/CompressedImage on ``<topic>/compressed``
    (the image_transport name).  Returns a summary dict.
    """
    if compress not in (None, "png", "jpeg"):
        raise BagError(f"make-bag: compress must be png or jpeg, got '{compress}'")
    if encoding not in ("rgb8", "bgr8"):
        raise BagError(f"make-bag: encoding must be rgb8 or bgr8, got '{encoding}'")
    _check_numbers(fps, max_frames, hfov_deg)
    video = Path(video)
    if not video.is_file():
        raise BagError(f"{video}: no such video file")
    check_outputs([Output("--out", out, folder=True)],
                  inputs=[("--video", video), ("--gaze", gaze)], overwrite=overwrite)
    # OpenCV encodes BGR; a raw rgb8 bag takes the frames as RGB, unconverted here
    source = FrameSource(video, order="rgb" if encoding == "rgb8" and not compress else "bgr")
    rate = float(fps) if fps is not None else source.fps
    if rate is None:
        raise BagError(f"{video}: the video does not say its frame rate; pass --fps")
    gaze_data = _video_gaze(gaze, source) if gaze is not None else None
    frame_writer = _FrameWriter(
        image_topic=f"{topic}/compressed" if compress else topic, encoding=encoding,
        frame_id=frame_id, compress=compress, hfov_deg=hfov_deg,
        info_topic=f"{topic.rsplit('/', 1)[0]}/camera_info", gaze_topic=gaze_topic,
        gaze=gaze_data)
    with atomic_bag_path(out, overwrite) as tmp, OutputBag(tmp, storage, distro) as bag:
        count = _write_frames(bag, source, frame_writer, int(start_ns), rate, max_frames,
                              progress)
        _check_frame_count(video, count, source.n_frames, max_frames)
        _record_source(bag, video, source.n_frames or count, rate, gaze_data)
    return {"bag": str(out), "frames": count, "fps": rate, "topic": frame_writer.image_topic,
            "camera_info": frame_writer.info_topic if hfov_deg is not None else None,
            "gaze_topic": gaze_topic if gaze_data is not None else None, "storage": storage}


def _video_gaze(gaze, source: FrameSource):
    """Load the gaze file of ``source``'s video, checked against its frame count and size."""
    from skd_saliency_ros.core.gaze import load_gaze
    gaze_data = load_gaze(gaze, n_frames=source.n_frames, size=(source.width, source.height),
                          against=str(source.path))
    _check_observers_fit_float32(gaze_data)
    return gaze_data


@dataclass(frozen=True)
class _FrameWriter:
    """What make_bag writes for one video frame: its image, CameraInfo and fixations."""

    image_topic: str           # <topic>, or <topic>/compressed when compressing
    encoding: str              # rgb8 or bgr8 (raw images)
    frame_id: str
    compress: Optional[str]    # None, "png" or "jpeg"
    hfov_deg: Optional[float]  # None: no CameraInfo
    info_topic: str
    gaze_topic: str
    gaze: object               # core.gaze.GazeData or None

    def write(self, bag: "OutputBag", k: int, frame: np.ndarray, ns: int) -> None:
        """Write frame ``k`` (in the source's order: RGB for raw rgb8, else BGR) at ``ns``."""
        ts = bag.typestore
        hdr = header(ts, ns, self.frame_id)
        if self.compress:
            _ok, buf = cv2.imencode(f".{self.compress}", frame)
            Compressed = ts.types[COMPRESSED_TYPE]
            bag.write(self.image_topic, COMPRESSED_TYPE, ns,
                      Compressed(header=hdr, format=self.compress, data=buf.reshape(-1)))
        else:
            bag.write(self.image_topic, IMAGE_TYPE, ns, image_msg(ts, frame, self.encoding, hdr))
        if self.hfov_deg is not None:
            bag.write(self.info_topic, CAMERA_INFO_TYPE, ns, camera_info_msg(
                ts, hdr, frame.shape[1], frame.shape[0], self.hfov_deg))
        if self.gaze is not None:
            Point32 = ts.types["geometry_msgs/msg/Point32"]
            rows = self.gaze.fix_frame == k
            pts = [Point32(x=float(x), y=float(y), z=float(o)) for (x, y), o in
                   zip(self.gaze.fix_xy[rows], self.gaze.fix_observer[rows])]
            polygon = ts.types["geometry_msgs/msg/Polygon"](points=pts)
            bag.write(self.gaze_topic, "geometry_msgs/msg/PolygonStamped", ns,
                      ts.types["geometry_msgs/msg/PolygonStamped"](header=hdr, polygon=polygon))


def _write_frames(bag: "OutputBag", source: FrameSource, frame_writer: _FrameWriter,
                  start_ns: int, rate: float, max_frames: Optional[int],
                  progress: bool) -> int:
    """Write the first ``max_frames`` frames (None: all); return how many were written."""
    from tqdm import tqdm
    n_video = source.n_frames
    total = n_video if max_frames is None else min(n_video, int(max_frames))
    limit = None if max_frames is None else int(max_frames)
    count = 0
    with tqdm(total=total, desc=f"make-bag {source.path.name}", unit="frame",
              disable=not progress) as bar:
        for frame in itertools.islice(source.frames(), limit):
            raise_if_stop_requested()
            frame_writer.write(bag, count, frame, start_ns + int(round(count * 1e9 / rate)))
            count += 1
            bar.update(1)
    return count


def _check_frame_count(video: Path, count: int, n_video: int,
                       max_frames: Optional[int]) -> None:
    """Refuse a bag of no frames, or of fewer than the container promised (a cut file)."""
    if count == 0:
        raise BagError(f"{video}: no frame could be decoded")
    if max_frames is None and n_video and count != n_video:
        raise BagError(f"{video}: the container says {n_video} frames but {count} "
                       "were decoded; the file is truncated or corrupt")


def _record_source(bag: "OutputBag", video: Path, video_frames: int, rate: float,
                   gaze_data) -> None:
    """Write which video frames the bag holds into its metadata (custom_data).

    So that a bag of the first N frames is still scored against the whole video's gaze file
    (sAUC draws from all its frames).
    """
    bag.writer.set_custom_data("skd.source_video", str(video.resolve()))
    bag.writer.set_custom_data("skd.video_frames", str(video_frames))
    bag.writer.set_custom_data("skd.first_frame", "0")
    bag.writer.set_custom_data("skd.fps", repr(rate))
    if gaze_data is not None:
        bag.writer.set_custom_data("skd.gaze", str(Path(gaze_data.path).resolve()))
