"""The JPEG quantization steps of a decoded photo: a trace of the camera's own compression.

A camera compresses with its own quantization table, so the 8x8 block DCT coefficients of a photo
it saved sit near multiples of that table's steps, even after decoding to pixels (the camera
ballistics of Farid 2006; Kee, Johnson and Farid 2011 identify camera models by the table). A
photo whose table none of the training cameras used is a photo of another camera, as long as its
last compression is the camera's own: an unaltered photo. A manipulation (a recompression, a
resize, a gamma) replaces the table or bends the coefficients off it; camlit.data.undo
undoes a gamma or an upscale first, and camlit.inference.openset reads no table of a photo known
to be manipulated where nothing was undone.

The estimate: the luma's block DCT on the JPEG grid (the phase, 0..7 each way, found as the one
whose coefficients fall closest to a lattice), then for each of the 27 lowest AC frequencies the
largest step q whose lattice the coefficients follow (`lattice_fit`): the steps that divide the
camera's fit as well as it does, larger ones worse. 0 where no step shows: a step of 1 (a high
quality), too few nonzero coefficients, or no JPEG at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import cv2
import numpy as np
from scipy.special import erf

T = TypeVar("T")  # what a window_search reader returns as a table

BLOCK = 8
# Zig-zag order, as JPEG lists its table; the first 27 AC frequencies, where photos have enough
# nonzero coefficients to show a step.
ZIGZAG = sorted(
    ((u, v) for u in range(BLOCK) for v in range(BLOCK)),
    key=lambda f: (f[0] + f[1], f[0] if (f[0] + f[1]) % 2 else f[1]),
)
FREQUENCIES = ZIGZAG[1:28]
LARGEST_STEP = 40
LATTICE = 0.3  # lattice_fit above which the coefficients follow step q (no lattice: about 0 +- 0.05)
# ... and at least this share of the best step's fit: every multiple of a step q fits as well as q
# does, but twice q fits at most about half as well (only the even multiples of q are on it).
NEAR_BEST = 0.7
# The spread of a decoded coefficient about its multiple of the step, in DCT units: the decoder's
# rounding of Y and of R, G, B (about 0.35) with room.
ROUNDING = 0.5
MIN_COEFFICIENTS = 100  # fewer coefficients off zero, and a lattice shows by chance
SIDE = 512  # the centre of a larger photo is enough: 4,096 blocks
PHASE_FREQUENCIES = FREQUENCIES[:3]
PHASE_STEPS = np.arange(2, 12)
# Fewer blocks than this (a 360 px photo), and a quarter of them can miss the grid: on undone x2
# upscales of 384 px test crops (190 px, 550 blocks) a quarter found the wrong phase in 14 of the
# 19 photos where all blocks found the right one.
PHASE_BLOCKS = 2025
CANDIDATES = np.arange(LARGEST_STEP, 1, -1)  # largest first: the first that fits is the step


def dct_basis() -> np.ndarray:
    """(8, 8) orthonormal DCT-II matrix, as JPEG's forward transform uses."""
    k = np.arange(BLOCK)
    basis = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * BLOCK)) * np.sqrt(2 / BLOCK)
    basis[0] /= np.sqrt(2)
    return basis


BASIS = dct_basis()


def luma(image: np.ndarray) -> np.ndarray:
    """JPEG's full-range luma of an RGB uint8 image, as float, less 128 as the encoder shifts it."""
    rgb = image.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2] - 128


