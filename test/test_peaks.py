"""Peaks: sub-pixel location, NMS, thresholds, pixel convention, and bearing rays."""

import cv2
import numpy as np
import pytest

from skd_saliency_ros.core.peaks import find_peaks, pixel_to_bearing, pixels_to_bearings

R = 64
W, H = 1280, 720


def to_grid(x, y, size=(W, H), cells=R):
    """Input-image pixel -> R-grid cell coordinate (inverse of the documented mapping)."""
    return (x + 0.5) * cells / size[0] - 0.5, (y + 0.5) * cells / size[1] - 0.5


def blob(x, y, sigma=2.0, amplitude=1.0, cells=R, size=(W, H)):
    """Render an isotropic Gaussian on the R grid centred at input pixel (x, y)."""
    gx, gy = to_grid(x, y, size, cells)
    yy, xx = np.mgrid[0:cells, 0:cells].astype(np.float64)
    return amplitude * np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * sigma ** 2))


@pytest.mark.parametrize("x, y", [(640.0, 360.0), (203.37, 511.81), (1000.9, 95.2)])
def test_gaussian_blob_recovered_within_a_tenth_of_a_pixel(x, y):
    """A blob at a sub-pixel input location comes back within 0.1 input pixel."""
    sal = blob(x, y).astype(np.float32)
    peaks = find_peaks(sal, (W, H), top_k=5, min_score=0.3)
    assert len(peaks) == 1
    assert abs(peaks[0].x - x) < 0.1 and abs(peaks[0].y - y) < 0.1, (peaks[0], x, y)
    assert peaks[0].score == pytest.approx(float(sal.max()))


def test_plain_parabola_refinement_is_exact_on_a_quadratic_bump():
    """refine='parabola' recovers the vertex of a quadratic peak; 'none' stays on the cell."""
    gx, gy = 20.3, 41.7
    yy, xx = np.mgrid[0:R, 0:R].astype(np.float64)
    sal = np.clip(1.0 - 0.01 * ((xx - gx) ** 2 + (yy - gy) ** 2), 0, 1).astype(np.float32)
    x, y = (gx + 0.5) * W / R - 0.5, (gy + 0.5) * H / R - 0.5
    (p,) = find_peaks(sal, (W, H), refine="parabola")
    assert abs(p.x - x) < 0.05 and abs(p.y - y) < 0.05
    (q,) = find_peaks(sal, (W, H), refine="none")
    assert (q.x, q.y) == ((20 + 0.5) * W / R - 0.5, (42 + 0.5) * H / R - 0.5)


def test_cell_centres_map_to_the_documented_pixels():
    """A single hot cell maps to (i + 0.5) * W / R - 0.5, also in the corners."""
    for i, j in [(0, 0), (R - 1, R - 1), (10, 50)]:
        sal = np.zeros((R, R), np.float32)
        sal[j, i] = 1.0
        (p,) = find_peaks(sal, (W, H), refine="none")
        assert (p.x, p.y) == ((i + 0.5) * W / R - 0.5, (j + 0.5) * H / R - 0.5)
    # A 1x1 map covering the whole image points at the image centre.
    (p,) = find_peaks(np.ones((1, 1), np.float32), (W, H))
    assert (p.x, p.y) == ((W - 1) / 2, (H - 1) / 2)


def test_nms_suppresses_neighbours_and_keeps_distant_peaks():
    """Of two close blobs only the stronger survives; a far one is kept; order is by score."""
    diag = np.hypot(W, H)
    strong, near, far = (400.0, 300.0), (400.0 + 0.05 * diag, 300.0), (1100.0, 600.0)
    sal = np.maximum.reduce([blob(*strong, sigma=1.5), blob(*near, sigma=1.5, amplitude=0.8),
                             blob(*far, sigma=1.5, amplitude=0.6)]).astype(np.float32)
    no_nms = find_peaks(sal, (W, H), top_k=10, nms_radius=0.0, min_score=0.3)
    assert len(no_nms) == 3
    peaks = find_peaks(sal, (W, H), top_k=10, nms_radius=0.1, min_score=0.3)
    assert len(peaks) == 2
    assert np.hypot(peaks[0].x - strong[0], peaks[0].y - strong[1]) < 1.0
    assert np.hypot(peaks[1].x - far[0], peaks[1].y - far[1]) < 1.0
    assert peaks[0].score > peaks[1].score
    # top_k and min_score cut the list.
    assert len(find_peaks(sal, (W, H), top_k=1, nms_radius=0.0)) == 1
    assert len(find_peaks(sal, (W, H), nms_radius=0.0, min_score=0.7)) == 2
    assert find_peaks(np.zeros((R, R), np.float32), (W, H), min_score=0.0) == []


