"""The model's input size, H x W, written once: parsing, naming, reading it from a model file.

The paper's students take square R x R frames (R = 64).  A 16:9 camera squashed to a square
loses its aspect ratio, so a model may instead be trained at H x W (e.g. 48x80, 64x112).
Everything that sizes a model input (training caches, checkpoint, engine, ONNX export,
node, replay, bench, teachers fed the student's frames) goes through :class:`InputSize`:

* text form ``"64"`` (square, the default and the old form) or ``"64x112"`` (height x
  width, the order of numpy shapes and of "720p" captions' H);
* a checkpoint stores ``input_size: [H, W]``; a checkpoint written before that key existed
  holds only ``resolution: R`` and reads as R x R, unchanged;
* a frame of any aspect ratio is resized to H x W by area averaging over the *whole* frame
  (anisotropic when the aspects differ), exactly as the training frames were: never cropped.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, NamedTuple, Union

from skd_saliency_ros.core.errors import SkdError

#: Height and width must be multiples of this: every architecture of core.models down-samples
#: by 4 (``model.factor``; checked again where the model is known).
MULTIPLE = 4

_TEXT = re.compile(r"^\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*$")


class InputSizeError(SkdError, ValueError):
    """An input size that is not H x W positive multiples of MULTIPLE."""


class InputSize(NamedTuple):
    """Model input height and width in pixels."""

    height: int
    width: int

    @property
    def square(self) -> bool:
        """Whether height == width (the paper's R x R)."""
        return self.height == self.width

    @property
    def pixels(self) -> int:
        """Height times width: what a step and an inference cost scale with."""
        return self.height * self.width

    @property
    def label(self) -> str:
        """``"64"`` for a square size (the old R form), ``"64x112"`` otherwise."""
        return str(self.height) if self.square else f"{self.height}x{self.width}"

    @property
    def described(self) -> str:
        """``R = 64`` for a square size (the reports' old wording), ``input 48x80 (H x W)``."""
        return f"R = {self.label}" if self.square else f"input {self.label} (H x W)"

    def divisible_by(self, factor: int) -> bool:
        """Whether a net that down-samples by ``factor`` maps this input to a whole grid."""
        return self.height % factor == 0 and self.width % factor == 0

    @property
    def cv2_size(self) -> tuple:
        """(width, height): OpenCV's order."""
        return (self.width, self.height)

    def __str__(self) -> str:
        return self.label


SizeLike = Union[InputSize, int, str, tuple, list]


def parse_input_size(value: SizeLike, what: str = "input size") -> InputSize:
    """``64`` / ``"64"`` -> 64x64; ``"64x112"`` / ``(64, 112)`` -> 64x112; else InputSizeError.

    ``what`` names the option in the error (e.g. ``"--resolution"``).
    """
    if isinstance(value, InputSize):
        height, width = value
    elif isinstance(value, bool):
        raise InputSizeError(f"{what}: expected R or HxW, got {value!r}")
    elif isinstance(value, int):
        height = width = value
    elif isinstance(value, str):
        match = _TEXT.match(value)
        if not match:
            raise InputSizeError(f"{what}: expected R (e.g. 64) or HxW (e.g. 64x112), got "
                                 f"{value!r}")
        height = int(match.group(1))
        width = int(match.group(2)) if match.group(2) else height
    elif isinstance(value, (tuple, list)) and len(value) == 2 \
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        height, width = value
    else:
        raise InputSizeError(f"{what}: expected R or HxW, got {value!r}")
    size = InputSize(int(height), int(width))
    if min(size) < 8 or size.height % MULTIPLE or size.width % MULTIPLE:
        raise InputSizeError(f"{what}: {size.height}x{size.width}: height and width must be "
                             f"multiples of {MULTIPLE} and >= 8")
    return size


def plain_size(value: SizeLike) -> Union[int, str]:
    """Return the JSON / config form of a size: R (an int) when square, else ``"HxW"``.

    Square sizes keep the form every config and JSON already held.
    """
    size = parse_input_size(value)
    return size.height if size.square else size.label


def size_argument(text: str) -> Union[int, str]:
    """Parse ``--resolution`` (an argparse ``type=``): R or HxW, in :func:`plain_size` form."""
    import argparse

    try:
        return plain_size(text)
    except InputSizeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def size_of_checkpoint(payload: Mapping[str, Any]) -> InputSize:
    """Return the input size a checkpoint's payload was trained at (``input_size``, else R)."""
    if "input_size" in payload:
        return parse_input_size(list(payload["input_size"]), "checkpoint input_size")
    return parse_input_size(int(payload["resolution"]), "checkpoint resolution")


def size_of_onnx(props: Mapping[str, str], shape) -> InputSize:
    """Return the input size of an exported model.

    Metadata ``input_size`` ("HxW"), else ``resolution`` (R), else the input's fixed
    (B, C, H, W) shape.
    """
    if "input_size" in props:
        return parse_input_size(props["input_size"], "ONNX input_size metadata")
    if "resolution" in props:
        return parse_input_size(int(props["resolution"]), "ONNX resolution metadata")
    if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
        return parse_input_size((int(shape[2]), int(shape[3])), "ONNX input shape")
    raise InputSizeError(f"input shape {list(shape)} has no fixed H, W and the file has no "
                         "'input_size' or 'resolution' metadata")
