"""Attention crops (core/crops.py): size, placement, CameraInfo fields, and a real frame.

The rectangle and CameraInfo checks are hand computations; the last tests run the shipped
default model on a real car10 frame and the coverage bench's counting on a real gaze frame.
"""

import math

import cv2
import numpy as np
import pytest

from skd_saliency_ros.core.crops import (Crop, CropCameraInfo, CropError, centre_crop,
                                         crop_around, crop_camera_info, crop_intrinsics,
                                         crop_size, peak_crop, strongest_peak)
from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.peaks import find_peaks

FRAME = (1280, 720)


def inside_frame(crop: Crop, size=FRAME) -> bool:
    """Whether the crop lies wholly inside a W x H frame."""
    return (crop.x_offset >= 0 and crop.y_offset >= 0
            and crop.x_offset + crop.width <= size[0] and crop.y_offset + crop.height <= size[1])


def holds_pixel_point(crop: Crop, x: float, y: float) -> bool:
    """Whether a point with peaks.py's pixel-centre origin lies in the crop."""
    return bool(crop.contains([[x + 0.5, y + 0.5]])[0])


@pytest.mark.parametrize("size", [(1280, 720), (640, 360), (1920, 1080), (640, 480), (7, 5)])
@pytest.mark.parametrize("fraction", [1.0, 0.5, 0.25, 0.1, 0.01])
def test_crop_area_and_aspect_within_rounding(size, fraction):
    """Area = fraction x frame area and aspect = the frame's, up to half a pixel per side."""
    width, height = crop_size(size, fraction)
    exact_h = math.sqrt(fraction * size[0] * size[1] / (size[0] / size[1]))
    exact_w = exact_h * size[0] / size[1]
    assert abs(width - exact_w) <= 0.5 + 1e-9 and abs(height - exact_h) <= 0.5 + 1e-9
    if exact_w >= 1 and exact_h >= 1:
        assert abs(width * height - fraction * size[0] * size[1]) <= (width + height) / 2 + 0.25
    assert 1 <= width <= size[0] and 1 <= height <= size[1]


def test_crop_sizes_of_the_measured_crops():
    """The two crops of docs/CROPS.md on 1280x720: 640x360 (25 %) and 405x228 (10 %)."""
    assert crop_size(FRAME, 0.25) == (640, 360)
    assert crop_size(FRAME, 0.1) == (405, 228)   # 1280 * sqrt(0.1) = 404.8, 720 * 0.316 = 227.7
    assert crop_size(FRAME, 1.0) == FRAME


def test_crop_aspect_given():
    """A square crop for a square detector input; a wide one that the frame cannot hold."""
    assert crop_size(FRAME, 0.25, aspect=1.0) == (480, 480)      # sqrt(230400) = 480
    width, height = crop_size(FRAME, 0.25, aspect=2.0)           # 679 x 339.4
    assert (width, height) == (679, 339) and abs(width / height - 2.0) < 0.01
    # 100 % at aspect 3 needs 1663 px of width: the frame's width, the area kept (full frame)
    assert crop_size(FRAME, 1.0, aspect=3.0) == FRAME
    # 60 % at aspect 0.5 needs 744 px of height: the frame's height, width = area / 720
    assert crop_size(FRAME, 0.6, aspect=0.5) == (768, 720)


def test_crop_is_centred_on_the_point_away_from_borders():
    """The crop's centre (x + (w - 1) / 2) is within half a pixel of the point."""
    rng = np.random.default_rng(0)
    for x, y in rng.uniform([400, 250], [880, 470], size=(50, 2)):
        crop = crop_around((x, y), FRAME, 0.25)
        assert (crop.width, crop.height) == (640, 360)
        assert abs(crop.x_offset + (crop.width - 1) / 2 - x) <= 0.5
        assert abs(crop.y_offset + (crop.height - 1) / 2 - y) <= 0.5
    assert crop_around((639.5, 359.5), FRAME, 0.25) == Crop(320, 180, 640, 360)
    # a start exactly between two pixels (500 - 319.5 = 180.5) goes up, never to the even one
    assert crop_around((500.0, 300.0), FRAME, 0.25) == Crop(181, 121, 640, 360)
    assert centre_crop(FRAME, 0.25) == Crop(320, 180, 640, 360)
    assert centre_crop(FRAME, 0.1) == Crop(438, 246, 405, 228)


