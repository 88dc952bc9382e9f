"""Per-block maps of how closely a photo's 8 px JPEG blocks keep to a quantization table: the
splice lattice's evidence (block artefact grids, Ye, Sun and Chang 2007).

The table is the photo's own (camlit.data.quantization reads it), read again on the half of the
blocks that fit it best; where the photo shows none, the table a 128 px window of it shows (a
region pasted from a camera saving coarser). Each block gets lattice_fit's measure over its own
frequencies, averaged with its judged 3x3 neighbours; blocks the decoder clipped are not judged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import cv2
import numpy as np
from scipy.special import erf

from camlit.data.quantization import (
    BLOCK,
    CANDIDATES,
    FREQUENCIES,
    ROUNDING,
    block_dct,
    clipped_blocks,
    largest_fitting,
    lattice_fit,
    luma,
    steps_and_phase,
)

T = TypeVar("T")  # what a window_search reader returns as a table

# A block of a lattice map with more than this share of its pixels clipped in one channel is not
# judged: one saturated channel moves the luma's coefficients off the lattice, and a clean photo's
# half-saturated red was marked foreign. The table itself is read with every such block (a
# share of 1): there the clean blocks outvote it.
MAP_CLIPPED_SHARE = 0.1


def map_blocks(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(blocks,) bool: the blocks a lattice map judges (clipped_blocks at MAP_CLIPPED_SHARE)."""
    return ~clipped_blocks(image, dy, dx, MAP_CLIPPED_SHARE)


# A photo shows its own table when at least this many of its 27 steps show (are 2 or more).
LATTICE_STEPS = 8
# The side, in blocks, of the windows searched for a pasted region's table (128 px).
WINDOW = 16
# A block keeps to a table where its fit is above this (1: on its lattice; 0: as off any).
KEEPS = 0.5
MIN_BLOCK_COEFFICIENTS = 2  # a block with fewer coefficients off zero is not judged


