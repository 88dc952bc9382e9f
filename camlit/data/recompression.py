"""A recompressed photo's first JPEG table, seen through its last one (aligned double quantization).

A photo saved by its camera (step q1 at a frequency) and saved again whole (step q2) holds
coefficients that were multiples of q1 before they were rounded to multiples of q2. Where q1 is
not a multiple of q2, some multiples of q2 can no longer be reached: their bins of the last
table's histogram stay empty (Lin, He, Tang and Tang 2009; Bianchi and Piva 2012 localise
forgeries by it). A region pasted from another camera's photo came with another first table and
fills those bins. camlit.data.lattice_map's lattice cannot see this: after a recompression every
block sits on the last table's steps alike.

Per frequency: the last step q2 (the largest the coefficients sit on nearly as well as the best
step), then the largest q1 > q2, not a multiple of it, whose reachable bins hold the histogram
better than the same histogram smoothed over neighbouring bins would; a photo saved once reads
as none. `primary_lattice` scores every 8 px block by how its coefficients keep to the reachable
bins, on lattice_fit's scale (1: all in, 0: as a photo saved once). A pasted region whose own
table is not a multiple of the last one shows such a table too, in a window of the photo even
where the whole photo shows none (a host saving finer than the last table, or not a JPEG at all);
its blocks are the ones that keep to it.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from camlit.data.finer_table import finer_first_step
from camlit.data.lattice_map import (
    LATTICE_STEPS,
    MIN_BLOCK_COEFFICIENTS,
    as_own,
    map_blocks,
    neighbour_average,
    window_search,
)
from camlit.data.quantization import (
    CANDIDATES,
    FREQUENCIES,
    LARGEST_STEP,
    LATTICE,
    MIN_COEFFICIENTS,
    NEAR_BEST,
    block_dct,
    lattice_fit,
    luma,
    requantized,
    steps_and_phase,
)

# The last table's step fits every block; a first step that is a multiple of it fits only the
# camera's blocks, less well when a region was pasted: the last step is the largest within this
# share of the best fit.
LAST_NEAR_BEST = 0.95
# Bins (in multiples of q2) the histogram is read over.
BINS = 60
# How far a coefficient moves between the two compressions (the first decoder's rounding), in DCT units.
SHIFT = 1.0
# Coefficients kept within a bin or two of zero fall off too steeply for the neighbour mean to
# stand for a photo saved once: a photo saved once at 75 then read as a first step of 16 over a
# last one of 12. The mean distance from zero, in bins, a frequency needs.
MIN_SPREAD = 2.0
# A first step whose reachable bins are nearly all of them says nothing.
MAX_EXPECTED = 0.9


@cache
def reachable(q1: int, q2: int) -> np.ndarray:
    """(2 BINS + 1,) bool over bins -BINS..BINS: reached from a multiple of q1, moved by up to
    SHIFT, then quantized by q2. Read only: the array is shared between calls."""
    bins = requantized(q1, q2, BINS, SHIFT).ravel()
    reached = np.zeros(2 * BINS + 1, bool)
    reached[bins[np.abs(bins) <= BINS] + BINS] = True
    reached[BINS] = False  # zero is reached by every table: it tells nothing
    reached.flags.writeable = False
    return reached


def last_steps(dct: np.ndarray) -> np.ndarray:
    """(27,) the last table's step of each frequency of block_dct's coefficients, 1 where none shows."""
    steps = []
    for u, v in FREQUENCIES:
        fit = np.nan_to_num(lattice_fit(dct[:, u, v], CANDIDATES), nan=-np.inf)
        passing = fit > max(LATTICE, LAST_NEAR_BEST * max(fit.max(), 0))
        steps.append(int(CANDIDATES[passing.argmax()]) if passing.any() else 1)
    return np.array(steps)


def bin_of(coefficients: np.ndarray, q2: int) -> np.ndarray:
    """Each coefficient's bin of the last table, clipped to +-(BINS + 1), where it is not counted."""
    return np.clip(np.round(coefficients / q2).astype(np.int64), -BINS - 1, BINS + 1)


def smoothed(counts: np.ndarray) -> np.ndarray:
    """The histogram as a photo saved once would give it: each bin the mean of itself and its two
    neighbours, the uncounted zero bin left out."""
    smooth = np.convolve(counts, np.ones(3) / 3, mode="same")
    smooth[BINS] = 0
    return smooth


def first_step(coefficients: np.ndarray, q2: int) -> tuple[int, float]:
    """(q1, the share of the coefficients a photo saved once would put in its reachable bins) of one
    frequency; (0, nan) where no first step shows."""
    bins = bin_of(coefficients, q2)
    counts = np.bincount(bins[(bins != 0) & (np.abs(bins) <= BINS)] + BINS, minlength=2 * BINS + 1).astype(float)
    spread = (np.abs(np.arange(-BINS, BINS + 1)) * counts).sum()
    if counts.sum() < MIN_COEFFICIENTS or spread < MIN_SPREAD * counts.sum():
        return 0, float("nan")
    smooth = smoothed(counts)
    found: list[tuple[float, int, float]] = []
    for q1 in (q for q in range(q2 + 1, LARGEST_STEP + 1) if q % q2):
        inside = reachable(q1, q2)
        expected = float(smooth[inside].sum() / smooth.sum())
        if expected <= MAX_EXPECTED:
            found.append(((counts[inside].sum() / counts.sum() - expected) / (1 - expected), q1, expected))
    best = max((fit for fit, _, _ in found), default=-np.inf)
    if best <= LATTICE:
        return 0, float("nan")
    # As for a single table: every divisor-like step fits too, the largest that fits is the step.
    _, q1, expected = [entry for entry in found if entry[0] > max(LATTICE, NEAR_BEST * best)][-1]
    return q1, expected


