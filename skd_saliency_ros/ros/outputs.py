"""What the node publishes for a frame: map, peaks, bearings, overlay, diagnostics.

Plain functions from numpy/engine results to standard ROS messages, so that the field
mapping documented in the README lives in one place.  ``frame_messages`` is the one path
from an engine result to the output messages: the node publishes them, offline replay
writes the same messages into its bag.

* ``~/peaks`` (geometry_msgs/PoseArray): one pose per peak, best first;
  ``position.x, position.y`` = peak in input-image pixels (x right, y down, origin at the
  centre of the top-left pixel), ``position.z`` = saliency score in [0, 1], orientation
  identity.
* ``~/bearings`` (geometry_msgs/PoseArray): same order as ``~/peaks``; ``position`` = unit
  ray (x, y, z) in the camera optical frame of ``header.frame_id`` (REP 103: x right, y down,
  z forward); ``orientation`` rotates the frame's +x axis onto the ray (RViz draws an arrow
  along the ray).
* ``~/target`` (geometry_msgs/Vector3Stamped): the best peak's unit ray, in the same frame:
  a direction tf2 can transform (``tf2_geometry_msgs.do_transform_vector3``), published only
  when there is a peak and a usable CameraInfo.
* ``~/camera_info`` (sensor_msgs/CameraInfo): the camera's calibration scaled to the size of
  ``~/saliency`` (its sibling, image_transport's naming rule), so a consumer can project the
  map's pixels; published with each map when the camera's CameraInfo fits the image and
  holds no NaN or inf.
* ``~/crop/image`` and ``~/crop/camera_info``: the attention crop (core/crops.py,
  docs/CROPS.md) in image_proc's crop convention: the input's own pixels of the crop, same
  header, and the input's CameraInfo with only ``roi`` and ``binning`` set (``K``, ``P``,
  ``width``, ``height`` stay the full calibration's: image_geometry shifts by the ROI).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from geometry_msgs.msg import Pose, PoseArray, Vector3Stamped
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, RegionOfInterest

from skd_saliency_ros.core.crops import Crop, crop_camera_info
from skd_saliency_ros.core.maps import upsample
from skd_saliency_ros.core.peaks import BearingError, find_peaks, pixels_to_bearings
from skd_saliency_ros.ros.image_io import PIXEL_CELLS, image_to_numpy, numpy_to_image
from skd_saliency_ros.ros.params import OutputSettings


#: diagnostics periods over which the input rate is measured (diagnostic_updater's default)
RATE_WINDOW = 5
#: relative slack on the expected rate bounds (FrequencyStatusParam's default tolerance)
RATE_TOLERANCE = 0.1


def saliency_size(width: int, height: int, scale: float) -> Tuple[int, int]:
    """(W, H) of ~/saliency for a width x height input at ``output_scale`` (at least 1 px)."""
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def peaks_msg(header, peaks: Sequence) -> PoseArray:
    """Build the ~/peaks message: position = (x px, y px, score)."""
    msg = PoseArray(header=header)
    for peak in peaks:
        pose = Pose()
        pose.position.x = float(peak.x)
        pose.position.y = float(peak.y)
        pose.position.z = float(peak.score)
        pose.orientation.w = 1.0
        msg.poses.append(pose)
    return msg


def _x_to_ray(ray: np.ndarray) -> tuple:
    """Quaternion (x, y, z, w) of the shortest rotation taking +x onto the unit ``ray``."""
    w = 1.0 + float(ray[0])
    if w < 1e-9:  # ray points along -x: half turn about z
        return 0.0, 0.0, 1.0, 0.0
    q = np.array([0.0, -float(ray[2]), float(ray[1]), w])
    q /= np.linalg.norm(q)
    return float(q[0]), float(q[1]), float(q[2]), float(q[3])


def bearings_msg(header, rays: np.ndarray) -> PoseArray:
    """Build the ~/bearings message: position = ray, orientation = +x onto the ray."""
    msg = PoseArray(header=header)
    for ray in np.asarray(rays, dtype=np.float64).reshape(-1, 3):
        pose = Pose()
        pose.position.x, pose.position.y, pose.position.z = (float(v) for v in ray)
        (pose.orientation.x, pose.orientation.y, pose.orientation.z,
         pose.orientation.w) = _x_to_ray(ray)
        msg.poses.append(pose)
    return msg


@dataclass
class FrameMessages:
    """One frame's outputs: the messages, the peaks, and why there are no bearings."""

    saliency: object                     # sensor_msgs/Image 32FC1 at output_scale
    peaks: PoseArray
    peak_list: list
    bearings: Optional[PoseArray] = None
    no_bearings_reason: Optional[str] = None  # set when a CameraInfo exists but is unusable
    target: Optional[Vector3Stamped] = None   # the best peak's ray (needs a peak and rays)
    saliency_info: Optional[CameraInfo] = None  # camera_info scaled to the saliency map
    saliency_array: Optional[np.ndarray] = field(default=None, repr=False)