def centre(image: np.ndarray, side: int = SIDE) -> np.ndarray:
    """The centre `side` x `side` (at most) of the image, its corner on the photo's 8 px grid."""
    height, width = image.shape[:2]
    top = max(0, (height - side) // 2) // BLOCK * BLOCK
    left = max(0, (width - side) // 2) // BLOCK * BLOCK
    return image[top : top + side, left : left + side]


def block_dct(y: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(blocks, 8, 8) DCT coefficients of the whole 8x8 blocks on the grid of phase (dy, dx)."""
    height, width = (y.shape[0] - dy) // BLOCK * BLOCK, (y.shape[1] - dx) // BLOCK * BLOCK
    blocks = y[dy : dy + height, dx : dx + width].reshape(height // BLOCK, BLOCK, width // BLOCK, BLOCK)
    return BASIS @ blocks.transpose(0, 2, 1, 3).reshape(-1, BLOCK, BLOCK) @ BASIS.T


def frequency_responses(y: np.ndarray) -> np.ndarray:
    """(3, H - 7, W - 7): each of PHASE_FREQUENCIES' DCT coefficient of the 8x8 block whose corner
    is at every pixel, so every grid phase is a strided slice."""
    height, width = y.shape
    image = y.astype(np.float32)
    responses = []
    for u, v in PHASE_FREQUENCIES:
        kernel = np.outer(BASIS[u], BASIS[v]).astype(np.float32)
        full = cv2.filter2D(image, cv2.CV_32F, kernel, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
        responses.append(full[: height - BLOCK + 1, : width - BLOCK + 1])
    return np.stack(responses)


def lattice_fit(coefficients: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """(len(steps),) how closely the coefficients that step q keeps off zero (|c| > q / 4) sit on
    multiples of q: the mean of exp(-r^2 / 2 s^2) over their distances r to the nearest multiple,
    rescaled so that 0 is what coefficients spread evenly would give and 1 a perfect lattice; NaN
    where fewer than MIN_COEFFICIENTS are kept. Absolute distances tell a step of 10 from one of 11
    where most coefficients are +-10 (mean cos(2 pi c / q) would not)."""
    steps = np.asarray(steps, np.float64)
    kept = np.abs(coefficients)[:, None] > np.maximum(steps / 4, 0.75)[None]
    counts = kept.sum(axis=0)
    distance = coefficients[:, None] - steps[None] * np.round(coefficients[:, None] / steps[None])
    closeness = np.where(kept, np.exp(-0.5 * (distance / ROUNDING) ** 2), 0).sum(axis=0) / np.maximum(counts, 1)
    even = ROUNDING * np.sqrt(2 * np.pi) * erf(steps / (2 * np.sqrt(2) * ROUNDING)) / steps
    return np.where(counts >= MIN_COEFFICIENTS, (closeness - even) / (1 - even), np.nan)


def grid_phase(responses: np.ndarray) -> tuple[int, int]:
    """The (row, column) phase of the JPEG grid: the one whose low-frequency coefficients follow a
    lattice best, judged on every other block each way (a quarter of the work) where the photo has
    PHASE_BLOCKS blocks or more, on all of them where it has fewer; (0, 0) wins ties."""
    stride = 2 * BLOCK if responses[0].size >= PHASE_BLOCKS * BLOCK * BLOCK else BLOCK
    best, phase = -np.inf, (0, 0)
    for dy in range(BLOCK):
        for dx in range(BLOCK):
            fits = [lattice_fit(r[dy::stride, dx::stride].ravel(), PHASE_STEPS) for r in responses]
            strength = np.mean([np.nanmax(np.append(f, -1.0)) for f in fits])
            if strength > best:
                best, phase = strength, (dy, dx)
    return phase


def quantization_steps(image: np.ndarray) -> np.ndarray:
    """(27,) float32: the estimated luma quantization step of each of FREQUENCIES, 0 where none shows."""
    return steps_and_phase(image)[0]


def steps_and_phase(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """quantization_steps, and the (row, column) phase of the JPEG grid they were read on."""
    fits, phase = step_fits(image)
    return largest_fitting(fits), phase


def step_fits(image: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """((27, len(CANDIDATES)) lattice_fit of each frequency's coefficients to each candidate step,
    NaN where it cannot be judged; the (row, column) phase of the JPEG grid).

    Blocks where the decoder clipped (a pixel with two or more channels at 0 or 255) are left out:
    clipping moves their coefficients off the lattice, and a dark photo's clipped blocks made a
    known camera's low frequencies read as no step at all."""
    image = centre(image)
    y = luma(image)
    if min(y.shape) < 4 * BLOCK:
        return np.full((len(FREQUENCIES), len(CANDIDATES)), np.nan), (0, 0)
    dy, dx = grid_phase(frequency_responses(y))
    coefficients = block_dct(y, dy, dx)[~clipped_blocks(image, dy, dx)]
    return np.stack([lattice_fit(coefficients[:, u, v], CANDIDATES) for u, v in FREQUENCIES]), (dy, dx)


def clipped_blocks(image: np.ndarray, dy: int, dx: int, share: float = 1.0) -> np.ndarray:
    """(blocks,) in block_dct's order: whether the block holds a pixel with two or more channels at
    0 or 255, or more than `share` of its pixels with one (1: never by that rule)."""
    height, width = (image.shape[0] - dy) // BLOCK * BLOCK, (image.shape[1] - dx) // BLOCK * BLOCK
    window = image[dy : dy + height, dx : dx + width]
    channels = ((window == 0) | (window == 255)).sum(axis=-1).reshape(height // BLOCK, BLOCK, width // BLOCK, BLOCK)
    return ((channels >= 2).any(axis=(1, 3)) | ((channels >= 1).mean(axis=(1, 3)) > share)).ravel()


# A block of a lattice map with more than this share of its pixels clipped in one channel is not
# judged: one saturated channel moves the luma's coefficients off the lattice, and a clean photo's
# half-saturated red was marked foreign. The table itself is read with every such block (a
# share of 1): there the clean blocks outvote it.
MAP_CLIPPED_SHARE = 0.1


def map_blocks(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """(blocks,) bool: the blocks a lattice map judges (clipped_blocks at MAP_CLIPPED_SHARE)."""
    return ~clipped_blocks(image, dy, dx, MAP_CLIPPED_SHARE)


def largest_fitting(fits: np.ndarray) -> np.ndarray:
    """(..., 27) float32 from (..., 27, len(CANDIDATES)) step_fits: per frequency the largest step
    whose fit passes LATTICE and NEAR_BEST of the best, 0 where none does."""
    fit = np.where(np.isnan(fits), -np.inf, fits)
    passing = fit > np.maximum(LATTICE, NEAR_BEST * np.maximum(fit.max(axis=-1), 0))[..., None]
    return np.where(passing.any(axis=-1), CANDIDATES[passing.argmax(axis=-1)], 0).astype(np.float32)


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
