"""Compressed images whose header declares far more pixels than their bytes suggest.

``png_bomb`` is a complete, valid PNG: 16000 x 16000 grey zeros compress to ~250 kB, and
decoding it as colour allocates 768 MB.  ``png_header_only`` stops after the IHDR chunk:
any decoder fails on it, so a refusal that names the size proves the size was read before
decoding.  ``jpeg_declaring`` rewrites the frame header (SOF) of a real JPEG.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    """Return one PNG chunk: length, type, data, CRC over type and data."""
    return struct.pack(">I", len(data)) + kind + data + \
        struct.pack(">I", zlib.crc32(kind + data))


def _ihdr(width: int, height: int) -> bytes:
    """Return the IHDR of an 8-bit greyscale, non-interlaced image."""
    return _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))


def png_bomb(width: int = 16000, height: int = 16000) -> bytes:
    """Return a valid greyscale PNG of zeros, compressed row by row (never held whole)."""
    comp = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then the pixels
    idat = b"".join([comp.compress(row) for _ in range(height)] + [comp.flush()])
    return PNG_SIGNATURE + _ihdr(width, height) + _chunk(b"IDAT", idat) + \
        _chunk(b"IEND", b"")


def png_header_only(width: int = 16000, height: int = 16000) -> bytes:
    """Return a PNG signature and IHDR, no pixel data."""
    return PNG_SIGNATURE + _ihdr(width, height)


def jpeg_declaring(bgr: np.ndarray, width: int, height: int, progressive: bool = False) -> bytes:
    """Return a real JPEG of ``bgr`` whose SOF marker says ``width`` x ``height``."""
    flags = [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)]
    data = bytearray(cv2.imencode(".jpg", bgr, flags)[1].tobytes())
    sof = b"\xff\xc2" if progressive else b"\xff\xc0"
    at = data.index(sof)
    assert struct.unpack(">HH", data[at + 5:at + 9]) == bgr.shape[:2], "SOF not where expected"
    data[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(data)
