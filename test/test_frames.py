"""core.frames on real data: a real video and a folder of its frames read alike; bad input."""

import itertools

import cv2
import numpy as np
import pytest

from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.frames import FrameSource, FrameSourceError


@pytest.fixture(scope="module")
def car10(shared_data):
    """Return the real car10 clip (1280x720, 10 fps) of the data bundle."""
    return shared_data / "uav_gaze" / "car10.mp4"


def _opencv_frames(path, count):
    """Return the first ``count`` frames as OpenCV decodes them (BGR), the reference."""
    cap = cv2.VideoCapture(str(path))
    frames = [cap.read()[1] for _ in range(count)]
    cap.release()
    return frames


def test_video_frames_are_opencv_frames_in_rgb_or_bgr(car10):
    """RGB is OpenCV's BGR with the channels swapped; ``order="bgr"`` is OpenCV's own frame."""
    want = _opencv_frames(car10, 3)
    source = FrameSource(car10)
    assert (source.width, source.height, source.images) == (1280, 720, None)
    assert source.n_frames > 100 and source.fps == pytest.approx(10.0, abs=0.01)
    rgb = list(source.frames(0, 3))
    bgr = list(FrameSource(car10, order="bgr").frames(0, 3))
    for got_rgb, got_bgr, frame in zip(rgb, bgr, want):
        assert got_rgb.dtype == np.uint8 and got_rgb.shape == (720, 1280, 3)
        np.testing.assert_array_equal(got_bgr, frame)
        np.testing.assert_array_equal(got_rgb, frame[:, :, ::-1])


def test_start_skips_exact_frames_and_a_stop_past_the_end_is_refused(car10, tmp_path):
    """Frames from ``start`` are the video's frames at those indices; asking past the end fails."""
    source = FrameSource(car10, order="bgr")
    want = _opencv_frames(car10, 5)[3:5]
    for got, frame in zip(source.frames(3, 5), want):
        np.testing.assert_array_equal(got, frame)
    assert len(list(itertools.islice(source.frames(), 4))) == 4
    short = tmp_path / "short.avi"  # 4 real frames, MJPEG
    writer = cv2.VideoWriter(str(short), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 180))
    for frame in _opencv_frames(car10, 4):
        writer.write(cv2.resize(frame, (320, 180), interpolation=cv2.INTER_AREA))
    writer.release()
    clip = FrameSource(short)
    assert (clip.n_frames, clip.width, clip.height) == (4, 320, 180)
    assert len(list(clip.frames())) == 4  # no stop: to the end, quietly
    with pytest.raises(FrameSourceError, match=r"short.avi: cannot decode frame 4 \(video "
                                               r"ended or is corrupt; frames 2..5 asked for"):
        list(clip.frames(2, 6))
    with pytest.raises(FrameSourceError, match=r"short.avi: cannot decode frame 4 "):
        list(clip.frames(6))


def test_frame_folder_reads_in_natural_order_losslessly(car10, tmp_path):
    """PNG and JPEG files in natural name order (2 before 10), other files ignored; no rate."""
    frames = [cv2.resize(f, (160, 90), interpolation=cv2.INTER_AREA)
              for f in FrameSource(car10).frames(0, 3)]
    for name, frame in zip(["1.png", "2.png", "10.png"], frames):
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not a frame")
    source = FrameSource(tmp_path)
    assert [p.name for p in source.images] == ["1.png", "2.png", "10.png"]
    assert (source.n_frames, source.width, source.height, source.fps) == (3, 160, 90, None)
    for got, want in zip(source.frames(), frames):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(next(FrameSource(tmp_path, order="bgr").frames(1)),
                                  frames[1][:, :, ::-1])
    cv2.imwrite(str(tmp_path / "11.jpg"), cv2.cvtColor(frames[0], cv2.COLOR_RGB2BGR))
    assert FrameSource(tmp_path).n_frames == 4  # a JPEG counts too
    with pytest.raises(FrameSourceError, match=r"folder holds 4 images"):
        list(FrameSource(tmp_path).frames(0, 5))
    cv2.imwrite(str(tmp_path / "12.png"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(FrameSourceError, match=r"12.png: image is 10x10, the folder's first "
                                               r"image is 160x90"):
        list(FrameSource(tmp_path).frames())


def test_bad_sources_raise_one_clear_error(tmp_path):
    """Missing path, a file that is no video, an empty folder, a broken image: each named."""
    with pytest.raises(FrameSourceError, match=r"missing.mp4: no such video file or frame "
                                               r"folder"):
        FrameSource(tmp_path / "missing.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 8)
    with pytest.raises(FrameSourceError, match=r"garbage.mp4: cannot (open|decode)"):
        FrameSource(garbage)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FrameSourceError, match=r"empty: frame folder holds no images"):
        FrameSource(empty)
    (empty / "000001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(FrameSourceError, match=r"000001.jpg: cannot read image"):
        FrameSource(empty)
    assert issubclass(FrameSourceError, SkdError) and issubclass(FrameSourceError, ValueError)
    with pytest.raises(ValueError, match="order must be one of rgb, bgr"):
        FrameSource(empty, order="rgba")