def test_peaks_on_a_real_saliency_like_map_stay_inside_the_image(shared_data):
    """Peaks of a map made from a real frame (blurred edge energy) lie inside the image."""
    cap = cv2.VideoCapture(str(shared_data / "uav_gaze" / "group2.mp4"))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    gray = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), (R, R), interpolation=cv2.INTER_AREA)
    energy = cv2.GaussianBlur(np.abs(cv2.Laplacian(gray.astype(np.float32), cv2.CV_32F)),
                              (0, 0), 2.0)
    sal = (energy - energy.min()) / (energy.max() - energy.min())
    peaks = find_peaks(sal, (bgr.shape[1], bgr.shape[0]), top_k=5, min_score=0.2)
    assert 1 <= len(peaks) <= 5
    for p in peaks:
        assert -0.5 <= p.x <= bgr.shape[1] - 0.5 and -0.5 <= p.y <= bgr.shape[0] - 0.5
        assert 0.2 <= p.score <= 1.0


def test_bad_arguments_are_refused():
    """Wrong map shapes, sizes and options raise ValueError."""
    with pytest.raises(ValueError, match="2-D map"):
        find_peaks(np.zeros((2, 2, 2), np.float32), (W, H))
    with pytest.raises(ValueError, match="image_size"):
        find_peaks(np.zeros((2, 2), np.float32), (0, H))
    with pytest.raises(ValueError, match="refine"):
        find_peaks(np.zeros((2, 2), np.float32), (W, H), refine="cubic")


K = np.array([[700.0, 0.0, 639.5], [0.0, 690.0, 359.5], [0.0, 0.0, 1.0]])


def test_principal_point_maps_to_the_optical_axis():
    """The principal point is (0, 0, 1), also with distortion."""
    np.testing.assert_allclose(pixel_to_bearing(639.5, 359.5, K), [0, 0, 1], atol=1e-12)
    d = [-0.3, 0.1, 0.001, -0.002, 0.0]
    np.testing.assert_allclose(pixel_to_bearing(639.5, 359.5, K, d, "plumb_bob"), [0, 0, 1],
                               atol=1e-9)


def test_rays_are_unit_length_and_point_the_right_way():
    """Rays point x right, y down, z forward, and reproject onto their pixel."""
    pts = np.array([[0.0, 0.0], [1279.0, 0.0], [0.0, 719.0], [1000.0, 500.0]])
    rays = pixels_to_bearings(pts, K)
    np.testing.assert_allclose(np.linalg.norm(rays, axis=1), 1.0, atol=1e-12)
    assert (rays[:, 2] > 0).all()
    assert rays[0, 0] < 0 and rays[0, 1] < 0 and rays[1, 0] > 0 and rays[2, 1] > 0
    proj = (K @ (rays / rays[:, 2:]).T).T[:, :2]
    np.testing.assert_allclose(proj, pts, atol=1e-9)


@pytest.mark.parametrize("model, d", [
    ("plumb_bob", [-0.28, 0.07, 0.0005, -0.0003, 0.0]),
    ("rational_polynomial", [0.1, -0.05, 0.0002, 0.0001, 0.01, 0.3, -0.04, 0.02]),
])
def test_distorted_pixels_give_the_ray_that_projects_onto_them(model, d):
    """Undistortion inverts cv2.projectPoints for the ROS distortion models."""
    rays_in = np.array([[0.3, -0.2, 1.0], [-0.4, 0.25, 1.0], [0.05, 0.1, 1.0]])
    rays_in /= np.linalg.norm(rays_in, axis=1, keepdims=True)
    pix, _ = cv2.projectPoints(rays_in, np.zeros(3), np.zeros(3), K, np.array(d))
    rays = pixels_to_bearings(pix.reshape(-1, 2), K, d, model)
    np.testing.assert_allclose(rays, rays_in, atol=1e-5)
    # Ignoring the distortion would be off by a visible angle.
    plain = pixels_to_bearings(pix.reshape(-1, 2), K)
    assert np.degrees(np.arccos(np.clip((plain * rays_in).sum(1), -1, 1))).max() > 0.5


