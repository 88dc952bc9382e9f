"""The JPEG-step term of `relative_stem_jpeg` (camlit.inference.openset): how far a photo's
quantization steps are from those of every training photo.

A camera's own table survives in an unaltered photo, and in a manipulated one where the
manipulation can be undone (camlit.data.undo); the model's loader reads the steps beside the crops'
features (WithFeatures(quantization=True)), as (crops, F + 28) rows (camlit.data.undo.camera_table).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from camlit.data.quantization import FREQUENCIES
from camlit.data.undo import TABLE_COLUMNS

# The JPEG-step term's weight, in spreads of the training photos' relative_stem scores: the least
# that ranked every unknown unaltered photo of another seed above the demo run's validation photos
# (docs/forensics.md); the steps alone tell them apart almost perfectly, the stem score does not.
STEP_WEIGHT = 4.0


def reads_quantization(method: str) -> bool:
    """Whether a score reads the photo's JPEG quantization steps (WithFeatures(quantization=True))."""
    return method.endswith("_jpeg")


def split_steps(features: Sequence[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Per photo, (crops, F + 28) rows (camlit.data.undo.camera_table) as its crops' (crops, F)
    features, (photos, 27) steps and (photos,) the number of the manipulation undone (0: none)."""
    tables = np.stack([rows[0, -TABLE_COLUMNS:] for rows in features])
    return [rows[:, :-TABLE_COLUMNS] for rows in features], tables[:, : len(FREQUENCIES)], tables[:, -1]


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
