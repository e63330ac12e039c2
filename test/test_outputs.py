"""frame_messages: the one path from an engine result to the node's and replay's messages."""

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import Header

from skd_saliency_ros.ros.outputs import frame_messages
from skd_saliency_ros.ros.params import OutputSettings

#: the node's default peak search, the map at a quarter of the image size or at full size
QUARTER = OutputSettings(output_scale=0.25, top_k=5, nms_radius=0.1, min_score=0.3)
FULL = OutputSettings(output_scale=1.0, top_k=5, nms_radius=0.1, min_score=0.3)


def _info(d, model="plumb_bob", size=(640, 480)):
    info = CameraInfo(width=size[0], height=size[1], distortion_model=model)
    info.k = [500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0]
    info.d = list(d)
    return info


@pytest.fixture()
def blob():
    """Return a 64 x 64 map with one clear peak right of centre."""
    yy, xx = np.mgrid[0:64, 0:64]
    return np.exp(-((xx - 40.0) ** 2 + (yy - 30.0) ** 2) / 20.0).astype(np.float32)


def test_messages_carry_header_sizes_and_unit_rays(blob):
    """Saliency at output_scale, peaks in pixels, unit bearings in the optical frame."""
    header = Header(frame_id="cam_optical")
    out = frame_messages(blob, (640, 480), header, _info([0.0] * 5), QUARTER)
    assert (out.saliency.width, out.saliency.height, out.saliency.encoding) == (160, 120,
                                                                                "32FC1")
    assert out.saliency.header.frame_id == "cam_optical" and len(out.peaks.poses) == 1
    ray = out.bearings.poses[0].position
    assert np.isclose(np.linalg.norm([ray.x, ray.y, ray.z]), 1.0) and ray.x > 0
    assert out.no_bearings_reason is None


@pytest.mark.parametrize("d,model,why", [
    ([0.1, np.nan, 0, 0, 0], "plumb_bob", "distortion D must be finite"),
    ([0.1, np.inf, 0, 0], "equidistant", "distortion D must be finite"),
    ([0.1, 0, 0, 0, 0], "weird_model", "not supported"),
])
def test_unusable_calibration_gives_no_rays_and_a_reason(blob, d, model, why):
    """Never a NaN or wrong ray: no bearings message, and the reason the node warns with."""
    out = frame_messages(blob, (640, 480), Header(), _info(d, model), QUARTER)
    assert out.bearings is None and why in out.no_bearings_reason
    assert len(out.peaks.poses) == 1  # the rest of the outputs are unaffected


def test_camera_info_of_another_size_is_refused(blob):
    """A CameraInfo for 1280x720 says nothing about a 640x480 image."""
    out = frame_messages(blob, (640, 480), Header(), _info([0.0] * 5, size=(1280, 720)),
                         FULL)
    assert out.bearings is None and "CameraInfo is for 1280x720" in out.no_bearings_reason
    out = frame_messages(blob, (640, 480), Header(), None, FULL)
    assert out.bearings is None and out.no_bearings_reason is None  # no CameraInfo: silent


