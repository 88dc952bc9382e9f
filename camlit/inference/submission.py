"""Kaggle's submission CSV (fname,camera) and the optional per-class probability table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from camlit.atomic import csv_bytes
from camlit.cameras import UNKNOWN_CAMERA
from camlit.inference.running import Predictions

CSV_HEADER = ("fname", "camera")


def submission_rows(predictions: Predictions, unknown: np.ndarray | None = None) -> list[tuple[str, str]]:
    """(fname, camera) for every usable image, sorted by file name; `unknown` marks images to name
    UNKNOWN_CAMERA instead."""
    flags = np.zeros(len(predictions.paths), bool) if unknown is None else unknown
    rows = [
        (Path(path).name, UNKNOWN_CAMERA if flag else predictions.classes[label])
        for path, label, flag in zip(predictions.paths, predictions.labels, flags, strict=True)
        if label >= 0
    ]
    return sorted(rows)


def probability_rows(predictions: Predictions, scores: np.ndarray | None = None) -> list[tuple[str, ...]]:
    """fname and the class probabilities, and the open-set score when `scores` are given."""
    extra = [()] * len(predictions.paths) if scores is None else [(f"{score:.6g}",) for score in scores]
    rows = [
        (Path(path).name, *(f"{p:.6g}" for p in row), *more)
        for path, row, label, more in zip(
            predictions.paths, predictions.probabilities, predictions.labels, extra, strict=True
        )
        if label >= 0
    ]
    return sorted(rows)


def submission_csv(predictions: Predictions, unknown: np.ndarray | None = None) -> bytes:
    return csv_bytes([CSV_HEADER, *submission_rows(predictions, unknown)])


def probabilities_csv(predictions: Predictions, scores: np.ndarray | None = None) -> bytes:
    header = ("fname", *predictions.classes, *(() if scores is None else ("unknown_score",)))
    return csv_bytes([header, *probability_rows(predictions, scores)])
