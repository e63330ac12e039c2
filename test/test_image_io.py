"""image_io on real aerial frames: every encoding round-trips, conversions match OpenCV."""

import array

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from skd_saliency_ros.core.frames import FrameSource
from skd_saliency_ros.ros.image_io import (ImageEncodingError, RGB_ENCODINGS, SUPPORTED_ENCODINGS,
                                           bytes_per_pixel, compressed_to_rgb8, image_to_numpy,
                                           image_to_rgb8, numpy_to_image)


@pytest.fixture(scope="module")
def frame(shared_data):
    """First frame of car10 (1280x720), RGB."""
    return next(FrameSource(shared_data / "uav_gaze" / "car10.mp4").frames())


def mosaic(rgb, pattern):
    """Sample a Bayer mosaic from RGB; ``pattern`` is the top-left 2x2 cell, row by row."""
    out = np.empty(rgb.shape[:2], np.uint8)
    channel = {"r": 0, "g": 1, "b": 2}
    for letter, (dy, dx) in zip(pattern, [(0, 0), (0, 1), (1, 0), (1, 1)]):
        out[dy::2, dx::2] = rgb[dy::2, dx::2, channel[letter]]
    return out


def layouts(rgb):
    """Return the array image_to_numpy should give for every encoding, derived from ``rgb``."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    out = {
        "rgb8": rgb, "bgr8": bgr, "8UC3": bgr,
        "rgba8": cv2.cvtColor(rgb, cv2.COLOR_RGB2RGBA),
        "bgra8": cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA),
        "mono8": gray, "8UC1": gray,
        "mono16": gray.astype(np.uint16) * 257, "16UC1": gray.astype(np.uint16) * 257,
        "32FC1": gray.astype(np.float32) / 255.0,
    }
    if rgb.shape[1] % 2 == 0:  # 4:2:2 needs pixel pairs
        out["yuv422"] = out["uyvy"] = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_UYVY)
        out["yuv422_yuy2"] = out["yuyv"] = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_YUY2)
    for pattern in ("rggb", "bggr", "gbrg", "grbg"):
        out[f"bayer_{pattern}8"] = mosaic(rgb, pattern)
    return out


def padded(arr, encoding, pad, bigendian=False):
    """Build a message with ``pad`` garbage bytes after every row, optionally big-endian."""
    height, width = arr.shape[:2]
    raw = arr.astype(arr.dtype.newbyteorder(">" if bigendian else "<")).tobytes()
    row = len(raw) // height
    rows = np.frombuffer(raw, np.uint8).reshape(height, row)
    garbage = np.full((height, pad), 0xAB, np.uint8)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=int(bigendian),
                step=row + pad)
    msg.data = array.array("B", np.hstack([rows, garbage]).tobytes())
    return msg


def test_every_encoding_round_trips(frame):
    """numpy_to_image then image_to_numpy gives the array back, for every encoding."""
    arrays = layouts(frame)
    assert set(arrays) == set(SUPPORTED_ENCODINGS)
    header = Header(frame_id="cam_forward")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    for encoding, arr in arrays.items():
        msg = numpy_to_image(arr, encoding, header=header)
        assert isinstance(msg.data, array.array), encoding
        assert msg.step == frame.shape[1] * bytes_per_pixel(encoding), encoding
        assert len(msg.data) == msg.step * msg.height, encoding
        assert (msg.header.frame_id, msg.header.stamp.nanosec) == ("cam_forward", 345)
        back = image_to_numpy(msg)
        assert back.dtype == arr.dtype and back.shape == arr.shape, encoding
        np.testing.assert_array_equal(back, arr, err_msg=encoding)


def test_rgb_conversions_match_the_frame(frame):
    """Colour and mono encodings of the same frame decode to the same RGB."""
    arrays = layouts(frame)
    gray = arrays["mono8"]
    for encoding in ("rgb8", "bgr8", "8UC3", "rgba8", "bgra8"):
        np.testing.assert_array_equal(image_to_rgb8(numpy_to_image(arrays[encoding], encoding)),
                                      frame, err_msg=encoding)
    for encoding in ("mono8", "8UC1", "mono16", "16UC1"):
        rgb = image_to_rgb8(numpy_to_image(arrays[encoding], encoding))
        np.testing.assert_array_equal(rgb, np.repeat(gray[:, :, None], 3, axis=2))


def test_yuv422_matches_opencv_and_the_frame(frame):
    """UYVY and YUY2 decode as OpenCV does and close to the original frame."""
    arrays = layouts(frame)
    for encoding, code in (("yuv422", cv2.COLOR_YUV2RGB_UYVY),
                           ("yuv422_yuy2", cv2.COLOR_YUV2RGB_YUY2)):
        rgb = image_to_rgb8(numpy_to_image(arrays[encoding], encoding))
        np.testing.assert_array_equal(rgb, cv2.cvtColor(arrays[encoding], code))
        # 4:2:2 chroma subsampling loses little on a real frame ...
        assert np.abs(rgb.astype(int) - frame).mean() < 1.0, encoding
    # ... while reading UYVY bytes as YUY2 is visibly wrong: the byte order matters.
    wrong = image_to_rgb8(numpy_to_image(arrays["yuv422"], "yuv422_yuy2"))
    assert np.abs(wrong.astype(int) - frame).mean() > 20.0


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_debayer_recovers_the_frame(frame, pattern):
    """Each Bayer name maps to the right OpenCV pattern (only it restores the colours)."""
    raw = mosaic(frame, pattern)
    rgb = image_to_rgb8(numpy_to_image(raw, f"bayer_{pattern}8"))
    error = np.abs(rgb.astype(int) - frame).mean()
    assert error < 4.0, error
    # Every other pattern would give clearly wrong colours on the same mosaic.
    for other in {"rggb", "bggr", "gbrg", "grbg"} - {pattern}:
        msg = numpy_to_image(raw, f"bayer_{other}8")
        assert np.abs(image_to_rgb8(msg).astype(int) - frame).mean() > 3 * error, other


def test_step_padding_and_endianness(frame):
    """Row padding is skipped and big-endian samples are swapped to host order."""
    arrays = layouts(frame[:101, :203])  # odd sizes: rows are not aligned
    for encoding in ("rgb8", "bgr8", "rgba8", "mono8", "bayer_grbg8"):
        arr = arrays[encoding]
        msg = padded(arr, encoding, pad=5)
        np.testing.assert_array_equal(image_to_numpy(msg), arr, err_msg=encoding)
        np.testing.assert_array_equal(image_to_rgb8(msg),
                                      image_to_rgb8(numpy_to_image(arr, encoding)))
    for encoding in ("mono16", "32FC1"):
        arr = arrays[encoding]
        for bigendian in (False, True):
            msg = padded(arr, encoding, pad=6, bigendian=bigendian)
            back = image_to_numpy(msg)
            assert back.dtype.isnative
            np.testing.assert_array_equal(back, arr, err_msg=f"{encoding} big={bigendian}")
    even = layouts(frame[:101, :202])["yuv422"]
    np.testing.assert_array_equal(image_to_numpy(padded(even, "yuv422", pad=4)), even)
    # A big-endian mono16 frame reads as the same picture as a little-endian one.
    big = image_to_rgb8(padded(arrays["mono16"], "mono16", pad=2, bigendian=True))
    np.testing.assert_array_equal(big, image_to_rgb8(numpy_to_image(arrays["mono16"],
                                                                    "mono16")))


def test_rgb8_without_padding_is_not_copied(frame):
    """Dense rgb8 decodes as a view of the message buffer."""
    msg = numpy_to_image(frame, "rgb8")
    rgb = image_to_rgb8(msg)
    assert np.shares_memory(rgb, np.frombuffer(msg.data, np.uint8))


def test_rclpy_and_rosbags_builders_agree(frame):
    """numpy_to_image and bag_io.image_msg write the same fields and bytes, refuse alike."""
    from skd_saliency_ros.bags.bag_io import IMAGE_TYPE, header, image_msg, typestore_for

    store = typestore_for("humble")
    arrays = layouts(frame[:48, :64])
    for encoding in ("rgb8", "bgr8", "mono8", "mono16", "yuv422", "bayer_rggb8", "32FC1"):
        ours = numpy_to_image(arrays[encoding], encoding)
        bag = image_msg(store, arrays[encoding], encoding, header(store, 0, "cam"))
        assert isinstance(ours.data, array.array)  # never a numpy array: see numpy_to_image
        for name in ("height", "width", "encoding", "is_bigendian", "step"):
            assert getattr(bag, name) == getattr(ours, name), (encoding, name)
        assert bag.data.tobytes() == bytes(ours.data), encoding
        raw = store.serialize_cdr(bag, IMAGE_TYPE)  # what a bag stores decodes as the node's
        np.testing.assert_array_equal(
            image_to_numpy(store.deserialize_cdr(raw, IMAGE_TYPE)), arrays[encoding])
    for build in (lambda a: numpy_to_image(a, "rgb8"),
                  lambda a: image_msg(store, a, "rgb8", header(store, 0, "cam"))):
        with pytest.raises(ImageEncodingError, match="needs dtype uint8"):
            build(frame.astype(np.float32))


def _msg(encoding="rgb8", width=4, height=2, step=None, data=None):
    step = width * 3 if step is None else step
    msg = Image(encoding=encoding, width=width, height=height, step=step)
    msg.data = array.array("B", bytes(step * height) if data is None else data)
    return msg


@pytest.mark.parametrize("msg, message", [
    (_msg(data=b""), "data is empty"),
    (_msg(step=11), "step 11 is smaller than width x bytes per pixel = 12"),
    (_msg(data=bytes(23)), "data has 23 bytes, step x height needs 24"),
    (_msg(encoding="jpeg"), "unsupported encoding 'jpeg'"),
    (_msg(encoding="yuv422", width=3, step=6), "yuv422 needs an even width"),
    (_msg(width=0, step=0), "width and height must be positive"),
    (_msg(encoding="mono16", step=7), "step 7 is smaller than width x bytes per pixel = 8"),
    (_msg(encoding="bayer_rggb8", width=1, height=1, step=1), "at least 2x2"),
])
def test_inconsistent_messages_raise_a_clear_error(msg, message):
    """Each malformed message raises ImageEncodingError naming the problem."""
    with pytest.raises(ImageEncodingError, match=message):
        image_to_rgb8(msg)


def test_saliency_encoding_has_no_rgb_view():
    """32FC1 (the saliency output) is refused as a camera image."""
    msg = numpy_to_image(np.zeros((2, 3), np.float32), "32FC1")
    assert "32FC1" not in RGB_ENCODINGS
    with pytest.raises(ImageEncodingError, match="not a camera encoding"):
        image_to_rgb8(msg)


@pytest.mark.parametrize("arr, encoding, message", [
    (np.zeros((4, 4, 3), np.float32), "rgb8", "needs dtype uint8"),
    (np.zeros((4, 4), np.uint8), "rgb8", r"needs an array of shape \(H, W, 3\)"),
    (np.zeros((4, 4), np.float64), "32FC1", "needs dtype float32"),
    (np.zeros((0, 4, 3), np.uint8), "rgb8", "empty"),
    (np.zeros((4, 3, 2), np.uint8), "yuv422", "even width"),
    (np.zeros((4, 4), np.uint8), "mono12", "unsupported encoding"),
])
def test_numpy_to_image_rejects_mismatched_arrays(arr, encoding, message):
    """Arrays that do not fit the encoding are refused with the reason."""
    with pytest.raises(ImageEncodingError, match=message):
        numpy_to_image(arr, encoding)


def test_unsupported_encoding_names_exactly_what_is_accepted(frame):
    """The "supported:" list of each refusal is exactly what that function accepts.

    image_to_rgb8 names the camera encodings (every one decodes to RGB, 32FC1 is not
    among them); numpy_to_image names every encoding (each round-trips, test above).
    """
    def listed(func, msg):
        with pytest.raises(ImageEncodingError, match="unsupported encoding 'mono12'") as info:
            func(msg)
        return str(info.value).split("supported: ", 1)[1].split(", ")

    camera = listed(image_to_rgb8, _msg(encoding="mono12"))
    assert sorted(camera) == sorted(RGB_ENCODINGS) and "32FC1" not in camera
    arrays = layouts(frame[:8, :8])
    for encoding in camera:
        rgb = image_to_rgb8(numpy_to_image(arrays[encoding], encoding))
        assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8, encoding
    every = listed(lambda m: numpy_to_image(np.zeros((2, 2), np.uint8), m.encoding),
                   _msg(encoding="mono12"))
    assert sorted(every) == sorted(SUPPORTED_ENCODINGS)


def _compressed(data: bytes, fmt: str = "png"):
    """Return a CompressedImage holding ``data``."""
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage(format=fmt)
    msg.data = data
    return msg


LIMITS = {"min_size": 8, "max_pixels": 4096 * 4096}  # the node's defaults


def test_compressed_bomb_is_refused_before_decoding():
    """A real 250 kB PNG of 16000 x 16000: refused by its declared size, nothing decoded.

    Decoding it allocates 768 MB (traced by tracemalloc); the refusal allocates nothing
    of that order.
    """
    import tracemalloc

    from compressed_bombs import png_bomb

    data = png_bomb()
    assert len(data) < 400_000
    tracemalloc.start()
    try:
        with pytest.raises(ImageEncodingError,
                           match="16000x16000 image has more pixels than max_input_pixels "
                                 "16777216"):
            compressed_to_rgb8(_compressed(data), **LIMITS)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MB allocated while refusing"


def test_compressed_size_is_read_from_the_header(frame):
    """PNG IHDR and JPEG SOF (baseline, progressive) give the size; limits apply before decode.

    Header-only and patched files cannot be decoded, so a refusal naming the size shows
    the header was read first.  Real JPEG and PNG frames within the limits still decode.
    """
    from compressed_bombs import jpeg_declaring, png_header_only

    bgr = np.ascontiguousarray(frame[:, :, ::-1])
    big = "has more pixels than max_input_pixels"
    refused = [(png_header_only(16000, 16000), "16000x16000 image " + big),
               (jpeg_declaring(bgr, 16000, 16000), "16000x16000 image " + big),
               (jpeg_declaring(bgr, 20000, 9000, progressive=True), "20000x9000 image " + big),
               (cv2.imencode(".png", bgr[:4, :300])[1].tobytes(),
                "300x4 image is smaller than min_input_size 8"),
               (cv2.imencode(".bmp", bgr)[1].tobytes(), "not a JPEG or PNG image"),
               (png_header_only()[:20], "not a JPEG or PNG image"),
               (cv2.imencode(".jpg", bgr)[1].tobytes()[:100], "not a JPEG or PNG image"),
               (b"\xff\xd8" + b"\xff\xfe\x00\x02" * 100_000, "not a JPEG or PNG image")]
    for data, message in refused:
        with pytest.raises(ImageEncodingError, match=message):
            compressed_to_rgb8(_compressed(data), **LIMITS)
    jpeg = cv2.imencode(".jpg", bgr)[1].tobytes()
    # A 60 kB APP1 segment (EXIF's place) before the frame header is walked over.
    app1 = jpeg[:2] + b"\xff\xe1" + (60_002).to_bytes(2, "big") + bytes(60_000) + jpeg[2:]
    for data in (jpeg, app1, cv2.imencode(".png", bgr)[1].tobytes()):
        want = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
                            cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(compressed_to_rgb8(_compressed(data), **LIMITS), want)
    # Without limits (offline tools) the declared size is still read and must be valid.
    assert compressed_to_rgb8(_compressed(jpeg)).shape == frame.shape
