"""Which tiles are too flat or too clipped to judge (as Güera et al. 2018 left them out).

A camera's traces live in the noise residual: a tile with almost none (a flat, dark or smooth
area after the camera's processing) or one mostly clipped to black or white tells nothing, and
its prediction is a guess. Such tiles are drawn hatched and left out of every decision.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# Standard deviation of the luma high-pass residual, in 8-bit levels: below it a tile is flat. Measured
# (docs/forensics_measurements.md): tiles of clean photos between 0.4 and 0.8 agree with the photo's camera 99% of
# the time, so only tiles below 0.4 (where a camera's noise is gone) are left out.
FLAT_RESIDUAL = 0.4
# Share of pixels with a channel at 0..2 everywhere or 253..255 somewhere, above which a tile is
# clipped. Measured: tiles above it agree with the photo's camera 62-75% of the time, against 86% below.
CLIPPED_SHARE = 0.5


def tile_sums(values: np.ndarray, tops: Sequence[int], lefts: Sequence[int], size: int) -> np.ndarray:
    """(rows, cols) sums of `values` (HxW) over every tile, from one integral image."""
    integral = cv2.integral(values.astype(np.float64))
    tops, lefts = np.asarray(tops)[:, None], np.asarray(lefts)[None, :]
    return (
        integral[tops + size, lefts + size]
        - integral[tops, lefts + size]
        - integral[tops + size, lefts]
        + integral[tops, lefts]
    )


def residual_energy(image: np.ndarray, tops: Sequence[int], lefts: Sequence[int], size: int) -> np.ndarray:
    """(rows, cols) standard deviation of the luma minus its 3x3 Gaussian blur, per tile, inside a
    one-pixel margin: the blur reaches across the tile's edge, where a textured neighbour would leak in."""
    luma = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    residual = luma - cv2.GaussianBlur(luma, (3, 3), 0)
    inner = size - 2
    sums = tile_sums(residual * residual, np.asarray(tops) + 1, np.asarray(lefts) + 1, inner)
    return np.sqrt(sums / (inner * inner))


def clipped_share(image: np.ndarray, tops: Sequence[int], lefts: Sequence[int], size: int) -> np.ndarray:
    """(rows, cols) share of pixels that are black (every channel <= 2) or blown (a channel >= 253)."""
    clipped = (image.max(axis=2) >= 253) | (image.max(axis=2) <= 2)
    return tile_sums(clipped, tops, lefts, size) / (size * size)


def reliability(
    image: np.ndarray, tops: Sequence[int], lefts: Sequence[int], size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(flat, clipped): two (rows, cols) boolean maps of tiles to leave out."""
    flat = residual_energy(image, tops, lefts, size) < FLAT_RESIDUAL
    clipped = clipped_share(image, tops, lefts, size) > CLIPPED_SHARE
    return flat, clipped