def info_fits(info, width: int, height: int) -> bool:
    """Whether a CameraInfo describes width x height images (0 x 0: size not given)."""
    return (int(info.width), int(info.height)) in ((0, 0), (width, height))


def non_finite_fields(info) -> List[str]:
    """Names of the CameraInfo arrays (K, D, R, P) holding a NaN or inf: a broken file.

    Such a CameraInfo is used for nothing: no rays, and it is not republished scaled on
    ~/camera_info, where a consumer would project with the NaN.
    """
    return [name.upper() for name in ("k", "d", "r", "p")
            if not np.isfinite(np.asarray(getattr(info, name), dtype=np.float64)).all()]


def bearings_or_reason(peaks, info, width: int, height: int):
    """Return (rays, None), or (None, why) when ``info`` cannot give rays for this image.

    No CameraInfo: (None, None), nothing to say.  A CameraInfo for another image size, with
    an unusable K or D, with NaN or inf anywhere, or a peak whose ray does not reproject onto
    it: (None, reason), which the node warns about; the calibration is checked also on
    frames without peaks, so the warning does not wait for one.
    """
    if info is None:
        return None, None
    if not info_fits(info, width, height):
        return None, _size_mismatch(info, width, height)
    try:
        rays = pixels_to_bearings([[p.x, p.y] for p in peaks], np.asarray(info.k),
                                  np.asarray(info.d), info.distortion_model)
    except BearingError as exc:
        return None, str(exc)
    broken = _broken_fields(info)
    if broken:
        return None, broken
    return rays, None


def _size_mismatch(info, width: int, height: int) -> str:
    return (f"CameraInfo is for {info.width}x{info.height} images, the image is "
            f"{width}x{height}")


def _broken_fields(info) -> Optional[str]:
    broken = non_finite_fields(info)
    return (f"CameraInfo has non-finite values in {', '.join(broken)} (a broken calibration "
            "file?)") if broken else None


def info_problem(info, width: int, height: int) -> Optional[str]:
    """Why ``info`` is not republished with a width x height image's outputs, or None.

    The one rule of ``~/camera_info`` and ``~/crop/camera_info``: a CameraInfo has arrived,
    fits the image and holds no NaN or inf.
    """
    if info is None:
        return "no CameraInfo has arrived"
    if not info_fits(info, width, height):
        return _size_mismatch(info, width, height)
    return _broken_fields(info)


def frame_messages(saliency: np.ndarray, image_size: Tuple[int, int], header, camera_info,
                   settings: OutputSettings) -> FrameMessages:
    """Build the output messages of one engine result (R x R map) for a width x height image."""
    width, height = image_size
    out_w, out_h = saliency_size(width, height, float(settings.output_scale))
    sal_out = upsample(saliency, (out_h, out_w))
    peaks = find_peaks(saliency, (width, height), top_k=int(settings.top_k),
                       nms_radius=float(settings.nms_radius),
                       min_score=float(settings.min_score))
    rays, reason = bearings_or_reason(peaks, camera_info, width, height)
    republish = info_problem(camera_info, width, height) is None
    return FrameMessages(
        saliency_info=scaled_camera_info(camera_info, (width, height), (out_w, out_h),
                                         header) if republish else None,
        saliency=numpy_to_image(sal_out, "32FC1", header), peaks=peaks_msg(header, peaks),
        peak_list=peaks, bearings=None if rays is None else bearings_msg(header, rays),
        no_bearings_reason=reason, saliency_array=sal_out,
        target=target_msg(header, rays[0]) if rays is not None and len(rays) else None)


def scaled_camera_info(info: CameraInfo, image_size: Tuple[int, int],
                       out_size: Tuple[int, int], header) -> CameraInfo:
    """Scale a CameraInfo to a resized image: K and P to ``out_size``, distortion unchanged.

    Pixel centres map as the resize does (``cv2.resize``, half-pixel centres):
    ``u' = (u + 0.5) * s - 0.5``, so fx, fy scale by s and cx, cy by that affine map
    (image_proc's resize multiplies cx by s; the two differ by (s - 1) / 2 pixel).
    Binning is reset and the ROI dropped (both describe the full-size image).
    """
    width, height = image_size
    out_w, out_h = out_size
    sx, sy = out_w / float(width), out_h / float(height)
    out = CameraInfo(header=header, width=int(out_w), height=int(out_h),
                     distortion_model=info.distortion_model, d=list(info.d), r=list(info.r),
                     roi=RegionOfInterest())
    k = np.asarray(info.k, dtype=np.float64).reshape(3, 3).copy()
    p = np.asarray(info.p, dtype=np.float64).reshape(3, 4).copy()
    for m in (k, p):
        m[0, :3] = m[0, :3] * sx + m[2, :3] * (0.5 * sx - 0.5)
        m[1, :3] = m[1, :3] * sy + m[2, :3] * (0.5 * sy - 0.5)
    p[0, 3] *= sx  # Tx = -fx' * baseline scales with fx
    p[1, 3] *= sy
    out.k, out.p = k.reshape(-1).tolist(), p.reshape(-1).tolist()
    return out


