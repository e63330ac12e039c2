"""sensor_msgs/Image <-> numpy, without cv_bridge (not installable from PyPI).

Decoding honours the row ``step`` (rows may be padded) and ``is_bigendian`` (16-bit and
float data), and returns views of the message buffer where the layout allows, so a
1280x720 rgb8 frame costs no copy.  Every malformed message raises ``ImageEncodingError``
with the reason, so a node can log it and drop the frame instead of dying.

Encoding notes:

* ``yuv422`` is UYVY (the ROS name), ``yuv422_yuy2`` is YUYV; both BT.601 as OpenCV does it.
* ``bayer_*8`` name the colour of the top-left 2x2 cell, row by row (``bayer_rggb8``: R G /
  G B); debayering is OpenCV's bilinear demosaic.
* ``mono16`` / ``16UC1`` become 8 bits for RGB by keeping the high byte (value >> 8).
* ``8UC1`` is read as mono8 and ``8UC3`` as bgr8 (OpenCV's channel order), as cv_bridge does.
* ``32FC1`` is what the saliency output is published as; it has no RGB view.

Sizes: ``check_size`` is the one rule for the node's ``min_input_size`` and
``max_input_pixels``.  A CompressedImage is checked against it from the size its header
declares (PNG IHDR, JPEG frame header) before any pixel is decoded: a 250 kB PNG can
declare 16000 x 16000 pixels, 768 MB once decoded.
"""

from __future__ import annotations

import array
import struct
import sys
from typing import Dict, NamedTuple, Optional, Tuple

import cv2
import numpy as np
from sensor_msgs.msg import Image

from skd_saliency_ros.core.errors import SkdError


class ImageEncodingError(SkdError, ValueError):
    """An Image message that cannot be decoded: unsupported encoding or inconsistent fields."""

    #: What kind of problem it is (a node throttles its warnings per kind).
    kind = "decode"


