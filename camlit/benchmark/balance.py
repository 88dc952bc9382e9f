"""The benchmark's --balance section: the balanced assignment on N and on 10N images of 10 classes.

Scores are log-probabilities of the kind a trained model gives (Dirichlet), in two shapes: spread
evenly over the classes, and skewed, with most images preferring one class, so that many must be
moved along chains of classes. A near-linear method keeps its rate at 10N; the linear assignment
over n class slots it replaced needs n^2 memory and about n^3 time.
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np

from camlit.inference.balance import balanced_assignment

CLASSES = 10


def scores(images: int, skewed: bool, seed: int = 0) -> np.ndarray:
    log_probabilities = np.log(np.random.default_rng(seed).dirichlet(np.full(CLASSES, 0.5), size=images))
    if skewed:
        log_probabilities[:, 0] += 2.0  # class 0 is the best class of about three images in four
    return log_probabilities


def balance_section(images: int, figures: dict, notes: dict) -> None:
    """Images per second of balanced_assignment at N and 10N images, and its peak memory in a
    second run (tracing slows every allocation, so it is not timed)."""
    for shape in ("even", "skewed"):
        for scale, count in (("n", images), ("10n", 10 * images)):
            matrix = scores(count, shape == "skewed")
            start = time.perf_counter()
            balanced_assignment(matrix)
            figures[f"balance/{shape}_{scale}"] = count / (time.perf_counter() - start)
            tracemalloc.start()
            balanced_assignment(matrix)
            figures[f"balance/{shape}_{scale}_peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
            tracemalloc.stop()
    notes["balance"] = f"N = {images:,} images, 10N = {10 * images:,}, {CLASSES} classes; peak traced by tracemalloc"