@pytest.mark.parametrize("point, expected", [
    ((0.0, 359.5), (0, 180)),          # left border
    ((1279.0, 359.5), (640, 180)),     # right border
    ((639.5, 0.0), (320, 0)),          # top border
    ((639.5, 719.0), (320, 360)),      # bottom border
    ((-0.5, -0.5), (0, 0)),            # top-left corner (the pixel's outer edge)
    ((1279.5, -0.5), (640, 0)),        # top-right
    ((-0.5, 719.5), (0, 360)),         # bottom-left
    ((1279.5, 719.5), (640, 360)),     # bottom-right
    ((150.0, 600.0), (0, 360)),        # near a corner, not on it
    ((5000.0, -300.0), (640, 0)),      # far outside: still a crop inside the frame
])
def test_crop_is_shifted_not_shrunk_at_every_border(point, expected):
    """Near a border the crop keeps its size and moves until it touches the border."""
    crop = crop_around(point, FRAME, 0.25)
    assert (crop.x_offset, crop.y_offset) == expected
    assert (crop.width, crop.height) == (640, 360) and inside_frame(crop)


def test_a_point_in_the_frame_is_always_in_its_crop():
    """Any point of the frame, any size and aspect: the crop lies in the frame and holds it."""
    rng = np.random.default_rng(1)
    for _ in range(400):
        size = tuple(int(v) for v in rng.integers(8, 2000, 2))
        fraction = float(rng.uniform(0.001, 1.0))
        aspect = None if rng.random() < 0.5 else float(rng.uniform(0.2, 5.0))
        x, y = rng.uniform(-0.5, [size[0] - 0.5, size[1] - 0.5])
        crop = crop_around((x, y), size, fraction, aspect)
        assert (crop.width, crop.height) == crop_size(size, fraction, aspect)
        assert inside_frame(crop, size), (size, fraction, aspect, crop)
        if x < size[0] - 0.5 and y < size[1] - 0.5:  # the far edge belongs to no pixel
            assert holds_pixel_point(crop, x, y), (size, fraction, aspect, (x, y), crop)


def test_contains_uses_the_gaze_corner_origin():
    """A corner-origin point is inside when x0 <= x < x0 + w (its pixel is in the crop)."""
    crop = Crop(10, 20, 5, 4)
    pts = [[10.0, 20.0], [14.999, 23.999], [15.0, 21.0], [9.999, 21.0], [12.0, 24.0],
           [12.0, 19.99]]
    assert crop.contains(pts).tolist() == [True, True, False, False, False, False]
    assert crop.contains(np.zeros((0, 2))).shape == (0,)
    assert crop.area == 20


def test_peak_is_the_nodes_strongest_peak():
    """The crop centre is find_peaks' best peak with the node's settings, in input pixels."""
    sal = np.zeros((64, 64), np.float32)
    sal[40, 5], sal[40, 4], sal[40, 6], sal[39, 5], sal[41, 5] = 1.0, 0.3, 0.6, 0.5, 0.5
    sal[10, 50] = 0.9  # a second, weaker peak
    node_peak = find_peaks(sal, FRAME, top_k=5, nms_radius=0.1, min_score=0.3)[0]
    assert strongest_peak(sal, FRAME) == (node_peak.x, node_peak.y)
    x, y = strongest_peak(sal, FRAME)
    assert 5 * 20 < x < 6 * 20 and abs(y - (40.5 * 720 / 64 - 0.5)) < 1e-6  # refined right
    crop = peak_crop(sal, FRAME, 0.1)
    assert crop == crop_around((x, y), FRAME, 0.1) and crop.x_offset == 0  # shifted at left
    assert holds_pixel_point(crop, x, y)