@pytest.mark.parametrize("model", ["plumb_bob", "rational_polynomial", "equidistant"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_distortion_is_refused(model, bad):
    """NaN/inf in D gave NaN rays (pinhole models) or finite wrong ones (fisheye): refused."""
    d = {"plumb_bob": [0.1, bad, 0, 0, 0], "rational_polynomial": [0.1, 0, 0, 0, 0, bad, 0, 0],
         "equidistant": [0.1, bad, 0, 0]}[model]
    with pytest.raises(ValueError, match="distortion D must be finite"):
        pixels_to_bearings([[10, 10], [640, 360]], K, d, model)


def test_bearing_errors():
    """Unknown models with non-zero D and unusable K are errors; zero D is plain pinhole."""
    with pytest.raises(ValueError, match="not supported"):
        pixel_to_bearing(10, 10, K, [0.1, 0, 0, 0, 0], "weird_model")
    np.testing.assert_allclose(pixel_to_bearing(10, 10, K, [0.0] * 5, "weird_model"),
                               pixel_to_bearing(10, 10, K))
    with pytest.raises(ValueError, match="positive fx, fy"):
        pixel_to_bearing(10, 10, np.zeros(9))


# K and grid of issue 17: f = 500 px on 1280x720, a 33 x 19 grid that includes the corners.
K500 = np.array([[500.0, 0.0, 639.5], [0.0, 500.0, 359.5], [0.0, 0.0, 1.0]])
GRID = np.stack(np.meshgrid(np.linspace(0, 1279, 33), np.linspace(0, 719, 19)),
                -1).reshape(-1, 2)
STRONG = {"plumb_bob": [-0.28, 0.07, 0.0005, -0.0003, 0.0],
          "rational_polynomial": [0.1, -0.05, 0.0002, 0.0001, 0.01, 0.3, -0.04, 0.02],
          "equidistant": [-0.3, 0.2, -0.1, 0.02]}


def _reprojection_px(ray, pixel, model, d):
    """Pixel distance between ``pixel`` and OpenCV's forward projection of ``ray``."""
    obj = np.asarray(ray, np.float64).reshape(1, 1, 3)
    if model == "equidistant":
        proj, _ = cv2.fisheye.projectPoints(obj, np.zeros(3), np.zeros(3), K500, np.array(d))
    else:
        proj, _ = cv2.projectPoints(obj, np.zeros(3), np.zeros(3), K500, np.array(d))
    return float(np.linalg.norm(proj.reshape(2) - pixel))


def _fold_angle_deg(model, d):
    """Angle off axis where the radial distortion first stops growing (OpenCV's formulas).

    Beyond it a distorted radius has a second ray; the written-out radial function (without
    the tiny tangential terms) is an independent check of the module's fold test.
    """
    theta = np.linspace(1e-6, np.radians(89.0), 200001)
    if model == "equidistant":
        t2 = theta ** 2
        radius = theta * (1 + d[0] * t2 + d[1] * t2 ** 2 + d[2] * t2 ** 3 + d[3] * t2 ** 4)
    else:
        k = list(d) + [0.0] * (8 - len(d))
        r2 = np.tan(theta) ** 2
        radius = np.tan(theta) * ((1 + k[0] * r2 + k[1] * r2 ** 2 + k[4] * r2 ** 3)
                                  / (1 + k[5] * r2 + k[6] * r2 ** 2 + k[7] * r2 ** 3))
    falls = np.flatnonzero(np.diff(radius) <= 0)
    return float(np.degrees(theta[falls[0]])) if falls.size else 90.0


@pytest.mark.parametrize("model", sorted(STRONG))
def test_bearings_over_the_whole_image_reproject_or_are_refused(model):
    """Issue 17: every grid pixel gives its one ray (within 0.5 px), or a BearingError why.

    OpenCV's default 5 iterations left plumb_bob corner rays 3 degrees off (334 px when
    reprojected); where the distortion cannot be inverted (rational_polynomial, equidistant
    beyond their valid range) a wrong ray came out instead of none, and beyond the fold of
    the rational model the corners reprojected exactly from rays 75 degrees off axis.
    """
    from skd_saliency_ros.core.peaks import BearingError

    d, refused, worst, widest = STRONG[model], [], 0.0, 0.0
    for pixel in GRID:
        try:
            ray = pixel_to_bearing(pixel[0], pixel[1], K500, d, model)
        except BearingError as exc:
            assert ("reprojects" in str(exc) and "px" in str(exc)) or "folds over" in str(exc)
            refused.append(tuple(pixel))
            continue
        assert abs(np.linalg.norm(ray) - 1.0) < 1e-12 and ray[2] > 0
        worst = max(worst, _reprojection_px(ray, pixel, model, d))
        widest = max(widest, float(np.degrees(np.arccos(ray[2]))))
    assert worst < 0.5, (model, worst)
    assert widest < _fold_angle_deg(model, d) + 0.5, (model, widest)
    assert (639.5, 359.5) not in refused and len(refused) < len(GRID) // 2
    if model == "plumb_bob":  # invertible everywhere: converged, nothing refused
        assert refused == [] and worst < 0.01
    else:  # the corners are beyond the valid range of these two
        assert {(0.0, 0.0), (1279.0, 719.0)} <= set(refused)


def test_one_refused_pixel_refuses_the_batch_and_names_it():
    """pixels_to_bearings is all or nothing (rays keep the peaks' order); the error says where."""
    from skd_saliency_ros.core.peaks import BearingError

    with pytest.raises(BearingError, match=r"pixel \(1279\.0, 0\.0\).*reprojects"):
        pixels_to_bearings([[639.5, 359.5], [1279.0, 0.0]], K500, STRONG["equidistant"],
                           "equidistant")


@pytest.mark.parametrize("k", [
    [[1e-300, 0, 639.5], [0, 500.0, 359.5], [0, 0, 1]],
    [[500.0, 0, 639.5], [0, 1e-300, 359.5], [0, 0, 1]],
    [[1e-300, 0, 639.5], [0, 1e-300, 359.5], [0, 0, 1]],
    [[5e-324, 0, 639.5], [0, 500.0, 359.5], [0, 0, 1]],
    [[1e300, 0, 639.5], [0, 1e300, 359.5], [0, 0, 1]],
])
@pytest.mark.parametrize("model, d", [(None, None), ("plumb_bob", STRONG["plumb_bob"])])
def test_no_zero_or_non_unit_ray_whatever_the_focal_length(k, model, d):
    """A focal length of 1e-300 overflowed the norm: (0, 0, 0) passed the finite check."""
    from skd_saliency_ros.core.peaks import BearingError

    pixels = [[0.0, 0.0], [1279.0, 719.0], [639.5, 0.0], [639.5, 359.5]]
    try:
        rays = pixels_to_bearings(pixels, np.array(k), d, model)
    except BearingError:
        return  # refused: nothing published, the reason goes to the warning
    assert np.isfinite(rays).all()
    np.testing.assert_allclose(np.linalg.norm(rays, axis=1), 1.0, atol=1e-12)


def test_unit_vectors_survive_any_scale_and_refuse_no_direction():
    """One check for every ray and quaternion: finite, non-zero, and unit after normalising."""
    from skd_saliency_ros.core.vectors import unit_vectors

    for scale in (1e-300, 1.0, 1e300):
        np.testing.assert_allclose(unit_vectors([[3 * scale, 0, 4 * scale]], 3, "ray",
                                                ValueError), [[0.6, 0, 0.8]], atol=1e-15)
    for bad in ([0.0, 0.0, 0.0], [np.nan, 0, 1], [np.inf, 0, 1], [1.0, 2.0]):
        with pytest.raises(ValueError, match="ray"):
            unit_vectors(bad, 3, "ray", ValueError)
    with pytest.raises(ValueError, match="zero vector"):
        unit_vectors([1e-12, 0, 0], 3, "ray", ValueError, min_norm=1e-9)
