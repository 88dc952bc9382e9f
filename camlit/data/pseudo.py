"""Pseudo-labels: the most confident test predictions, added to training with their predicted camera.

The 2nd and 4th places of Kaggle's competition trained again on their confident test predictions,
choosing them separately for unaltered and manipulated images. The rule here:

- read predict.py's `--probs` CSV (`fname,<class>,...`, one row per test image);
- split the images into groups by name: `_unalt`, `_manip`, and names that say neither;
- in each group of n images and for each of the k classes, take the images predicted as that class
  (highest probability), most confident first, up to `share * n / k` of them (rounded down). Kaggle's
  test set is balanced, so a class's fair share of a group is n / k; `share` is how much of it to trust.

A `_manip` image is trained on as a manipulation of unknown kind (never manipulated again, flagged
manipulated); the others as unaltered photos.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from camlit.csvio import encoding_hint, printable, read_csv_rows
from camlit.data.manipulations import UNALTERED
from camlit.data.samples import Sample, manipulated_from_name
from camlit.errors import CamlitError, not_a_folder

OPTION = "--data.pseudo_labels"
# The manipulation of a `_manip` test image: not one of camlit.data.manipulations' names, so its kind is unknown.
UNKNOWN_MANIPULATION = "manipulated"


def read_probabilities(path: str | os.PathLike, classes: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """File names and their (images, classes) probabilities, columns in `classes` order."""
    path = Path(path)
    rows = read_csv_rows(path, OPTION)
    header = [value.strip() for value in rows[0]] if rows else []
    missing = [name for name in classes if name not in header[1:]]
    if not header or header[0] != "fname" or missing:
        raise CamlitError(
            f"{OPTION} {path}: expected predict.py's --probs header fname,{','.join(classes)}"
            + (f"; class {missing[0]} has no column" if header[:1] == ["fname"] and missing else "")
        )
    columns = [header.index(name) for name in classes]
    names, probabilities = [], []
    for number, row in enumerate(rows[1:], start=2):
        try:
            values = [float(row[column]) for column in columns]
        except (IndexError, ValueError):
            raise CamlitError(f"{OPTION} {path}: line {number} is not a file name and {len(classes)} numbers") from None
        if not all(map(math.isfinite, values)):
            raise CamlitError(f"{OPTION} {path}: line {number} has a probability that is not a number")
        names.append(row[0])  # a file name keeps its spaces, as predict wrote it
        probabilities.append(values)
    if not names:
        raise CamlitError(f"{OPTION} {path}: no rows")
    return names, np.asarray(probabilities, dtype=np.float64).reshape(len(names), len(classes))


def choose(names: Sequence[str], probabilities: np.ndarray, share: float) -> list[tuple[str, int]]:
    """(name, predicted label) of the chosen images, by the rule in the module's docstring."""
    groups: dict[bool | None, list[int]] = defaultdict(list)
    for index, name in enumerate(names):
        groups[manipulated_from_name(name)].append(index)
    predicted = probabilities.argmax(axis=1)
    chosen = []
    for members in groups.values():
        quota = int(share * len(members) / probabilities.shape[1])
        for label in range(probabilities.shape[1]):
            candidates = [index for index in members if predicted[index] == label]
            candidates.sort(key=lambda index: (-probabilities[index, label], names[index]))
            chosen.extend((names[index], label) for index in candidates[:quota])
    return sorted(chosen)


def pseudo_label_samples(
    csv_path: str | os.PathLike, folder: str | os.PathLike | None, classes: Sequence[str], share: float
) -> list[Sample]:
    """The chosen test images of `folder` as training samples."""
    if folder is None:
        raise CamlitError(f"{OPTION} needs --data.pseudo_labels_dir, the folder of the test images it names")
    folder = Path(folder)
    if not folder.is_dir():
        raise CamlitError(f"--data.pseudo_labels_dir {folder}: {not_a_folder(folder)}")
    names, probabilities = read_probabilities(csv_path, classes)
    absent = [name for name in names if not (folder / name).is_file()]
    if absent:
        raise CamlitError(
            f"{OPTION} {csv_path}: {printable(absent[0])} is not in --data.pseudo_labels_dir {folder}"
            + encoding_hint(absent)
        )
    return [
        Sample(
            str(folder / name),
            label,
            UNKNOWN_MANIPULATION if manipulated_from_name(name) else UNALTERED,
            f"pseudo/{name}",
        )
        for name, label in choose(names, probabilities, share)
    ]