@pytest.mark.parametrize("shape", [(64, 64), (45, 80), (32, 57), (128, 128)])
def test_peak_of_any_map_size_lands_on_the_same_input_pixel(shape):
    """A Gaussian blob at a known input pixel, on any map size, peaks on that pixel.

    The blob is sampled at the cell centres of the map; peaks.py's cell -> pixel map and its
    Gaussian fit must bring the peak back to the blob's centre.
    """
    centre, sigma = np.array([333.3, 222.2]), 60.0
    rows, cols = shape
    xs = (np.arange(cols) + 0.5) * FRAME[0] / cols - 0.5
    ys = (np.arange(rows) + 0.5) * FRAME[1] / rows - 0.5
    blob = np.exp(-((xs[None, :] - centre[0]) ** 2 + (ys[:, None] - centre[1]) ** 2)
                  / (2 * sigma ** 2)).astype(np.float32)
    np.testing.assert_allclose(strongest_peak(blob, FRAME), centre, atol=0.05)
    assert peak_crop(blob, FRAME, 0.25) == crop_around(centre, FRAME, 0.25)


def test_a_flat_map_has_no_crop():
    """The engine's all-zero answer (flat or non-finite raw map) gives no crop, not a guess."""
    assert strongest_peak(np.zeros((64, 64)), FRAME) is None
    assert peak_crop(np.zeros((64, 64)), FRAME, 0.25) is None


@pytest.mark.parametrize("call, message", [
    (lambda: crop_size(FRAME, 0.0), "area fraction must be in"),
    (lambda: crop_size(FRAME, 1.01), "area fraction must be in"),
    (lambda: crop_size(FRAME, -0.25), "area fraction must be in"),
    (lambda: crop_size(FRAME, float("nan")), "area fraction must be in"),
    (lambda: crop_size(FRAME, "a quarter"), "area fraction must be a number"),
    (lambda: crop_size(FRAME, 0.25, aspect=0.0), "aspect"),
    (lambda: crop_size(FRAME, 0.25, aspect=float("inf")), "aspect"),
    (lambda: crop_size(FRAME, 0.25, aspect=float("nan")), "aspect"),
    (lambda: crop_size((0, 720), 0.25), "image size"),
    (lambda: crop_size((1280, -720), 0.25), "image size"),
    (lambda: crop_size((1280.5, 720), 0.25), "image size"),
    (lambda: crop_size((1280, float("nan")), 0.25), "image size"),
    (lambda: crop_size(("1280", 720), 0.25), "image size"),
    (lambda: crop_size(None, 0.25), "image size"),
    (lambda: crop_around((float("nan"), 3.0), FRAME, 0.25), "finite"),
    (lambda: crop_around((1.0,), FRAME, 0.25), "two numbers"),
    (lambda: strongest_peak(np.full((8, 8), np.nan), FRAME), "NaN or inf"),
    (lambda: strongest_peak(np.array([[0.0, np.inf]]), FRAME), "NaN or inf"),
    (lambda: strongest_peak(np.zeros((0, 4)), FRAME), "non-empty 2-D"),
    (lambda: strongest_peak(np.zeros(16), FRAME), "non-empty 2-D"),
    (lambda: peak_crop(np.zeros((8, 8)), FRAME, 2.0), "area fraction"),  # even on a flat map
])
def test_bad_input_is_a_crop_error(call, message):
    """Each bad value is one CropError (a user error: one line, exit 2) naming the problem."""
    with pytest.raises(CropError, match=message) as info:
        call()
    assert isinstance(info.value, SkdError) and isinstance(info.value, ValueError)


# ----------------------------------------------------------------------------- CameraInfo
K = [800.0, 0.5, 641.3, 0.0, 790.0, 359.8, 0.0, 0.0, 1.0]
P = [805.0, 0.0, 640.2, -40.25, 0.0, 795.0, 361.1, 0.0, 0.0, 0.0, 1.0, 0.0]


def test_crop_camera_info_is_image_procs_crop_decimate():
    """The ROI is set in full-resolution pixels, binning 0 read as 1, do_rectify; K, P kept."""
    crop = Crop(181, 121, 640, 360)
    assert crop_camera_info(crop, FRAME) == CropCameraInfo(
        binning_x=1, binning_y=1, roi_x_offset=181, roi_y_offset=121, roi_width=640,
        roi_height=360, roi_do_rectify=True)
    # an input already binned 2x2 and cropped by its driver at (100, 60): offsets add up in
    # sensor pixels (roi.x_offset += offset_x * binning_x), the size is in sensor pixels too
    binned = crop_camera_info(Crop(10, 20, 300, 200), (640, 360), binning=(2, 2),
                              roi=(100, 60, 1280, 720))
    assert binned == CropCameraInfo(2, 2, 100 + 20, 60 + 40, 600, 400, True)
    # the whole image is crop_decimate's no-op: every field as it came, binning 0 included
    assert crop_camera_info(Crop(0, 0, 1280, 720), FRAME, roi=(0, 0, 0, 0),
                            do_rectify=False) == CropCameraInfo(0, 0, 0, 0, 0, 0, False)
    assert crop_camera_info(Crop(0, 0, 1280, 720), FRAME, do_rectify=True).roi_do_rectify


