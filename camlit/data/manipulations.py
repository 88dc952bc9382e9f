"""Kaggle's eight test-set manipulations, written once for data preparation, augmentation and validation.

Each is a record (kind, parameter, margin) that applies itself as a pure function from an HxWx3
uint8 RGB array to a new one. The exact formulas, because public solutions disagree on them:

- ``jpeg70`` / ``jpeg90``: OpenCV (libjpeg) encode at that quality with its default 4:2:0 chroma
  subsampling, then decode. The result is the decoded pixels.
- ``resize0.5`` .. ``resize2.0``: ``cv2.resize`` with ``INTER_CUBIC`` (Keys kernel, a = -0.75),
  output size ``round(width * f) x round(height * f)`` with Python's ``round``.
- ``gamma0.8`` / ``gamma1.2``: ``out = round(255 * (in / 255) ** gamma)`` through a 256-entry
  table. A gamma below 1 brightens.
- ``unaltered``: a copy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
from functools import cache

import cv2
import numpy as np

from camlit.data.batch import UNKNOWN

# The name of the untouched image, as a prepared folder, a validation group and a test-set group.
UNALTERED = "unaltered"
# libjpeg's 4:2:0 layout (8x8 blocks, 2x2 chroma subsampling, edge padding) repeats every 16
# pixels, and decoding reads at most one chroma sample across a block edge.
JPEG_PERIOD = 16
# Source pixels a resize reads beyond its output: the cubic kernel reaches two source pixels, four
# output pixels at 2x; 32 (96 bytes) also clears a SIMD loop's tail of up to 64.
RESIZE_MARGIN = 32


class Kind(Enum):
    UNALTERED = "unaltered"
    JPEG = "jpeg"  # parameter: quality
    RESIZE = "resize"  # parameter: scale factor
    GAMMA = "gamma"  # parameter: exponent


@dataclass(frozen=True)
class Manipulation:
    """One manipulation: what it is, its parameter, and how far beyond a pixel its result reads.

    `margin` is in source pixels: 0 for per-pixel tables, the JPEG block period, the resize kernel's reach.
    """

    name: str
    kind: Kind
    parameter: float = 0.0
    margin: int = 0

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self.kind is Kind.JPEG:
            return jpeg(image, int(self.parameter))
        if self.kind is Kind.RESIZE:
            return resize(image, self.parameter)
        if self.kind is Kind.GAMMA:
            return cv2.LUT(image, gamma_table(self.parameter))
        return image.copy()

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the manipulated frame."""
        return resized_shape(height, width, self.parameter) if self.kind is Kind.RESIZE else (height, width)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def resized_shape(height: int, width: int, factor: float) -> tuple[int, int]:
    return round(height * factor), round(width * factor)


def resize(image: np.ndarray, factor: float) -> np.ndarray:
    height, width = resized_shape(image.shape[0], image.shape[1], factor)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)


@cache
def gamma_table(gamma: float) -> np.ndarray:
    return np.round(255.0 * (np.arange(256) / 255.0) ** gamma).astype(np.uint8)


MANIPULATIONS: dict[str, Manipulation] = {
    m.name: m
    for m in (
        Manipulation(UNALTERED, Kind.UNALTERED),
        Manipulation("jpeg70", Kind.JPEG, 70, JPEG_PERIOD),
        Manipulation("jpeg90", Kind.JPEG, 90, JPEG_PERIOD),
        Manipulation("resize0.5", Kind.RESIZE, 0.5, RESIZE_MARGIN),
        Manipulation("resize0.8", Kind.RESIZE, 0.8, RESIZE_MARGIN),
        Manipulation("resize1.5", Kind.RESIZE, 1.5, RESIZE_MARGIN),
        Manipulation("resize2.0", Kind.RESIZE, 2.0, RESIZE_MARGIN),
        Manipulation("gamma0.8", Kind.GAMMA, 0.8),
        Manipulation("gamma1.2", Kind.GAMMA, 1.2),
    )
}
# A manipulation's index here is its number in camlit.data.batch.Batch.manipulation; 0 is unaltered.
NAMES: tuple[str, ...] = tuple(MANIPULATIONS)
MANIPULATED: tuple[str, ...] = NAMES[1:]


def get(name: str) -> Manipulation:
    try:
        return MANIPULATIONS[name]
    except KeyError:
        raise ValueError(f"unknown manipulation {name!r}; choose from {', '.join(MANIPULATIONS)}") from None


def apply(name: str, image: np.ndarray) -> np.ndarray:
    return get(name)(image)


def index(name: str) -> int:
    """`name`'s number in Batch.manipulation; UNKNOWN for a name that is not Kaggle's (a folder's own)."""
    return NAMES.index(name) if name in MANIPULATIONS else UNKNOWN


def axis_window(manipulation: Manipulation, extent: int, lo: int, hi: int) -> tuple[int, int, int]:
    """Source span [start, stop) of one axis whose manipulation, placed at `placed` in the
    manipulated frame, equals the full frame's pixels over [lo, hi): (start, stop, placed)."""
    kind, margin = manipulation.kind, manipulation.margin
    if kind in (Kind.UNALTERED, Kind.GAMMA):
        return lo, hi, lo  # per-pixel tables
    if kind is Kind.JPEG:
        # The margin is the block grid's period: the window starts and ends on the grid.
        start = max(0, (lo - margin) // margin * margin)
        stop = min(extent, -(-(hi + margin) // margin) * margin)
        return start, stop, start
    if kind is Kind.RESIZE:
        factor = manipulation.parameter
        ratio = Fraction(extent, resized_shape(extent, extent, factor)[0])
        # Whole blocks (p source pixels -> q output pixels) keep the frame's exact scale. OpenCV
        # maps output pixels to source positions in float: exact for a power-of-two q, but for 1.5
        # (q = 3) the rounding varies with the coordinate, so there the window keeps the origin.
        p, q = ratio.numerator, ratio.denominator
        first = max(0, (lo - margin) // q) if q & (q - 1) == 0 else 0
        last = min(extent // p, -(-(hi + margin) // q))
        if resized_shape((last - first) * p, 1, factor)[0] == (last - first) * q:
            return first * p, last * p, first * q
    return 0, extent, 0


def source_window(
    manipulation: Manipulation, height: int, width: int, offsets: list[tuple[int, int]], size: int
) -> tuple[slice, slice, int, int]:
    """The source region to manipulate for crops at `offsets` of the manipulated frame, and the
    region's top-left corner in that frame."""
    tops, lefts = [t for t, _ in offsets], [x for _, x in offsets]
    top, bottom, dy = axis_window(manipulation, height, min(tops), max(tops) + size)
    left, right, dx = axis_window(manipulation, width, min(lefts), max(lefts) + size)
    return slice(top, bottom), slice(left, right), dy, dx


def manipulated_crops(name: str, image: np.ndarray, offsets: list[tuple[int, int]], size: int) -> list[np.ndarray]:
    """The `size` crops at `offsets` of manipulation `name` of the full `image`."""
    manipulation = get(name)
    rows, cols, dy, dx = source_window(manipulation, image.shape[0], image.shape[1], offsets, size)
    region = manipulation(image[rows, cols])
    return [region[t - dy : t - dy + size, x - dx : x - dx + size] for t, x in offsets]
