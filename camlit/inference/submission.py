"""Kaggle's submission CSV (fname,camera) and the optional per-class probability table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from camlit.errors import CamlitError

if TYPE_CHECKING:
    from camlit.inference.predict import Predictions

CSV_HEADER = ("fname", "camera")


def csv_text(rows: Sequence[Sequence[str]]) -> str:
    for row in rows:
        for value in row:
            if any(c in value for c in ',"\n\r'):
                raise CamlitError(f"cannot write {value!r} to a plain CSV (comma, quote or newline in it)")
    return "".join(",".join(row) + "\n" for row in rows)


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
