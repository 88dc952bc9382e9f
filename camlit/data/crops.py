"""Crops that never resample: random crops on even offsets, the exact centre crop, tile grids.

Even offsets keep the 2x2 colour-filter-array phase of every crop the same as the photo's.
"""

from __future__ import annotations

import numpy as np

# The least crop side anything takes: inspect's tiles step half a crop on even offsets
# (camlit.forensics.camera_map.tile_stride), which takes 4 px. A run trained on smaller crops
# made a checkpoint whose crop size predict then took without a word, and inspect refused.
MIN_CROP_SIZE = 4


def check_fits(height: int, width: int, size: int) -> None:
    if height < size or width < size:
        raise ValueError(f"a {size}x{size} crop does not fit a {height}x{width} image")


def random_offset(height: int, width: int, size: int, rng: np.random.Generator, even: bool = True) -> tuple[int, int]:
    """A uniformly random top-left corner for a `size` crop, on even coordinates when `even`."""
    check_fits(height, width, size)
    step = 2 if even else 1
    top = int(rng.integers(0, (height - size) // step + 1)) * step
    left = int(rng.integers(0, (width - size) // step + 1)) * step
    return top, left


def center_offset(height: int, width: int, size: int) -> tuple[int, int]:
    """The seed notebook's centre crop, the crop's centre at (height // 2, width // 2), moved up or
    left by one pixel where that offset is odd, so that it keeps the CFA phase of training crops."""
    check_fits(height, width, size)
    return (height // 2 - size // 2) // 2 * 2, (width // 2 - size // 2) // 2 * 2


def grid_offsets(height: int, width: int, size: int, count: int, even: bool = True) -> list[tuple[int, int]]:
    """`count` crops spread over the whole image, row by row: rows from the top edge to the bottom
    as the image's shape asks (sqrt(count) on a square), each with its crops from the left edge to
    the right; a row of one crop takes the centre, as one crop does. Rows nearest the middle take
    the crops that do not divide evenly. Offsets repeat only where the image is too small to hold
    them apart."""
    check_fits(height, width, size)
    if count < 1:
        return []
    step = 2 if even else 1
    places_down, places_across = (height - size) // step + 1, (width - size) // step + 1
    rows = max(1, round(np.sqrt(count * height / width)))
    # As many rows as the crops need to keep apart across, and no more than fit apart down.
    rows = min(max(rows, -(-count // places_across)), places_down, count)
    base, extra = divmod(count, rows)
    middle_first = sorted(range(rows), key=lambda row: abs(row - (rows - 1) / 2))
    per_row = [base + (row in middle_first[:extra]) for row in range(rows)]

    def spread(extent: int, n: int) -> list[int]:
        if n == 1:
            return [(extent // 2 - size // 2) // step * step]
        return [int(start) // step * step for start in np.linspace(0, extent - size, n)]

    return [(top, left) for top, n in zip(spread(height, rows), per_row, strict=True) for left in spread(width, n)]


def tile_offsets(height: int, width: int, size: int, count: int) -> list[tuple[int, int]]:
    """Up to `count` non-overlapping tiles on even offsets, the grid centred in the frame."""
    check_fits(height, width, size)
    rows, cols = height // size, width // size
    top0 = (height - rows * size) // 2 // 2 * 2
    left0 = (width - cols * size) // 2 // 2 * 2
    tiles = [(top0 + r * size, left0 + c * size) for r in range(rows) for c in range(cols)]
    # Take tiles from the centre outwards, so a small `count` keeps the least lens-distorted ones.
    center = np.array([height / 2, width / 2])
    tiles.sort(key=lambda t: float(np.abs(np.array(t) + size / 2 - center).sum()))
    return tiles[:count]


def crop(image: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    return image[top : top + size, left : left + size]


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    return crop(image, *center_offset(image.shape[0], image.shape[1], size), size)
