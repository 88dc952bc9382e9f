"""Kaggle's submission CSV (fname,camera) and the optional per-class probability table."""

from __future__ import annotations

import os
from pathlib import Path

from camlit.atomic import write_csv_atomic
from camlit.inference.running import Predictions

CSV_HEADER = ("fname", "camera")


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


def write_submission(path: str | os.PathLike, predictions: Predictions) -> None:
    write_csv_atomic(path, [CSV_HEADER, *submission_rows(predictions)])


def write_probabilities(path: str | os.PathLike, predictions: Predictions) -> None:
    write_csv_atomic(path, [("fname", *predictions.classes), *probability_rows(predictions)])