def crop_source(msg, rgb: np.ndarray) -> Tuple[np.ndarray, str]:
    """(pixels, encoding) a crop is cut from: the input's own pixels where there are some.

    A raw Image: its pixels in its own encoding (image_io.image_to_numpy, a view where the
    layout allows).  A CompressedImage has none but its decoded frame: ``rgb`` as rgb8.
    """
    if isinstance(msg, CompressedImage):
        return rgb, "rgb8"
    return image_to_numpy(msg), msg.encoding


def cell_aligned(crop: Crop, image_size: Tuple[int, int], encoding: str) -> Crop:
    """Return the smallest crop holding ``crop`` whose corners lie on the encoding's cells.

    Unchanged for encodings of single pixels (PIXEL_CELLS); else the offsets go down and
    the far edges up to whole cells, the far edge at most to the frame's (a yuv422 frame
    is an even number of pixels wide, so its crops are too).
    """
    cell_x, cell_y = PIXEL_CELLS.get(encoding, (1, 1))
    width, height = image_size
    x0, y0 = crop.x_offset - crop.x_offset % cell_x, crop.y_offset - crop.y_offset % cell_y
    x1 = min(width, -(-(crop.x_offset + crop.width) // cell_x) * cell_x)
    y1 = min(height, -(-(crop.y_offset + crop.height) // cell_y) * cell_y)
    return Crop(x_offset=x0, y_offset=y0, width=x1 - x0, height=y1 - y0)


def crop_image(pixels: np.ndarray, encoding: str, crop: Crop, header) -> Image:
    """``~/crop/image``: the crop's pixels, unconverted, with the input's header."""
    part = pixels[crop.y_offset:crop.y_offset + crop.height,
                  crop.x_offset:crop.x_offset + crop.width]
    return numpy_to_image(part, encoding, header)


def crop_info(info: CameraInfo, crop: Crop, image_size: Tuple[int, int],
              header) -> CameraInfo:
    """``~/crop/camera_info``: ``info`` copied, ``roi`` and ``binning`` as crop_decimate sets.

    The fields come from core.crops.crop_camera_info; everything else, K and P included, is
    the input's (image_geometry applies the ROI shift; docs/CROPS.md).
    """
    roi = info.roi
    fields = crop_camera_info(crop, image_size, (info.binning_x, info.binning_y),
                              (roi.x_offset, roi.y_offset, roi.width, roi.height),
                              roi.do_rectify)
    return CameraInfo(
        header=header, height=info.height, width=info.width,
        distortion_model=info.distortion_model, d=list(info.d), k=list(info.k),
        r=list(info.r), p=list(info.p), binning_x=fields.binning_x,
        binning_y=fields.binning_y,
        roi=RegionOfInterest(x_offset=fields.roi_x_offset, y_offset=fields.roi_y_offset,
                             width=fields.roi_width, height=fields.roi_height,
                             do_rectify=fields.roi_do_rectify))


def target_msg(header, ray: np.ndarray) -> Vector3Stamped:
    """Build the ~/target message: the unit ray of the best peak in the camera frame."""
    msg = Vector3Stamped(header=header)
    msg.vector.x, msg.vector.y, msg.vector.z = (float(v) for v in ray)
    return msg


def overlay_bgr(rgb: np.ndarray, saliency: np.ndarray, alpha: float,
                peaks: Sequence = ()) -> np.ndarray:
    """Heat-map blend (JET colours) of a full-size map over the frame, peaks as circles."""
    heat = cv2.applyColorMap(np.clip(saliency * 255.0 + 0.5, 0, 255).astype(np.uint8),
                             cv2.COLORMAP_JET)
    frame = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    out = cv2.addWeighted(frame, 1.0 - float(alpha), heat, float(alpha), 0.0)
    radius = max(3, int(round(0.015 * max(out.shape[:2]))))
    for rank, peak in enumerate(peaks):
        centre = (int(round(peak.x)), int(round(peak.y)))
        cv2.circle(out, centre, radius, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.putText(out, str(rank + 1), (centre[0] + radius, centre[1] - radius),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4 + radius / 40.0, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


@dataclass
class CameraStats:
    """Counters of one camera; totals plus a window that each diagnostics tick resets."""

    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    invalid: int = 0
    resets: int = 0
    last_reset_reason: str = ""
    last_invalid_reason: str = ""
    window_in: int = 0
    window_out: int = 0
    window_dropped: int = 0
    window_invalid: int = 0
    window_latency_s: List[float] = field(default_factory=list)
    window_stamp_latency_s: List[float] = field(default_factory=list)
    recent_in: List[int] = field(default_factory=list)  # frames in, last RATE_WINDOW periods

    def take_window(self) -> Dict[str, object]:
        """Return and clear the per-period counters; keep the input counts of the rate window."""
        def ms(values, reduce):
            return 1000.0 * float(reduce(values)) if values else float("nan")
        lat, age = self.window_latency_s, self.window_stamp_latency_s
        self.recent_in = (self.recent_in + [self.window_in])[-RATE_WINDOW:]
        snap = {"in": self.window_in, "out": self.window_out, "dropped": self.window_dropped,
                "invalid": self.window_invalid, "recent_in": list(self.recent_in),
                "latency_mean_ms": ms(lat, np.mean), "latency_max_ms": ms(lat, np.max),
                "stamp_latency_mean_ms": ms(age, np.mean),
                "stamp_latency_max_ms": ms(age, np.max)}
        self._clear_window()
        return snap

    def restart_rate_window(self) -> None:
        """Forget the input history (after a pause, silence is not a dead camera)."""
        self.recent_in = []
        self._clear_window()

    def _clear_window(self) -> None:
        self.window_in = self.window_out = self.window_dropped = self.window_invalid = 0
        self.window_latency_s = []
        self.window_stamp_latency_s = []


def rate_problem(rate_hz: float, frames: int, bounds: Tuple[float, float],
                 tolerance: float = RATE_TOLERANCE) -> Tuple[int, str]:
    """(level, message) of an input rate against expected bounds, as FrequencyStatus does.

    ERROR when nothing arrived in the whole rate window, WARN below ``min * (1 - tol)`` or
    above ``max * (1 + tol)`` (a bound of 0 is not checked), else OK with an empty message.
    """
    low, high = bounds
    if frames == 0:
        return DiagnosticStatus.ERROR, "no input images"
    if low > 0.0 and rate_hz < low * (1.0 - tolerance):
        return DiagnosticStatus.WARN, f"input rate {rate_hz:.2f} Hz below {low:g} Hz"
    if high > 0.0 and rate_hz > high * (1.0 + tolerance):
        return DiagnosticStatus.WARN, f"input rate {rate_hz:.2f} Hz above {high:g} Hz"
    return DiagnosticStatus.OK, ""


def diagnostic_status(name: str, hardware_id: str, stats: CameraStats,
                      window: Dict[str, object], period_s: float,
                      extra: Dict[str, str], bounds: Tuple[float, float] = (0.0, 0.0),
                      active: bool = True) -> DiagnosticStatus:
    """One camera's DiagnosticStatus: level from the rate window and the last period.

    The input rate is measured over the last ``RATE_WINDOW`` periods (diagnostic_updater's
    window of 5); drops and invalid frames of the last period WARN.  An inactive node (lifecycle
    paused) reports OK with that message: silence is expected then.
    """
    recent = window["recent_in"]
    rate = sum(recent) / (period_s * len(recent))
    level, parts = DiagnosticStatus.OK, []
    if not active:
        parts.append("inactive (lifecycle): not subscribed, no inference")
    else:
        level, text = rate_problem(rate, sum(recent), bounds)
        if text:
            parts.append(f"{text} in the last {len(recent) * period_s:g} s")
        if window["dropped"]:
            parts.append(f"dropped {window['dropped']} frames (inference slower than input)")
        if window["invalid"]:
            parts.append(f"{window['invalid']} invalid frames ({stats.last_invalid_reason})")
        if (window["dropped"] or window["invalid"]) and level == DiagnosticStatus.OK:
            level = DiagnosticStatus.WARN
    values = {
        "input_rate_hz": f"{rate:.2f}",
        "expected_rate_hz": f"[{bounds[0]:g}, {bounds[1]:g}]",
        "output_rate_hz": f"{window['out'] / period_s:.2f}",
        "latency_mean_ms": f"{window['latency_mean_ms']:.1f}",
        "latency_max_ms": f"{window['latency_max_ms']:.1f}",
        "stamp_latency_mean_ms": f"{window['stamp_latency_mean_ms']:.1f}",
        "stamp_latency_max_ms": f"{window['stamp_latency_max_ms']:.1f}",
        "frames_in": str(stats.frames_in),
        "frames_out": str(stats.frames_out),
        "dropped": str(stats.dropped),
        "invalid": str(stats.invalid),
        "resets": str(stats.resets),
        "last_reset_reason": stats.last_reset_reason,
        "last_invalid_reason": stats.last_invalid_reason,
    }
    values.update(extra)
    message = "; ".join(parts) if parts else "ok"
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=v) for k, v in values.items()])
