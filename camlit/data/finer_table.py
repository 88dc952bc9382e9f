"""A recompressed photo's first step where it is finer than the last one.

A camera saving at a higher quality than the save over it (Kaggle's JPEG 90 over a camera at 93)
leaves no bin of the last table's histogram empty, so camlit.data.recompression reads no first
step there. Its multiples still reach some bins of the last table more often than others: with a
first step of 2 under a last one of 3, the multiples 0, 2, 4, 6, 8 fall into the bins 0, 1, 1, 2,
3, so every other bin holds about twice as many coefficients as its neighbours (the histogram
analysis of Lukáš and Fridrich 2003). Per frequency, the first step is the one whose pattern of
reached bins follows the histogram best, read over a smooth envelope, where it follows it well
enough. A photo saved once gives a histogram without such a pattern.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from camlit.data.quantization import requantized

# Bins (in multiples of the last step, both signs folded together) the pattern is read over.
BINS = 12
# How far a coefficient moves between the two compressions (the first decoder's rounding), in DCT
# units: less than the coarser reader's, as a last step of 3 leaves little room.
SHIFT = 0.3
# The least correlation of the pattern with the histogram over its envelope that reads as a step:
# chosen on the unknown photos of another seed (docs/forensics_measurements.md).
MIN_MODULATION = 0.4
# Too few coefficients off zero, or too few bins holding some, show no pattern.
MIN_COEFFICIENTS = 300
MIN_BIN_COUNT = 5
MIN_BINS = 5
# The last step must leave room for a finer first step that is not a divisor of it.
MIN_LAST_STEP = 3


@cache
def reached(q1: int, q2: int) -> np.ndarray:
    """(BINS,) how many multiples of q1 (moved by -SHIFT, 0 and SHIFT, a third each) fall into each
    bin 1..BINS of step q2, the two signs averaged. Read only: the array is shared between calls."""
    counts = np.zeros(2 * BINS + 1)
    for bins in requantized(q1, q2, BINS, SHIFT).T:
        kept = np.abs(bins) <= BINS
        np.add.at(counts, bins[kept] + BINS, 1 / 3)
    folded = (counts[BINS + 1 :] + counts[:BINS][::-1]) / 2
    folded.flags.writeable = False
    return folded


def finer_first_step(coefficients: np.ndarray, q2: int) -> int:
    """The first step below `q2` (not a divisor of it) that one frequency's coefficients show, 0
    where none does."""
    if q2 < MIN_LAST_STEP:
        return 0
    bins = np.abs(np.round(coefficients / q2).astype(np.int64))
    counts = np.bincount(bins[(bins > 0) & (bins <= BINS)], minlength=BINS + 1)[1:].astype(float)
    held = counts > MIN_BIN_COUNT
    if counts.sum() < MIN_COEFFICIENTS or held.sum() < MIN_BINS:
        return 0
    index = np.arange(1, BINS + 1)
    slope, intercept = np.polyfit(index[held], np.log(counts[held]), 1)
    over_envelope = counts[held] / np.exp(slope * index[held] + intercept)
    best, step = 0.0, 0
    for q1 in range(2, q2):
        pattern = reached(q1, q2)[held]
        if q2 % q1 == 0 or pattern.std() < 1e-9:
            continue  # a divisor reaches every bin alike
        fit = float(np.corrcoef(over_envelope, pattern)[0, 1])
        if fit > best:
            best, step = fit, q1
    return step if best >= MIN_MODULATION else 0
