"""Gaze loader: the real bundle files load, and every schema break is named precisely."""

import re
import warnings

import numpy as np
import pytest

from skd_saliency_ros.core.gaze import GazeError, load_gaze


@pytest.fixture(scope="module")
def car10_arrays(shared_data):
    """Return the real car10 gaze arrays, to load as they are or to break key by key."""
    with np.load(shared_data / "uav_gaze" / "car10_gaze.npz") as npz:
        return {key: npz[key] for key in npz.files}


def write(tmp_path, arrays, **changes):
    """Save a copy of ``arrays`` with keys replaced (value None removes the key)."""
    data = dict(arrays)
    for key, value in changes.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    path = tmp_path / "gaze.npz"
    np.savez(path, **data)
    return path


def test_real_files_load(shared_data):
    """Both bundle files load with the README's statistics; fixations(k) is frame k's rows."""
    car10 = load_gaze(shared_data / "uav_gaze" / "car10_gaze.npz", n_frames=469)
    assert (car10.width, car10.height, car10.n_frames, car10.fps) == (1280, 720, 469, 10)
    assert len(car10.fix_xy) == 5667 and len(car10.observer_ids) == 14
    counts = car10.counts()
    assert counts.sum() == 5667 and counts.min() == 7       # README: 12.08 per frame, min 7
    pts = car10.fixations(0)
    assert pts.shape == (counts[0], 2) and pts.dtype == np.float64
    np.testing.assert_array_equal(pts, car10.fix_xy[car10.fix_frame == 0])
    group2 = load_gaze(shared_data / "uav_gaze" / "group2_gaze.npz")
    assert group2.n_frames == 895 and len(group2.fix_xy) == 3734
    assert len(group2.frames_with_fixations()) == 895
    with pytest.raises(ValueError, match=r"frame 469 is outside \[0, 469\)"):
        car10.fixations(469)


def test_frame_count_mismatch_names_both_numbers(shared_data):
    """A gaze file for another length of video is refused."""
    with pytest.raises(GazeError, match=r"car10_gaze.npz.*469 frames.*470"):
        load_gaze(shared_data / "uav_gaze" / "car10_gaze.npz", n_frames=470)


def test_frame_size_mismatch_names_both_sizes(shared_data):
    """A gaze file for another frame size is refused like one for another frame count."""
    car10 = shared_data / "uav_gaze" / "car10_gaze.npz"
    with pytest.raises(GazeError, match=r"car10_gaze.npz.*1280x720.*flight.mp4.*1920x1080"):
        load_gaze(car10, n_frames=469, size=(1920, 1080), against="flight.mp4")
    with pytest.raises(GazeError, match=r"469 frames.*flight.mp4.*470"):
        load_gaze(car10, n_frames=470, size=(1280, 720), against="flight.mp4")
    assert load_gaze(car10, n_frames=469, size=(1280, 720)).width == 1280


def test_large_observer_ids_stay_exact(tmp_path, car10_arrays):
    """int32 observer ids such as 20231115 load as they are (was: wrapped by an int16 cast)."""
    offset = 20231100
    path = write(tmp_path, car10_arrays,
                 observer_ids=car10_arrays["observer_ids"].astype(np.int32) + offset,
                 fix_observer=car10_arrays["fix_observer"].astype(np.int32) + offset)
    gaze = load_gaze(path, n_frames=469)
    assert gaze.observer_ids.tolist() == [offset + k for k in range(1, 15)]
    np.testing.assert_array_equal(np.sort(np.unique(gaze.fix_observer)), gaze.observer_ids)