@pytest.mark.parametrize("call, message", [
    (lambda: crop_camera_info(Crop(700, 0, 640, 360), FRAME), "does not lie inside"),
    (lambda: crop_camera_info(Crop(-1, 0, 640, 360), FRAME), "does not lie inside"),
    (lambda: crop_camera_info(Crop(0, 0, 0, 360), FRAME), "does not lie inside"),
    (lambda: crop_camera_info(Crop(0, 0, 64, 36), FRAME, binning=(-1, 1)), "binning"),
    (lambda: crop_camera_info(Crop(0, 0, 64, 36), FRAME, binning=(1,)), "binning"),
    (lambda: crop_camera_info(Crop(0, 0, 64, 36), FRAME, roi=(0, 0, 1.5, 0)), "roi"),
    (lambda: crop_intrinsics(K[:6], P, crop_camera_info(Crop(0, 0, 64, 36), FRAME)), "9 and 12"),
    (lambda: crop_intrinsics(K, [np.nan] * 12, crop_camera_info(Crop(0, 0, 64, 36), FRAME)),
     "NaN or inf"),
])
def test_bad_camera_info_input_is_a_crop_error(call, message):
    """A crop outside the image or malformed CameraInfo fields: CropError, never a crash."""
    with pytest.raises(CropError, match=message):
        call()


def test_crop_intrinsics_by_hand():
    """image_geometry's arithmetic: cx -= roi.x, cy -= roi.y on K and P; then / binning."""
    k, p = crop_intrinsics(K, P, crop_camera_info(Crop(181, 121, 640, 360), FRAME))
    np.testing.assert_array_equal(k, [[800.0, 0.5, 641.3 - 181], [0, 790.0, 359.8 - 121],
                                      [0, 0, 1]])
    np.testing.assert_array_equal(p, [[805.0, 0, 640.2 - 181, -40.25],
                                      [0, 795.0, 361.1 - 121, 0], [0, 0, 1, 0]])
    info = crop_camera_info(Crop(10, 20, 300, 200), (640, 360), binning=(2, 2))
    k2, p2 = crop_intrinsics(K, P, info)
    np.testing.assert_allclose(k2, [[400.0, 0.5, (641.3 - 20) / 2], [0, 395.0, (359.8 - 40) / 2],
                                    [0, 0, 1]])
    np.testing.assert_allclose(p2, [[402.5, 0, (640.2 - 20) / 2, -20.125],
                                    [0, 397.5, (361.1 - 40) / 2, 0], [0, 0, 1, 0]])
    # no ROI, no binning: the full calibration as it is
    k0, p0 = crop_intrinsics(K, P, crop_camera_info(Crop(0, 0, 1280, 720), FRAME))
    np.testing.assert_array_equal(k0.ravel(), K)
    np.testing.assert_array_equal(p0.ravel(), P)


def test_a_point_projects_onto_the_same_crop_pixel():
    """A 3-D point seen at (u, v) in the frame is at (u - x, v - y) of the crop's own pixels."""
    crop = crop_around((900.0, 200.0), FRAME, 0.1)
    k, _ = crop_intrinsics(K, P, crop_camera_info(crop, FRAME))
    point = np.array([0.9, -0.35, 3.0])
    full = np.asarray(K).reshape(3, 3) @ point
    cropped = k @ point
    np.testing.assert_allclose(cropped[:2] / cropped[2],
                               full[:2] / full[2] - [crop.x_offset, crop.y_offset], atol=1e-9)


