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

import cv2
import numpy as np
from scipy.special import erf

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


def largest_fitting(fits: np.ndarray) -> np.ndarray:
    """(..., 27) float32 from (..., 27, len(CANDIDATES)) step_fits: per frequency the largest step
    whose fit passes LATTICE and NEAR_BEST of the best, 0 where none does."""
    fit = np.where(np.isnan(fits), -np.inf, fits)
    passing = fit > np.maximum(LATTICE, NEAR_BEST * np.maximum(fit.max(axis=-1), 0))[..., None]
    return np.where(passing.any(axis=-1), CANDIDATES[passing.argmax(axis=-1)], 0).astype(np.float32)


def requantized(q1: int, q2: int, bins: int, shift: float) -> np.ndarray:
    """(multiples, 3) int64: the bins of step q2 that the multiples of q1 reaching bins -bins..bins
    fall into, each moved by -shift, 0 and shift first (a first decoder's rounding); the aligned
    double quantization both first-table readers compare a histogram with."""
    multiples = np.arange(-(bins * q2 // q1) - 2, bins * q2 // q1 + 3) * q1
    return np.round((multiples[:, None] + np.array([-shift, 0.0, shift])[None]) / q2).astype(np.int64)