def test_missing_and_corrupt_files(tmp_path):
    """Missing or non-npz files name the path."""
    with pytest.raises(GazeError, match=r"nope.npz: gaze file not found"):
        load_gaze(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip archive")
    with pytest.raises(GazeError, match=r"bad.npz: not a .npz gaze file") as info:
        load_gaze(bad)
    assert "pickle" not in str(info.value)  # never point a user at allow_pickle


def test_no_usable_fixation_is_an_error(tmp_path, car10_arrays):
    """All points off-screen or NaN: a GazeError naming the file, not a metrics traceback."""
    xy = np.full_like(car10_arrays["fix_xy"], np.nan)
    xy[:10] = (5000.0, 10.0)
    with pytest.raises(GazeError, match=r"gaze.npz: no usable fixation: all 5667 point"):
        load_gaze(write(tmp_path, car10_arrays, fix_xy=xy))


@pytest.mark.parametrize("change, message", [
    (dict(fix_frame=None), r"missing key\(s\) fix_frame"),
    (dict(width=None, fps=None), r"missing key\(s\) width, fps"),
    (dict(width=np.float32(1280.0)), r"key 'width' must be an integer scalar"),
    (dict(n_frames=np.int32(0)), r"key 'n_frames' must be positive"),
    (dict(fix_xy="xy"), r"key 'fix_xy' has dtype <U2"),
    (dict(fix_frame="f"), r"key 'fix_frame' has dtype <U1, expected an integer type"),
])
def test_schema_errors_name_file_and_key(tmp_path, car10_arrays, change, message):
    """Missing keys and bad scalars name the file and the key."""
    with pytest.raises(GazeError, match=r"gaze.npz: " + message):
        load_gaze(write(tmp_path, car10_arrays, **change))


def test_shape_and_dtype_errors(tmp_path, car10_arrays):
    """Wrong shapes, dtypes and row counts name the key and what was expected."""
    xy = car10_arrays["fix_xy"]
    with pytest.raises(GazeError, match=re.escape("key 'fix_xy' has shape (5667, 3), "
                                                  "expected (F, 2)")):
        load_gaze(write(tmp_path, car10_arrays, fix_xy=np.hstack([xy, xy[:, :1]])))
    with pytest.raises(GazeError, match=r"key 'fix_frame' has dtype float32"):
        load_gaze(write(tmp_path, car10_arrays,
                        fix_frame=car10_arrays["fix_frame"].astype(np.float32)))
    with pytest.raises(GazeError, match=r"key 'fix_observer' has 5666 rows but 'fix_xy' has 5667"):
        load_gaze(write(tmp_path, car10_arrays, fix_observer=car10_arrays["fix_observer"][1:]))


def test_frame_out_of_range_and_unknown_observer(tmp_path, car10_arrays):
    """Fixations on frames the video does not have, or by unlisted observers, are errors."""
    frame = car10_arrays["fix_frame"].copy()
    frame[[3, 10]] = [469, -1]
    with pytest.raises(GazeError, match=r"key 'fix_frame' has 2 value\(s\) outside \[0, 469\)"):
        load_gaze(write(tmp_path, car10_arrays, fix_frame=frame))
    observer = car10_arrays["fix_observer"].copy()
    observer[0] = 99
    with pytest.raises(GazeError, match=r"key 'fix_observer' has observer\(s\) \[99\]"):
        load_gaze(write(tmp_path, car10_arrays, fix_observer=observer))


def test_out_of_frame_points_are_warned_and_dropped(tmp_path, car10_arrays):
    """Off-screen or NaN points are counted in a warning and removed from every array."""
    xy = car10_arrays["fix_xy"].copy()
    xy[0] = (-0.5, 10.0)        # left of the frame
    xy[1] = (1280.0, 5.0)       # x == width is already outside
    xy[2] = (5.0, np.nan)       # not finite
    xy[3] = (1279.9, 719.9)     # inside: kept
    path = write(tmp_path, car10_arrays, fix_xy=xy)
    with pytest.warns(UserWarning, match=r"gaze.npz: dropped 3 of 5667 fixation\(s\)"):
        gaze = load_gaze(path)
    assert len(gaze.fix_xy) == len(gaze.fix_frame) == len(gaze.fix_observer) == 5664
    assert gaze.counts().sum() == 5664
    np.testing.assert_array_equal(gaze.fix_xy, xy[3:])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the real file has no such points: no warning
        load_gaze(write(tmp_path, car10_arrays))