def own_steps(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """steps_and_phase, the steps then read again on the half of the photo's blocks that fit them
    best (where that shows a step): a pasted region dilutes the whole photo's fit, enough that
    its lowest frequencies can read as no step at all."""
    steps, phase, _, _ = own_table(image)
    return steps, phase


def own_table(
    image: np.ndarray, read: tuple[np.ndarray, tuple[int, int]] | None = None
) -> tuple[np.ndarray, tuple[int, int], np.ndarray | None, np.ndarray | None]:
    """own_steps, and the whole photo's block_dct and unclipped blocks they were read on (None
    where the photo shows no table), for block_lattice to reuse."""
    steps, (dy, dx) = steps_and_phase(image) if read is None else read
    if (steps >= 2).sum() < LATTICE_STEPS:
        return steps, (dy, dx), None, None
    dct = block_dct(luma(image), dy, dx)
    usable = map_blocks(image, dy, dx)
    fit, judged = block_fits(dct, steps, usable)
    best = judged & (fit >= np.median(fit[judged])) if judged.any() else judged
    again = largest_fitting(np.stack([lattice_fit(dct[best, u, v], CANDIDATES) for u, v in FREQUENCIES]))
    return np.where(again >= 2, again, steps).astype(np.float32), (dy, dx), dct, usable


def block_fits(dct: np.ndarray, steps: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((blocks,) fit, (blocks,) judged) of block_dct's (blocks, 8, 8) coefficients: how closely
    each block's coefficients sit on the steps that show (2 or more), on lattice_fit's scale over
    the block's frequencies; judged where `usable` and at least MIN_BLOCK_COEFFICIENTS are off zero."""
    shown = [(f, q) for f, q in zip(FREQUENCIES, steps, strict=True) if q >= 2]
    coefficients = np.stack([dct[:, u, v] for (u, v), _ in shown], axis=1)
    q = np.array([step for _, step in shown], np.float64)
    kept = np.abs(coefficients) > np.maximum(q / 4, 0.75)
    distance = coefficients - q * np.round(coefficients / q)
    closeness = np.exp(-0.5 * (distance / ROUNDING) ** 2)
    even = ROUNDING * np.sqrt(2 * np.pi) * erf(q / (2 * np.sqrt(2) * ROUNDING)) / q
    fit = np.where(kept, closeness - even, 0).sum(axis=1) / np.maximum(np.where(kept, 1 - even, 0).sum(axis=1), 1e-9)
    return fit, (kept.sum(axis=1) >= MIN_BLOCK_COEFFICIENTS) & usable


def block_lattice(
    image: np.ndarray, read: tuple[np.ndarray, tuple[int, int]] | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """((block rows, block cols), (dy, dx)): per 8x8 block of the photo's JPEG grid (phase dy, dx),
    how closely its coefficients sit on the photo's own steps (lattice_fit's scale, over the block's
    frequencies instead of over blocks), averaged with its 3x3 neighbours; NaN where a block has
    too few coefficients off zero or was clipped (`step_fits`); the steps are `own_steps`. Where the
    photo shows no table of its own, the window that shows one (window_search) gives the steps;
    an empty map where none does. `read`: the photo's steps_and_phase, where the caller has it
    already.

    A region pasted from another camera's photo carries that camera's steps, or its grid at
    another phase, and falls off the photo's lattice (block artefact grids, Ye, Sun and Chang 2007).
    """
    steps, (dy, dx), dct, usable = own_table(image, read)
    rows, cols = (image.shape[0] - dy) // BLOCK, (image.shape[1] - dx) // BLOCK
    if dct is None:
        dct, usable = block_dct(luma(image), dy, dx), map_blocks(image, dy, dx)
        steps = window_search(rows, cols, lambda inside: window_steps(dct[inside & usable]))
        if steps is None:
            return np.zeros((0, 0), np.float32), (0, 0)
        fit, judged = block_fits(dct, steps, usable)
        return neighbour_average(as_own(fit, judged), judged, rows, cols), (dy, dx)
    fit, judged = block_fits(dct, steps, usable)
    return neighbour_average(fit, judged, rows, cols), (dy, dx)


def window_steps(coefficients: np.ndarray) -> tuple[np.ndarray, int]:
    """(steps, how many show) read on some blocks' (n, 8, 8) coefficients, as steps_and_phase reads."""
    steps = largest_fitting(np.stack([lattice_fit(coefficients[:, u, v], CANDIDATES) for u, v in FREQUENCIES]))
    return steps, int((steps >= 2).sum())


def window_search(rows: int, cols: int, read: Callable[[np.ndarray], tuple[T, int]]) -> T | None:
    """The table `read` finds in the WINDOW x WINDOW square of blocks (on a stride of half a window)
    where it shows the most steps, or None where none shows LATTICE_STEPS: a region pasted from a
    photo with another table is too small to show that table over the whole photo, but shows it
    alone. `read(inside)`: (table, steps shown) on a (rows * cols,) mask of block_dct's blocks."""
    grid = np.arange(rows * cols).reshape(rows, cols)
    best, best_count = None, LATTICE_STEPS - 1
    for top in range(0, rows - WINDOW + 1, WINDOW // 2):
        for left in range(0, cols - WINDOW + 1, WINDOW // 2):
            inside = np.zeros(rows * cols, bool)
            inside[grid[top : top + WINDOW, left : left + WINDOW].ravel()] = True
            table, count = read(inside)
            if count > best_count:
                best, best_count = table, count
    return best


def as_own(fit: np.ndarray, judged: np.ndarray) -> np.ndarray:
    """The fits to a table a window found, turned to the photo's own where fewer than half the
    judged blocks keep to it: then it is a pasted region's, and 1 - fit scores the photo's own
    blocks high, as the photo's own table does."""
    return 1 - fit if judged.any() and np.mean(fit[judged] > KEEPS) < 0.5 else fit


def neighbour_average(fit: np.ndarray, judged: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) float32: each block's fit averaged with its judged 3x3 neighbours (block_dct's
    order in), NaN where none of them is judged."""
    fit = np.where(judged, fit, 0).reshape(rows, cols).astype(np.float32)
    judged = judged.reshape(rows, cols).astype(np.float32)
    total = cv2.boxFilter(fit, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
    count = cv2.boxFilter(judged, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)