def first_table(dct: np.ndarray, last: np.ndarray) -> list[tuple[int, int, float]]:
    """Per frequency (q1, q2, expected share); q1 is 0 where no first step shows."""
    table = []
    for (u, v), q2 in zip(FREQUENCIES, last, strict=True):
        q1, expected = first_step(dct[:, u, v], int(q2))
        table.append((q1, int(q2), expected))
    return table


def block_first_fits(dct: np.ndarray, table: list[tuple[int, int, float]], usable: np.ndarray):
    """((blocks,) fit, (blocks,) judged): how each block's coefficients keep to the first table's
    reachable bins, 1 all in, 0 as a photo saved once; judged where `usable` and at least
    MIN_BLOCK_COEFFICIENTS of the first-step frequencies are off zero."""
    hits = np.zeros(len(dct))
    weight = np.zeros(len(dct))
    kept_count = np.zeros(len(dct))
    for (u, v), (q1, q2, expected) in zip(FREQUENCIES, table, strict=True):
        if q1 < 2:
            continue
        bins = bin_of(dct[:, u, v], q2)
        kept = (bins != 0) & (np.abs(bins) <= BINS)
        inside = reachable(q1, q2)[np.clip(bins, -BINS, BINS) + BINS]
        hits += np.where(kept, inside - expected, 0)
        weight += np.where(kept, 1 - expected, 0)
        kept_count += kept
    return hits / np.maximum(weight, 1e-9), (kept_count >= MIN_BLOCK_COEFFICIENTS) & usable


def shown(table: list[tuple[int, int, float]]) -> int:
    """How many frequencies of a first table show a first step."""
    return sum(q1 >= 2 for q1, _, _ in table)


def window_table(dct: np.ndarray, last: np.ndarray) -> tuple[list[tuple[int, int, float]], int]:
    """(first_table, how many first steps show) of some blocks, for window_search."""
    table = first_table(dct, last)
    return table, shown(table)


def first_steps(image: np.ndarray, phase: tuple[int, int] | None = None) -> np.ndarray:
    """(27,) the first table's step at each frequency of a photo saved again whole, 0 where none
    shows (a photo saved once): coarser than the last step where bins stay empty, else finer where
    the histogram follows a finer step's pattern (camlit.data.finer_table). `phase`: the grid's,
    where the caller has it already."""
    dy, dx = steps_and_phase(image)[1] if phase is None else phase
    dct = block_dct(luma(image), dy, dx)
    usable = dct[map_blocks(image, dy, dx)]
    table = first_table(usable, last_steps(usable))
    return np.array(
        [q1 or finer_first_step(usable[:, u, v], q2) for (u, v), (q1, q2, _) in zip(FREQUENCIES, table, strict=True)]
    )


def primary_lattice(image: np.ndarray, phase: tuple[int, int] | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """((block rows, block cols), (dy, dx)): per 8x8 block of the photo's last JPEG grid,
    block_first_fits averaged with its 3x3 neighbours, NaN where unjudged; an empty map where no
    first table shows LATTICE_STEPS frequencies. The first table is read again on the half of
    the blocks that keep to it best, as camlit.data.lattice_map.own_table does: a pasted region
    dilutes the whole photo's histogram. Where the whole photo shows none, the window that shows
    the most gives the table (camlit.data.lattice_map.window_search), its fits turned to the
    photo's own where it is a pasted region's (as_own). `phase`: the grid's, where the caller has
    it already."""
    dy, dx = steps_and_phase(image)[1] if phase is None else phase
    dct = block_dct(luma(image), dy, dx)
    usable = map_blocks(image, dy, dx)
    rows, cols = (image.shape[0] - dy) // 8, (image.shape[1] - dx) // 8
    last = last_steps(dct[usable])
    table = first_table(dct[usable], last)
    if shown(table) < LATTICE_STEPS:
        table = window_search(rows, cols, lambda inside: window_table(dct[inside & usable], last))
        if table is None:
            return np.zeros((0, 0), np.float32), (dy, dx)
        fit, judged = block_first_fits(dct, table, usable)
        return neighbour_average(as_own(fit, judged), judged, rows, cols), (dy, dx)
    fit, judged = block_first_fits(dct, table, usable)
    again = first_table(dct[judged & (fit >= np.median(fit[judged]))], last)
    table = [second if second[0] >= 2 else first for first, second in zip(table, again, strict=True)]
    fit, judged = block_first_fits(dct, table, usable)
    return neighbour_average(fit, judged, rows, cols), (dy, dx)
