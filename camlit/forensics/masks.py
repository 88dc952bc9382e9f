"""A splice method's scores drawn as a mask at the photo's resolution: tile scores interpolated
between tile centres, block scores per 8 px block of the JPEG grid; regions too small to be a
splice dropped, and the holes a region encloses filled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np
from scipy.ndimage import binary_fill_holes

from camlit.forensics.camera_map import CameraMap

if TYPE_CHECKING:
    from camlit.forensics.splice import SpliceResult

# Foreign regions smaller than this share of the photo are dropped as noise.
MIN_REGION = 0.02


def interpolation_weights(centres: np.ndarray, extent: int) -> np.ndarray:
    """(extent, len(centres)) linear interpolation weights from tile centres to pixel centres,
    held constant beyond the outer centres."""
    pixels = np.arange(extent) + 0.5
    return np.stack([np.interp(pixels, centres, np.eye(len(centres))[k]) for k in range(len(centres))], axis=1)


def pixel_scores(camera_map: CameraMap, tile_scores: np.ndarray) -> np.ndarray:
    """(height, width) tile scores interpolated between tile centres, from scored tiles only;
    -inf where no scored tile reaches."""
    height, width = camera_map.shape
    half = camera_map.size / 2
    rows = interpolation_weights(camera_map.tops + half, height)
    cols = interpolation_weights(camera_map.lefts + half, width)
    known = np.isfinite(tile_scores)
    total = rows @ np.where(known, tile_scores, 0) @ cols.T
    weight = rows @ known.astype(np.float64) @ cols.T
    return np.where(weight > 1e-6, total / np.maximum(weight, 1e-6), -np.inf)


def block_pixels(camera_map: CameraMap, block_scores: np.ndarray) -> np.ndarray:
    """(height, width) each pixel's 8 px block's score; -inf off the block grid and where unjudged."""
    height, width = camera_map.shape
    dy, dx = camera_map.lattice_phase
    rows, cols = (np.arange(height) - dy) // 8, (np.arange(width) - dx) // 8
    on_rows = (rows >= 0) & (rows < block_scores.shape[0])
    on_cols = (cols >= 0) & (cols < block_scores.shape[1])
    scores = np.full((height, width), -np.inf)
    scores[np.ix_(on_rows, on_cols)] = block_scores[np.ix_(rows[on_rows], cols[on_cols])]
    return np.where(np.isnan(scores), -np.inf, scores)


def foreign_mask(camera_map: CameraMap, tile_scores: np.ndarray) -> np.ndarray:
    """(height, width) bool: pixels whose interpolated score is above 0, in regions of at least
    MIN_REGION of the photo, their holes filled."""
    return solid_regions(pixel_scores(camera_map, tile_scores) > 0)


def foreign_region(camera_map: CameraMap, result: SpliceResult) -> np.ndarray:
    """The mask of a result's scores: per block for the lattice method, per tile otherwise."""
    if result.block_scores is not None:
        return solid_regions(block_pixels(camera_map, result.block_scores) > 0)
    return foreign_mask(camera_map, result.tile_scores)


def solid_regions(mask: np.ndarray) -> np.ndarray:
    """large_regions with the holes each encloses filled: a pasted region is whole, and inside it
    the lattice leaves out the blocks too flat or clipped to judge (docs/forensics_measurements.md)."""
    return binary_fill_holes(large_regions(mask))


def large_regions(mask: np.ndarray) -> np.ndarray:
    """`mask` less its regions smaller than MIN_REGION of the photo."""
    mask = mask.astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= MIN_REGION * mask.size
    keep[0] = False
    return keep[labels]
