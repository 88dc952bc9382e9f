"""Balanced assignment: labels for a set of images with every class getting an equal share."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment


def balanced_assignment(log_probabilities: np.ndarray) -> np.ndarray:
    """Labels maximising the total log-probability with every class getting an equal share.

    With n images and K classes every class receives n // K or n // K + 1 images (exactly n / K
    when K divides n), and which classes get the extra one is part of the optimisation.

    A linear assignment of images to class slots: n // K slots per class that must all be filled,
    plus one optional slot per class for the n % K images left over. "Must" is a bonus on the
    required slots larger than any difference in total score, so every optimum fills them first.
    """
    scores = np.asarray(log_probabilities, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"expected an (images, classes) matrix, got shape {scores.shape}")
    n, classes = scores.shape
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.all(np.isfinite(scores)):
        raise ValueError("balanced_assignment needs finite log-probabilities; clamp zeros first")
    base, extra = divmod(n, classes)
    slot_class = np.repeat(np.arange(classes), base)
    slot_scores = scores[:, slot_class]
    if extra:
        bonus = 1.0 + n * float(np.ptp(scores))
        slot_class = np.concatenate([slot_class, np.arange(classes)])
        slot_scores = np.concatenate([slot_scores + bonus, scores], axis=1)
    images, slots = linear_sum_assignment(slot_scores, maximize=True)
    labels = np.empty(n, dtype=np.int64)
    labels[images] = slot_class[slots]
    return labels


def balanced_labels(probabilities: np.ndarray, groups: Sequence[object] | None = None) -> np.ndarray:
    """balanced_assignment on probabilities (zeros clamped to the smallest positive double),
    separately within each group when `groups` (one per image) is given: Kaggle's test set is
    balanced within its unaltered and within its manipulated images, and a global assignment lets
    the less certain manipulated images take the unaltered images' labels."""
    scores = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), np.finfo(np.float64).tiny, None))
    if groups is None:
        return balanced_assignment(scores)
    groups = np.asarray(list(groups), dtype=object)
    labels = np.empty(len(scores), dtype=np.int64)
    for group in dict.fromkeys(groups.tolist()):
        members = np.flatnonzero(groups == group)
        labels[members] = balanced_assignment(scores[members])
    return labels
