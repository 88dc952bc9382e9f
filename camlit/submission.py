"""Kaggle's submission CSV (fname,camera) and the optional per-class probability table."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from camlit.predict import Predictions

CSV_HEADER = ("fname", "camera")


def csv_text(rows: Sequence[Sequence[str]]) -> str:
    """Rows as CSV; a value holding a comma, quote or newline is quoted, which Kaggle's reader accepts."""
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue()


def submission_rows(predictions: Predictions) -> list[tuple[str, str]]:
    """(fname, camera) for every usable image, sorted by file name."""
    rows = [
        (Path(path).name, predictions.classes[label])
        for path, label in zip(predictions.paths, predictions.labels, strict=True)
        if label >= 0
    ]
    return sorted(rows)


def probability_rows(predictions: Predictions) -> list[tuple[str, ...]]:
    rows = [
        (Path(path).name, *(f"{p:.6g}" for p in row))
        for path, row, label in zip(predictions.paths, predictions.probabilities, predictions.labels, strict=True)
        if label >= 0
    ]
    return sorted(rows)
