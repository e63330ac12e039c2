"""Frames of a video file or of a folder of images: the one read loop of the repository.

The bag converter, the demo's player, the training data, the export check, the benches and
the test harness all read frames here, so "open it, read until done, say clearly what went
wrong" is written once.  ROS-free (OpenCV and numpy only).

Convention: frames are (H, W, 3) uint8 arrays in **RGB** order, what the engine, the
metrics and the training data work in.  ``order="bgr"`` gives OpenCV's own order instead, for
callers that hand frames back to OpenCV (encoders, OpenCV saliency) or publish ``bgr8``: the
decoder's frames then pass unconverted.

A folder is read in natural name order (``2.png`` before ``10.png``); only image files count
(``IMAGE_EXT``), every image must decode and have the first one's size.  A folder carries no
frame rate (``fps`` is None); a video's is its container's, None when it does not say.  Every
problem (missing path, a file OpenCV cannot open, a frame that does not decode, a video that
ends early) raises :class:`FrameSourceError` naming the file and the problem.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, List, Optional, Union

import cv2
import numpy as np

from skd_saliency_ros.core.errors import SkdError

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
ORDERS = ("rgb", "bgr")


class FrameSourceError(SkdError, ValueError):
    """A video or frame folder that is missing, unreadable or shorter than asked for."""


def natural_key(name: str):
    """Sort key that orders the numbers inside names by value (``2.png`` before ``10.png``)."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


class FrameSource:
    """A video file or folder of images, opened and probed; ``frames()`` reads it.

    Opening reads the first frame (its size is the source's size), so a source that cannot
    give a single frame is refused here, before any work.  Attributes: ``path``, ``order``,
    ``images`` (the folder's files in order, None for a video), ``n_frames`` (a folder's
    image count; a video's container count, 0 when it says none), ``fps`` (None: unknown),
    ``width``, ``height``.
    """

    def __init__(self, path: Union[str, Path], order: str = "rgb"):
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}, got '{order}'")
        self.path = Path(path)
        self.order = order
        self.images: Optional[List[Path]] = None
        self.fps: Optional[float] = None
        if self.path.is_dir():
            self._open_folder()
        elif self.path.is_file():
            self._open_video()
        else:
            raise FrameSourceError(f"{self.path}: no such video file or frame folder")

    def __repr__(self) -> str:
        kind = "folder" if self.images is not None else "video"
        return (f"FrameSource({str(self.path)!r}, {kind}, {self.width}x{self.height}, "
                f"{self.n_frames} frames, {self.order})")

    # ---- opening ------------------------------------------------------------------------
    def _open_folder(self) -> None:
        self.images = sorted((p for p in self.path.iterdir()
                              if p.is_file() and p.suffix.lower() in IMAGE_EXT),
                             key=lambda p: natural_key(p.name))
        if not self.images:
            raise FrameSourceError(f"{self.path}: frame folder holds no images "
                                   f"({', '.join(IMAGE_EXT)})")
        self.n_frames = len(self.images)
        self.height, self.width = self._read_image(self.images[0]).shape[:2]

    def _open_video(self) -> None:
        cap = self._capture()
        try:
            self.n_frames = max(0, int(round(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)))
            fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            self.fps = fps if np.isfinite(fps) and fps > 0 else None
            ok, bgr = cap.read()
            if not ok or bgr is None or bgr.ndim != 3:
                raise FrameSourceError(f"{self.path}: cannot decode the first frame (corrupt "
                                       "or unsupported video)")
            self.height, self.width = bgr.shape[:2]
        finally:
            cap.release()

    def _capture(self) -> cv2.VideoCapture:
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise FrameSourceError(f"{self.path}: cannot open video (corrupt or unsupported "
                                   "format)")
        return cap

    # ---- reading ------------------------------------------------------------------------
    def _ordered(self, bgr: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if self.order == "rgb" else bgr

    def _read_image(self, path: Path) -> np.ndarray:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FrameSourceError(f"{path}: cannot read image (corrupt or unsupported format)")
        return self._ordered(bgr)

    def frames(self, start: int = 0, stop: Optional[int] = None) -> Iterator[np.ndarray]:
        """Yield frames ``start`` .. ``stop - 1``; ``stop`` None: every frame to the end.

        A source that ends before ``stop`` raises FrameSourceError at the missing frame, so a
        caller that asks for N frames gets N or an error; for at most N frames take
        ``itertools.islice(source.frames(), N)``.  A video is decoded from its first frame
        (frames before ``start`` are decoded and dropped: exact indices even for inter-coded
        video, where seeking is not).
        """
        start = max(0, int(start))
        if self.images is not None:
            yield from self._folder_frames(start, stop)
            return
        wanted = f"frames {start}..{stop - 1}" if stop is not None else f"frames from {start}"
        cap = self._capture()
        try:
            for k in range(start):
                if not cap.grab():
                    raise self._ended(k, wanted)
            k = start
            while stop is None or k < stop:
                ok, bgr = cap.read()
                if not ok or bgr is None:
                    if stop is None:
                        return
                    raise self._ended(k, wanted)
                yield self._ordered(bgr)
                k += 1
        finally:
            cap.release()

    def _folder_frames(self, start: int, stop: Optional[int]) -> Iterator[np.ndarray]:
        if stop is not None and stop > len(self.images):
            raise FrameSourceError(f"{self.path}: frames {start}..{stop - 1} asked for, the "
                                   f"folder holds {len(self.images)} images")
        for path in self.images[start:stop]:
            img = self._read_image(path)
            if img.shape[:2] != (self.height, self.width):
                raise FrameSourceError(f"{path}: image is {img.shape[1]}x{img.shape[0]}, the "
                                       f"folder's first image is {self.width}x{self.height}")
            yield img

    def _ended(self, k: int, wanted: str) -> FrameSourceError:
        return FrameSourceError(f"{self.path}: cannot decode frame {k} (video ended or is "
                                f"corrupt; {wanted} asked for, the container says "
                                f"{self.n_frames} frames)")
