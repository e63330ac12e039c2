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
"""

from __future__ import annotations

import array
import sys
from typing import Dict, NamedTuple, Optional

import cv2
import numpy as np
from sensor_msgs.msg import Image

from skd_saliency_ros.core.errors import SkdError


class ImageEncodingError(SkdError, ValueError):
    """An Image message that cannot be decoded: unsupported encoding or inconsistent fields."""


class _Layout(NamedTuple):
    channels: int      # values per pixel in the numpy layout (yuv422: 2 bytes per pixel)
    dtype: str         # numpy base type of one value
    to_rgb: Optional[int]  # cv2 conversion code to RGB, None when special-cased


_LAYOUTS: Dict[str, _Layout] = {
    "rgb8": _Layout(3, "u1", None),
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
#: Encodings image_to_rgb8 accepts (camera images); 32FC1 is output-only.
RGB_ENCODINGS = tuple(e for e in SUPPORTED_ENCODINGS if e != "32FC1")
_YUV422 = ("yuv422", "uyvy", "yuv422_yuy2", "yuyv")
_BAYER = ("bayer_rggb8", "bayer_bggr8", "bayer_gbrg8", "bayer_grbg8")
_HOST_BIGENDIAN = sys.byteorder == "big"


def bytes_per_pixel(encoding: str) -> int:
    """Bytes one pixel takes in a message of ``encoding`` (yuv422: 2)."""
    layout = _layout(encoding)
    return layout.channels * np.dtype(layout.dtype).itemsize


def _layout(encoding: str) -> _Layout:
    try:
        return _LAYOUTS[encoding]
    except (KeyError, TypeError):
        raise ImageEncodingError(
            f"unsupported encoding '{encoding}'; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        ) from None


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
        _layout(msg.encoding)  # unknown encodings get the "unsupported" message
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
    if layout.to_rgb is None:  # rgb8
        return arr
    return cv2.cvtColor(arr, layout.to_rgb)  # OpenCV reads padded rows in place


def numpy_to_image(arr: np.ndarray, encoding: str, header=None) -> Image:
    """Build a sensor_msgs/Image from ``arr`` (dense rows, host byte order).

    The expected array is what image_to_numpy returns for ``encoding``; e.g. 32FC1 wants a
    (H, W) float32 array.  ``header`` (std_msgs/Header) is assigned as is when given.
    """
    layout = _layout(encoding)
    arr = np.asarray(arr)
    want_dtype = np.dtype(layout.dtype)
    if arr.dtype.kind != want_dtype.kind or arr.dtype.itemsize != want_dtype.itemsize:
        raise ImageEncodingError(f"numpy_to_image: encoding '{encoding}' needs dtype "
                                 f"{want_dtype.name}, got {arr.dtype.name}")
    if layout.channels == 1 and arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    want_ndim = 2 if layout.channels == 1 else 3
    if arr.ndim != want_ndim or (want_ndim == 3 and arr.shape[2] != layout.channels):
        want = "(H, W)" if want_ndim == 2 else f"(H, W, {layout.channels})"
        raise ImageEncodingError(f"numpy_to_image: encoding '{encoding}' needs an array of "
                                 f"shape {want}, got {arr.shape}")
    height, width = arr.shape[:2]
    if height == 0 or width == 0:
        raise ImageEncodingError(f"numpy_to_image: empty {width}x{height} array")
    if encoding in _YUV422 and width % 2:
        raise ImageEncodingError(f"numpy_to_image: yuv422 needs an even width, got {width}")
    arr = np.ascontiguousarray(arr, dtype=want_dtype.newbyteorder("="))
    msg = _empty_image()
    if header is not None:
        msg.header = header
    msg.height = int(height)
    msg.width = int(width)
    msg.encoding = encoding
    msg.is_bigendian = int(_HOST_BIGENDIAN and want_dtype.itemsize > 1)
    msg.step = int(width * layout.channels * want_dtype.itemsize)
    # An array.array passes the message's type check without a per-byte Python loop; filling
    # it from the array's buffer is one memcpy (arr.tobytes() would add a second one), and a
    # message with field checks keeps that array instead of copying it (_empty_image).
    data = array.array("B")
    data.frombytes(memoryview(arr).cast("B"))
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


def compressed_to_rgb8(msg) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a sensor_msgs/CompressedImage (jpeg or png, any colour).

    The ``format`` field is only reported in errors: OpenCV recognises the bytes themselves,
    which is what image_transport's compressed plugin writes ("jpeg", "rgb8; jpeg
    compressed bgr8", ...).
    """
    import cv2

    buf = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None:
        raise ImageEncodingError(f"CompressedImage (format '{msg.format}') with {buf.size} "
                                 "bytes cannot be decoded (not a JPEG or PNG image)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
