"""Fitting an open-set score (camlit.inference.openset) on the training photos' features: a
camera's mean and the spread about it in the leading principal components, a bank of photos
for k-NN, the JPEG tables the training cameras save with.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from camlit.data.quantization import FREQUENCIES
from camlit.errors import CamlitError
from camlit.inference.openset import SCORES, OpenSetModel, normalised, photo_features
from camlit.inference.openset_steps import FIRST_READER, MIN_FIRST_STEPS, STEP_WEIGHT, reads_quantization, split_steps

# Principal components the Mahalanobis scores keep.
COMPONENTS = 32


def fit(
    method: str,
    features: Sequence[np.ndarray],
    labels: Sequence[int],
    num_classes: int,
    first_tables: np.ndarray | None = None,
) -> OpenSetModel:
    """An OpenSetModel of `method` from the training photos' (crops, F) features and their labels;
    `first_tables` (photos, 27): the first tables of the training photos saved again
    (recompressed_first_tables), for the scores reading JPEG steps."""
    if method not in SCORES:
        raise CamlitError(f"--score {method}: choose from {', '.join(SCORES)}")
    if method in ("msp", "energy"):
        return OpenSetModel(method)
    if reads_quantization(method):
        features, steps, _, _ = split_steps(features)
        fitted = fit(method.removesuffix("_jpeg"), features, labels, num_classes)
        low, high = np.quantile(fitted.distance_scores(features), [0.01, 0.99])
        # One row per table: a camera saving with one table gives hundreds of the same row.
        fitted.arrays.update(steps=np.unique(steps, axis=0), step_weight=np.array(STEP_WEIGHT * (high - low)))
        if first_tables is not None:
            tables = np.asarray(first_tables).reshape(-1, len(FREQUENCIES))
            shown = (tables >= 2).sum(axis=1) >= MIN_FIRST_STEPS
            fitted.arrays["first_steps"] = np.unique(tables[shown], axis=0).reshape(-1, len(FREQUENCIES))
            fitted.arrays["first_reader"] = np.array(FIRST_READER)
        return OpenSetModel(method, arrays=fitted.arrays)
    means = np.stack([photo_features(rows) for rows in features]).astype(np.float64)
    labels = np.asarray(labels)
    if method == "knn":
        return OpenSetModel(method, arrays={"bank": normalised(means)})
    centre = means.mean(axis=0)
    # Principal components first: a few hundred photos cannot estimate a 2048-d covariance.
    _, _, vt = np.linalg.svd(means - centre, full_matrices=False)
    components = vt[: min(COMPONENTS, len(vt))].T
    projected = (means - centre) @ components
    class_means = np.stack([projected[labels == k].mean(axis=0) for k in range(num_classes)])
    residuals = projected - class_means[labels]
    covariance = residuals.T @ residuals / max(1, len(projected) - num_classes)
    arrays = {"centre": centre, "components": components, "class_means": class_means, "precision": inverse(covariance)}
    if method.startswith("relative"):
        arrays["global_precision"] = inverse(projected.T @ projected / max(1, len(projected) - 1))
    return OpenSetModel(method, arrays=arrays)


def inverse(covariance: np.ndarray) -> np.ndarray:
    """The precision of a covariance, a little ridge keeping it finite when a direction is flat."""
    ridge = 1e-6 * np.trace(covariance) / len(covariance) * np.eye(len(covariance))
    return np.linalg.inv(covariance + ridge)