# ------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def car10_frames(shared_data):
    """Frames 0-1 of car10 (1280x720, RGB)."""
    cap = cv2.VideoCapture(str(shared_data / "uav_gaze" / "car10.mp4"))
    frames = []
    for _ in range(2):
        ok, bgr = cap.read()
        assert ok, "could not decode car10"
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def test_real_frame_and_default_engine(car10_frames):
    """The shipped model's map of a real frame: the crop holds the map's peak cell."""
    from skd_saliency_ros.core.checkpoint import DEFAULT_MODEL
    from skd_saliency_ros.core.engine import SaliencyEngine

    engine = SaliencyEngine(DEFAULT_MODEL, device="cpu", backend="torch")
    engine.step(car10_frames[0], 0.0)
    result = engine.step(car10_frames[1], 0.1)
    assert result.finite and result.saliency.max() == 1.0
    height, width = car10_frames[1].shape[:2]
    rows, cols = result.saliency.shape
    gy, gx = np.unravel_index(int(np.argmax(result.saliency)), result.saliency.shape)
    # the peak cell's centre in input pixels, by hand (pixel-centre origin, as peaks.py)
    cell_x, cell_y = (gx + 0.5) * width / cols - 0.5, (gy + 0.5) * height / rows - 0.5
    for fraction, aspect in ((0.25, None), (0.1, None), (0.1, 1.0)):
        crop = peak_crop(result.saliency, (width, height), fraction, aspect)
        assert (crop.width, crop.height) == crop_size((width, height), fraction, aspect)
        assert inside_frame(crop, (width, height))
        assert holds_pixel_point(crop, cell_x, cell_y), (crop, cell_x, cell_y)
        pixels = car10_frames[1][crop.y_offset:crop.y_offset + crop.height,
                                 crop.x_offset:crop.x_offset + crop.width]
        assert pixels.shape == (crop.height, crop.width, 3)
        peak_x, peak_y = strongest_peak(result.saliency, (width, height))
        assert abs(peak_x - cell_x) <= width / cols / 2
        assert abs(peak_y - cell_y) <= height / rows / 2


def test_bench_counts_fixations_of_a_real_gaze_frame(shared_data):
    """bench.crop_coverage.frame_hits counts car10's frame-0 fixations per crop by hand."""
    from bench.crop_coverage import frame_hits
    from skd_saliency_ros.core.gaze import load_gaze

    gaze = load_gaze(shared_data / "uav_gaze" / "car10_gaze.npz")
    fixations = gaze.fixations(0)
    assert len(fixations) >= 7
    centre = {f: centre_crop(FRAME, f) for f in (0.25, 0.1)}
    # a peak on the first fixation: the model crop holds it, and each count is the crop's
    first = fixations[0] - 0.5  # corner origin -> pixel-centre origin
    hits = frame_hits(tuple(first), fixations, FRAME, (0.25, 0.1), centre, None)
    for fraction, (model, fixed) in hits.items():
        crop = crop_around(first, FRAME, fraction)
        assert model == sum(crop.x_offset <= x < crop.x_offset + crop.width
                            and crop.y_offset <= y < crop.y_offset + crop.height
                            for x, y in fixations) >= 1
        c = centre[fraction]
        assert fixed == sum(c.x_offset <= x < c.x_offset + c.width
                            and c.y_offset <= y < c.y_offset + c.height for x, y in fixations)
    assert hits[0.25][0] >= hits[0.1][0]
    # no peak (a flat map): no crop, nothing inside; the centre crop still counts
    none = frame_hits(None, fixations, FRAME, (0.25,), centre, None)
    assert none[0.25] == (0, hits[0.25][1])


def test_bench_difference_interval_by_hand():
    """The block bootstrap's interval, by hand, in three cases.

    No difference gives [0, 0]; a fixed one gives exactly itself; a difference in one block
    only gives an interval around it that reaches 0.
    """
    from bench.crop_coverage import difference_interval

    counts = np.full(90, 4.0)
    same = np.column_stack([counts, np.full(90, 2.0), np.full(90, 2.0)])
    assert difference_interval([same]) == [0.0, 0.0]
    ahead = np.column_stack([counts, np.full(90, 3.0), np.full(90, 2.0)])  # +1 of 4 a frame
    np.testing.assert_allclose(difference_interval([ahead, same]),
                               [90 / (2 * 360), 90 / (2 * 360)])
    one_block = same.copy()
    one_block[:30, 1] = 4.0  # the model wins only in the first 30 frames (one block)
    low, high = difference_interval([one_block])
    assert low == 0.0 and 0.3 < high <= 60 / 360 * 3 and low < 60 / 360 < high