class ImageSizeError(ImageEncodingError):
    """An image smaller than ``min_input_size`` or with more pixels than ``max_input_pixels``."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


class _Layout(NamedTuple):
    channels: int      # values per pixel in the numpy layout (yuv422: 2 bytes per pixel)
    dtype: str         # numpy base type of one value
    to_rgb: Optional[int]  # cv2 conversion code to RGB; _AS_IS: already RGB; None: no RGB view


_AS_IS = -1  # not a cv2 code: the pixels are RGB already

_LAYOUTS: Dict[str, _Layout] = {
    "rgb8": _Layout(3, "u1", _AS_IS),
    "bgr8": _Layout(3, "u1", cv2.COLOR_BGR2RGB),
    "8UC3": _Layout(3, "u1", cv2.COLOR_BGR2RGB),
    "rgba8": _Layout(4, "u1", cv2.COLOR_RGBA2RGB),
    "bgra8": _Layout(4, "u1", cv2.COLOR_BGRA2RGB),
    "mono8": _Layout(1, "u1", cv2.COLOR_GRAY2RGB),
    "8UC1": _Layout(1, "u1", cv2.COLOR_GRAY2RGB),
    "mono16": _Layout(1, "u2", cv2.COLOR_GRAY2RGB),
    "16UC1": _Layout(1, "u2", cv2.COLOR_GRAY2RGB),
    "yuv422": _Layout(2, "u1", cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": _Layout(2, "u1", cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": _Layout(2, "u1", cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": _Layout(2, "u1", cv2.COLOR_YUV2RGB_YUY2),
    # OpenCV names a Bayer pattern after the 2nd and 3rd pixel of the 2nd row, so ROS's
    # top-left RGGB is OpenCV's "BG" (the same table as cv_bridge).
    "bayer_rggb8": _Layout(1, "u1", cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": _Layout(1, "u1", cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": _Layout(1, "u1", cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": _Layout(1, "u1", cv2.COLOR_BayerGB2RGB),
    "32FC1": _Layout(1, "f4", None),
}

SUPPORTED_ENCODINGS = tuple(_LAYOUTS)
#: Encodings image_to_rgb8 accepts (camera images): those with an RGB view (not 32FC1).
RGB_ENCODINGS = tuple(e for e, layout in _LAYOUTS.items() if layout.to_rgb is not None)
_YUV422 = ("yuv422", "uyvy", "yuv422_yuy2", "yuyv")
_BAYER = ("bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8")
#: Encodings whose pixels come in cells: (x, y) multiples a crop's corners must fall on.
#: yuv422 shares one U and V sample between two pixels of a row (hence its even width); a
#: Bayer image is named after its top-left 2x2 cell, so an odd offset would turn bayer_rggb8
#: into another pattern under the same name.
PIXEL_CELLS: Dict[str, Tuple[int, int]] = {**{name: (2, 1) for name in _YUV422},
                                           **{name: (2, 2) for name in _BAYER}}
_HOST_BIGENDIAN = sys.byteorder == "big"


def bytes_per_pixel(encoding: str) -> int:
    """Bytes one pixel takes in a message of ``encoding`` (yuv422: 2)."""
    layout = _layout(encoding)
    return layout.channels * np.dtype(layout.dtype).itemsize


def _unsupported(encoding: str, accepted) -> ImageEncodingError:
    """Build the error for an unknown encoding, listing exactly what the caller accepts."""
    return ImageEncodingError(f"unsupported encoding '{encoding}'; supported: "
                              f"{', '.join(accepted)}")


def _layout(encoding: str) -> _Layout:
    try:
        return _LAYOUTS[encoding]
    except (KeyError, TypeError):
        raise _unsupported(encoding, SUPPORTED_ENCODINGS) from None


def _describe(msg) -> str:
    return f"{msg.width}x{msg.height} '{msg.encoding}' image"


def _check_geometry(msg, layout: _Layout) -> int:
    """Validate sizes against the encoding; return the number of bytes the pixels need."""
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    if width <= 0 or height <= 0:
        raise ImageEncodingError(f"{_describe(msg)}: width and height must be positive")
    if msg.encoding in _YUV422 and width % 2:
        raise ImageEncodingError(f"{_describe(msg)}: yuv422 needs an even width "
                                 "(two pixels share one U and V sample)")
    if msg.encoding in _BAYER and (width < 2 or height < 2):
        raise ImageEncodingError(f"{_describe(msg)}: a Bayer image needs at least 2x2 pixels")
    row = width * layout.channels * np.dtype(layout.dtype).itemsize
    if step < row:
        raise ImageEncodingError(f"{_describe(msg)}: step {step} is smaller than "
                                 f"width x bytes per pixel = {row}")
    return row


def _buffer(msg) -> np.ndarray:
    data = msg.data
    try:
        buf = np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):  # a plain list (e.g. built by hand)
        buf = np.asarray(data, dtype=np.uint8).ravel()
    return buf


def _check_data_size(msg, size: int) -> None:
    step, height = int(msg.step), int(msg.height)
    if size == 0:
        raise ImageEncodingError(f"{_describe(msg)}: data is empty")
    if size < step * height:
        raise ImageEncodingError(f"{_describe(msg)}: data has {size} bytes, "
                                 f"step x height needs {step * height}")


def check_image(msg, rgb: bool = True) -> None:
    """Raise ImageEncodingError if ``msg`` cannot be decoded; touches no pixel data.

    Cheap enough for a subscription callback: it checks the encoding (a camera encoding
    when ``rgb``), the geometry against the encoding and the data length.
    """
    if rgb and msg.encoding not in RGB_ENCODINGS:
        if msg.encoding not in _LAYOUTS:
            raise _unsupported(msg.encoding, RGB_ENCODINGS)
        raise ImageEncodingError(f"{_describe(msg)}: '{msg.encoding}' is not a camera "
                                 "encoding; cannot convert it to RGB")
    _check_geometry(msg, _layout(msg.encoding))
    _check_data_size(msg, len(msg.data))


def image_to_numpy(msg) -> np.ndarray:
    """Decode ``msg`` into its own layout: (H, W) for one channel, else (H, W, C).

    yuv422 gives (H, W, 2) uint8 (the raw byte pairs), Bayer (H, W) uint8.  Multi-byte
    values come back in host byte order.  The array may share memory with ``msg.data``.
    """
    layout = _layout(msg.encoding)
    row = _check_geometry(msg, layout)
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    buf = _buffer(msg)
    _check_data_size(msg, buf.size)
    rows = buf[:step * height].reshape(height, step)[:, :row]
    dtype = np.dtype(layout.dtype)
    if dtype.itemsize > 1:
        big = bool(msg.is_bigendian)
        rows = rows.view(dtype.newbyteorder(">" if big else "<"))
        if big != _HOST_BIGENDIAN:
            rows = rows.astype(dtype)  # host order; copies
    if layout.channels == 1:
        return rows.reshape(height, width)
    return rows.reshape(height, width, layout.channels)


def image_to_rgb8(msg) -> np.ndarray:
    """Decode ``msg`` to (H, W, 3) uint8 RGB, converting from any camera encoding.

    For rgb8 without row padding the result is a view of ``msg.data`` (no copy).
    """
    check_image(msg, rgb=True)
    arr = image_to_numpy(msg)
    layout = _LAYOUTS[msg.encoding]
    if layout.dtype == "u2":
        arr = (arr >> 8).astype(np.uint8)
    if layout.to_rgb == _AS_IS:
        return arr
    return cv2.cvtColor(arr, layout.to_rgb)  # OpenCV reads padded rows in place


class ImageFields(NamedTuple):
    """What a dense array gives an Image message: the one rule of both builders."""

    pixels: np.ndarray  # C-contiguous, the encoding's dtype in host byte order
    height: int
    width: int
    step: int           # width x bytes per pixel: dense rows, no padding
    is_bigendian: int   # the host's order, for multi-byte encodings


def image_fields(arr: np.ndarray, encoding: str) -> ImageFields:
    """Check ``arr`` against ``encoding`` and return the Image fields it fills.

    The expected array is what image_to_numpy returns for ``encoding``; e.g. 32FC1 wants a
    (H, W) float32 array.  Shared by numpy_to_image (rclpy messages) and
    bags.bag_io.image_msg (rosbags messages), so both write the same step and encoding.
    """
    layout = _layout(encoding)
    arr = np.asarray(arr)
    want_dtype = np.dtype(layout.dtype)
    if arr.dtype.kind != want_dtype.kind or arr.dtype.itemsize != want_dtype.itemsize:
        raise ImageEncodingError(f"image from an array: encoding '{encoding}' needs dtype "
                                 f"{want_dtype.name}, got {arr.dtype.name}")
    if layout.channels == 1 and arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    want_ndim = 2 if layout.channels == 1 else 3
    if arr.ndim != want_ndim or (want_ndim == 3 and arr.shape[2] != layout.channels):
        want = "(H, W)" if want_ndim == 2 else f"(H, W, {layout.channels})"
        raise ImageEncodingError(f"image from an array: encoding '{encoding}' needs an array "
                                 f"of shape {want}, got {arr.shape}")
    height, width = arr.shape[:2]
    if height == 0 or width == 0:
        raise ImageEncodingError(f"image from an array: empty {width}x{height} array")
    if encoding in _YUV422 and width % 2:
        raise ImageEncodingError(f"image from an array: yuv422 needs an even width, got "
                                 f"{width}")
    pixels = np.ascontiguousarray(arr, dtype=want_dtype.newbyteorder("="))
    return ImageFields(pixels, int(height), int(width),
                       int(width * layout.channels * want_dtype.itemsize),
                       int(_HOST_BIGENDIAN and want_dtype.itemsize > 1))


def numpy_to_image(arr: np.ndarray, encoding: str, header=None) -> Image:
    """Build a sensor_msgs/Image (rclpy) from ``arr``: the one builder of every rclpy path.

    ``arr`` is checked by image_fields (dense rows, host byte order); ``header``
    (std_msgs/Header) is assigned as is when given.

    ``data`` is an array.array('B') filled from the array's buffer: one memcpy (~0.2 ms for a
    1280x720 rgb8 frame), kept as is by the message (_empty_image).  Never assign a numpy
    array to ``data``: the generated setter converts it element by element, ~100x slower
    (~150 ms); ``arr.tobytes()`` costs a second copy (~0.6 ms) and, with field checks on
    (ROS_PYTHON_CHECK_FIELDS), a check of every byte (~150 ms).
    """
    fields = image_fields(arr, encoding)
    msg = _empty_image()
    if header is not None:
        msg.header = header
    msg.height = fields.height
    msg.width = fields.width
    msg.encoding = encoding
    msg.is_bigendian = fields.is_bigendian
    msg.step = fields.step
    data = array.array("B")
    data.frombytes(memoryview(fields.pixels).cast("B"))
    msg.data = data
    return msg


def _empty_image() -> Image:
    """Return an Image whose ``data`` setter keeps an array.array as is.

    Without field checks (the default since Jazzy, ROS_PYTHON_CHECK_FIELDS unset) the
    generated setter copies any value into a new array.array: one more pass over a
    3.7 MB map.  With checks, an array.array of type 'B' is stored without a copy.  Humble's
    messages take no ``check_fields`` argument and always keep the array.
    """
    try:
        return Image(check_fields=True)
    except (AssertionError, TypeError):
        return Image()


def check_size(width: int, height: int, min_size: int = 1,
               max_pixels: Optional[int] = None) -> None:
    """Raise ImageSizeError for an image outside the limits (raw or compressed alike).

    Too small: the model sees nothing at R x R; too many pixels: memory and latency
    (``max_pixels`` None: no upper limit).
    """
    if width < min_size or height < min_size:
        raise ImageSizeError(f"{width}x{height} image is smaller than min_input_size "
                             f"{min_size}", "too_small")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageSizeError(f"{width}x{height} image has more pixels than max_input_pixels "
                             f"{max_pixels}", "too_large")


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers: SOF0-3, 5-7, 9-11, 13-15 (C4 is DHT, C8 JPG, CC DAC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_MAX_MARKERS = 1024


def compressed_size(data) -> Optional[Tuple[int, int]]:
    """Return the (width, height) a PNG's IHDR or JPEG's frame header declares, else None.

    ``data`` is bytes or a memoryview of them.  Only header bytes are read, so the size of
    a compressed image is known before decoding it.
    """
    if data[:8] == _PNG_SIGNATURE:
        if len(data) >= 24 and data[12:16] == b"IHDR":  # IHDR is always the first chunk
            width, height = struct.unpack(">II", data[16:24])
            return int(width), int(height)
        return None
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


def _jpeg_size(data) -> Optional[Tuple[int, int]]:
    """Walk a JPEG's marker segments to its frame header (SOFn): height, width follow.

    Bounded: the frame header of a real JPEG follows a handful of APPn / DQT segments, and
    this runs in a subscription callback, so a file of endless tiny segments is refused.
    """
    at = 2
    for _ in range(_JPEG_MAX_MARKERS):
        if at + 4 > len(data) or data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            at += 2
        elif marker in (0xD9, 0xDA):  # end of image, or a scan before any frame header
            return None
        elif marker in _JPEG_SOF:
            if at + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[at + 5:at + 9])
            return int(width), int(height)
        else:
            length = (data[at + 2] << 8) | data[at + 3]
            if length < 2:  # a segment's length counts its own two bytes
                return None
            at += 2 + length
    return None


def check_compressed(msg, min_size: int = 1, max_pixels: Optional[int] = None
                     ) -> Tuple[int, int]:
    """Return the (width, height) a CompressedImage declares; raise if it cannot be used.

    Touches only the header: no data, not a JPEG or PNG, or a header that ends early raise
    ImageEncodingError; a declared size outside the limits raises ImageSizeError.
    """
    data = _buffer(msg)
    if not data.size:
        raise ImageEncodingError(f"CompressedImage (format '{msg.format}') has no data")
    size = compressed_size(memoryview(data))  # no copy: only header bytes are read
    if size is None:
        raise _undecodable(msg, data.size)
    check_size(size[0], size[1], min_size, max_pixels)
    return size


def _undecodable(msg, size: int) -> ImageEncodingError:
    return ImageEncodingError(f"CompressedImage (format '{msg.format}') with {size} bytes "
                              "cannot be decoded (not a JPEG or PNG image)")


def compressed_to_rgb8(msg, min_size: int = 1, max_pixels: Optional[int] = None
                       ) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs/CompressedImage (jpeg or png, any colour).

    The size the header declares is checked against ``min_size`` and ``max_pixels``
    (check_compressed) before decoding, so a small file declaring a huge image is refused
    without allocating it.  The ``format`` field is only reported in errors: the bytes
    themselves say what they are, as with image_transport's compressed plugin ("jpeg",
    "rgb8; jpeg compressed bgr8", ...).
    """
    check_compressed(msg, min_size, max_pixels)
    buf = _buffer(msg)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise _undecodable(msg, buf.size)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
