"""The JPEG-step term of `relative_stem_jpeg` (camlit.inference.openset): how far a photo's
quantization steps are from those of every training photo.

A camera's own table survives in an unaltered photo, and in a manipulated one where the
manipulation can be undone (camlit.data.undo). A photo saved again whole keeps its camera's table
as its first one (camlit.data.recompression), read with a rounding of its own: it is compared with
the run's training photos saved again the same way and read by the same reader. The model's
loader reads both beside the crops' features (WithFeatures(quantization=True)), as (crops, F + 55)
rows (camlit.data.undo.camera_table).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from camlit.data.quantization import FREQUENCIES
from camlit.data.undo import TABLE_COLUMNS

# The JPEG-step term's weight, in spreads of the training photos' relative_stem scores: the least
# that ranked every unknown unaltered photo of another seed above the demo run's validation photos
# (docs/forensics_measurements.md); the steps alone tell them apart almost perfectly, the stem score does not.
STEP_WEIGHT = 4.0
# A first table showing fewer steps is not compared: one or two steps say little of a table.
MIN_FIRST_STEPS = 3
# Kaggle's recompressions, under which the training photos' first tables are read for the bank.
RECOMPRESSIONS = ("jpeg70", "jpeg90")
# The first-table reader a bank was read with (camlit.data.recompression.first_steps); 2 also reads
# a first step finer than the last. A photo is compared only with a bank its own reader made: the
# older bank lacks the finer steps, and every photo showing one would differ from it.
FIRST_READER = 2


def reads_quantization(method: str) -> bool:
    """Whether a score reads the photo's JPEG quantization steps (WithFeatures(quantization=True))."""
    return method.endswith("_jpeg")


def split_steps(
    features: Sequence[np.ndarray],
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Per photo, (crops, F + 55) rows (camlit.data.undo.camera_table) as its crops' (crops, F)
    features, (photos, 27) steps, (photos, 27) first steps of a photo saved again whole (0 where
    none shows) and (photos,) the number of the manipulation undone (0: none)."""
    tables = np.stack([rows[0, -TABLE_COLUMNS:] for rows in features])
    count = len(FREQUENCIES)
    crops = [rows[:, :-TABLE_COLUMNS] for rows in features]
    return crops, tables[:, :count], tables[:, count : 2 * count], tables[:, -1]


def first_mismatch(first: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """(photos,) the share of the first steps a photo shows that differ from the nearest of the
    bank's first tables (the run's training photos saved again, read the same way); 0 where it
    shows fewer than MIN_FIRST_STEPS, or the bank is empty."""
    shows = (first >= 2).sum(axis=1) >= MIN_FIRST_STEPS
    if not len(bank):
        return np.zeros(len(first))
    return np.where(shows, step_mismatch(first, bank, np.ones(len(first), bool)), 0.0)


def step_mismatch(
    steps: np.ndarray, bank: np.ndarray, shown_only: np.ndarray | None = None, chunk: int = 256
) -> np.ndarray:
    """(photos,) the share of quantization steps differing from the nearest of the bank's tables,
    `chunk` photos at a time (a bank of thousands of tables). Where `shown_only` (photos,) is set,
    the share of the steps the photo shows (2 or more): an undone photo has fewer blocks, and a
    step it does not show is no evidence (0 where it shows none)."""
    shown_only = np.zeros(len(steps), bool) if shown_only is None else np.asarray(shown_only, bool)
    counted = np.where(shown_only[:, None], steps >= 2, True)
    parts = range(chunk, len(steps), chunk)
    return np.concatenate(
        [
            ((part[:, None, :] != bank[None]) & judged[:, None, :]).sum(axis=2).min(axis=1)
            / np.maximum(judged.sum(axis=1), 1)
            for part, judged in zip(np.split(steps, parts), np.split(counted, parts), strict=True)
        ]
        or [np.zeros(0)]
    )
