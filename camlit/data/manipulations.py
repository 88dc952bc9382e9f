"""Kaggle's eight test-set manipulations, written once for data preparation and for augmentation.

Each is a pure function from an HxWx3 uint8 RGB array to a new one. The exact formulas, because
public solutions disagree on them:

- ``jpeg70`` / ``jpeg90``: OpenCV (libjpeg) encode at that quality with its default 4:2:0 chroma
  subsampling, then decode. The result is the decoded pixels.
- ``resize0.5`` .. ``resize2.0``: ``cv2.resize`` with ``INTER_CUBIC`` (Keys kernel, a = -0.75),
  output size ``round(width * f) x round(height * f)`` with Python's ``round``.
- ``gamma0.8`` / ``gamma1.2``: ``out = round(255 * (in / 255) ** gamma)`` through a 256-entry
  table. A gamma below 1 brightens.
- ``unaltered``: a copy.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, partial

import cv2
import numpy as np

Manipulation = Callable[[np.ndarray], np.ndarray]

# The name of the untouched image, as a prepared folder, a validation group and a test-set group.
UNALTERED = "unaltered"


def unaltered(image: np.ndarray) -> np.ndarray:
    return image.copy()


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


def gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    return cv2.LUT(image, gamma_table(gamma))


MANIPULATIONS: dict[str, Manipulation] = {
    UNALTERED: unaltered,
    "jpeg70": partial(jpeg, quality=70),
    "jpeg90": partial(jpeg, quality=90),
    "resize0.5": partial(resize, factor=0.5),
    "resize0.8": partial(resize, factor=0.8),
    "resize1.5": partial(resize, factor=1.5),
    "resize2.0": partial(resize, factor=2.0),
    "gamma0.8": partial(gamma, gamma=0.8),
    "gamma1.2": partial(gamma, gamma=1.2),
}
MANIPULATED: tuple[str, ...] = tuple(name for name in MANIPULATIONS if name != UNALTERED)
RESIZE_FACTORS: dict[str, float] = {
    name: float(name.removeprefix("resize")) for name in MANIPULATIONS if name.startswith("resize")
}


def apply(name: str, image: np.ndarray) -> np.ndarray:
    try:
        return MANIPULATIONS[name](image)
    except KeyError:
        raise ValueError(f"unknown manipulation {name!r}; choose from {', '.join(MANIPULATIONS)}") from None


def source_size(name: str, size: int) -> int:
    """The side of a source patch that still yields a `size` crop after manipulation `name`."""
    factor = RESIZE_FACTORS.get(name, 1.0)
    # +2 keeps an even-offset crop possible after rounding; JPEG's 8x8 grid needs no margin.
    return int(np.ceil(size / factor)) + 2 if factor != 1.0 else size