def test_saliency_camera_info_is_scaled_with_the_map(blob):
    """~/camera_info: K and P scaled to the map; none when the CameraInfo does not fit."""
    from skd_saliency_ros.core.peaks import pixels_to_bearings

    header = Header(frame_id="cam_optical")
    full = _info([0.1, -0.05, 0.0, 0.0, 0.0])
    full.p = [500.0, 0.0, 319.5, 0.0, 0.0, 500.0, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    out = frame_messages(blob, (640, 480), header, full, QUARTER)
    info = out.saliency_info
    assert (info.width, info.height) == (160, 120) and info.header.frame_id == "cam_optical"
    assert list(info.d) == list(full.d) and info.distortion_model == "plumb_bob"
    assert info.k[0] == 125.0 and info.p[0] == 125.0
    pixels = np.array([[0.0, 0.0], [639.0, 479.0], [100.0, 300.0]])
    np.testing.assert_allclose(
        pixels_to_bearings((pixels + 0.5) * 0.25 - 0.5, np.asarray(info.k), np.asarray(info.d),
                           "plumb_bob"),
        pixels_to_bearings(pixels, np.asarray(full.k), np.asarray(full.d), "plumb_bob"),
        atol=1e-9)
    other = frame_messages(blob, (640, 480), header, _info([0.0] * 5, size=(1280, 720)),
                           QUARTER)
    assert other.saliency_info is None


@pytest.mark.parametrize("field, index, bad, why", [
    ("k", 0, np.nan, "camera matrix K needs finite values"),
    ("k", 2, np.inf, "camera matrix K needs finite values"),
    ("d", 1, np.nan, "distortion D must be finite"),
    ("p", 0, np.nan, "non-finite values in P"),
    ("r", 4, -np.inf, "non-finite values in R"),
])
@pytest.mark.parametrize("with_peak", [True, False])
def test_camera_info_with_non_finite_numbers_is_not_republished(blob, field, index, bad, why,
                                                                with_peak):
    """A NaN in K went out scaled on ~/camera_info; now: no camera_info, no rays, a reason.

    Also for a frame without peaks, so the warning does not wait for a peak.
    """
    info = _info([0.0] * 5)
    info.r = np.eye(3).ravel().tolist()
    info.p = [500.0, 0.0, 319.5, 0.0, 0.0, 500.0, 239.5, 0.0, 0.0, 0.0, 1.0, 0.0]
    values = list(getattr(info, field))
    values[index] = bad
    setattr(info, field, values)
    sal = blob if with_peak else np.zeros_like(blob)
    out = frame_messages(sal, (640, 480), Header(), info, QUARTER)
    assert out.saliency_info is None and out.bearings is None and out.target is None
    assert why in out.no_bearings_reason
    assert len(out.peaks.poses) == int(with_peak)  # peaks need no calibration


@pytest.mark.parametrize("fx", [1e-300, 5e-324, 1e300])
def test_no_zero_or_non_unit_ray_is_published(blob, fx):
    """A 1e-300 px focal length overflowed the norm: (0, 0, 0) went out on ~/bearings."""
    info = _info([0.0] * 5)
    info.k = [fx, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0]
    out = frame_messages(blob, (640, 480), Header(), info, QUARTER)
    if out.bearings is None:
        assert out.no_bearings_reason and out.target is None
        return
    rays = [[p.position.x, p.position.y, p.position.z] for p in out.bearings.poses]
    rays.append([out.target.vector.x, out.target.vector.y, out.target.vector.z])
    assert np.isfinite(rays).all()
    np.testing.assert_allclose(np.linalg.norm(rays, axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize("cell, why", [((4, 32), "reprojects"), ((61, 61), "folds over")])
def test_a_peak_without_its_one_ray_is_refused_with_a_reason(cell, why):
    """Beyond a rational_polynomial D's valid range a peak has no ray: no bearings, a reason.

    Left of the image no ray reprojects onto the peak; in the corner one does, 74 degrees
    off axis beyond the fold of the model.  The calibration itself is fine, so
    ~/camera_info still describes the map.
    """
    info = _info([0.1, -0.05, 0.0002, 0.0001, 0.01, 0.3, -0.04, 0.02], "rational_polynomial",
                 size=(1280, 720))
    info.k = [500.0, 0.0, 639.5, 0.0, 500.0, 359.5, 0.0, 0.0, 1.0]
    yy, xx = np.mgrid[0:64, 0:64]
    blob = np.exp(-((xx - cell[0]) ** 2 + (yy - cell[1]) ** 2) / 4.0).astype(np.float32)
    out = frame_messages(blob, (1280, 720), Header(), info, QUARTER)
    assert len(out.peaks.poses) == 1
    assert out.bearings is None and out.target is None
    assert why in out.no_bearings_reason
    assert out.saliency_info is not None and out.saliency_info.width == 320
    centre = np.roll(blob, (32 - cell[1], 32 - cell[0]), axis=(0, 1))  # at the centre: a ray
    out = frame_messages(centre, (1280, 720), Header(), info, QUARTER)
    assert out.no_bearings_reason is None and len(out.bearings.poses) == 1


@pytest.mark.parametrize("rate, frames, bounds, level, text", [
    (10.0, 50, (5.0, 0.0), 0, ""),
    (4.6, 23, (5.0, 0.0), 0, ""),            # within the 10 % tolerance
    (4.4, 22, (5.0, 0.0), 1, "below 5 Hz"),
    (33.5, 167, (0.0, 30.0), 1, "above 30 Hz"),
    (0.0, 0, (0.0, 0.0), 2, "no input images"),  # silence is an error even without bounds
])
def test_rate_bounds_as_frequency_status(rate, frames, bounds, level, text):
    """Expected-rate check: ERROR when silent, WARN outside the bounds with 10 % slack."""
    from skd_saliency_ros.ros.outputs import rate_problem

    got_level, got_text = rate_problem(rate, frames, bounds)
    assert got_level == bytes([level]) and text in got_text and bool(text) == bool(got_text)


def test_rate_parameters_are_checked_against_the_cameras():
    """min_rate_hz / max_rate_hz: one value or one per camera, non-negative, min <= max."""
    from skd_saliency_ros.ros.params import validate

    cams = {"cameras": ["front/image", "down/image"]}
    assert validate(cams | {"min_rate_hz": [5.0], "max_rate_hz": [0.0]}) is None
    assert validate(cams | {"min_rate_hz": [5.0, 1.0], "max_rate_hz": [30.0]}) is None
    assert "3 entries" in validate(cams | {"min_rate_hz": [1.0, 2.0, 3.0]})
    assert ">= 0" in validate({"min_rate_hz": [-1.0]})
    assert "exceeds" in validate({"min_rate_hz": [10.0], "max_rate_hz": [5.0]})
