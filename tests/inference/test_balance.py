import itertools
import math
import tracemalloc

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from camlit.inference.balance import balanced_assignment, balanced_labels


def brute_force_best(scores: np.ndarray) -> float:
    n, k = scores.shape
    base, extra = divmod(n, k)
    best = -math.inf
    for labels in itertools.product(range(k), repeat=n):
        counts = np.bincount(labels, minlength=k)
        if counts.min() >= base and counts.max() <= base + (extra > 0):
            best = max(best, scores[np.arange(n), list(labels)].sum())
    return best


def test_balance_on_a_skewed_case():
    """Argmax puts all 30 images in class 0; their second choices say where they belong."""
    rows = [[0.98, 0.01, 0.01]] * 10 + [[0.55, 0.44, 0.01]] * 10 + [[0.55, 0.01, 0.44]] * 10
    probabilities = np.array(rows) + np.random.default_rng(0).uniform(0, 1e-3, (30, 3))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    assert (probabilities.argmax(axis=1) == 0).all()
    labels = balanced_labels(probabilities)
    assert labels.tolist() == [0] * 10 + [1] * 10 + [2] * 10


@pytest.mark.parametrize("count", [11, 12, 13, 2])
def test_balance_counts_when_not_divisible(count):
    probabilities = np.tile([0.9, 0.05, 0.05], (count, 1))
    counts = np.bincount(balanced_labels(probabilities), minlength=3)
    assert counts.sum() == count and counts.max() - counts.min() <= 1
    assert counts.min() == count // 3


def test_balance_is_optimal_against_brute_force():
    rng = np.random.default_rng(1)
    for case in range(120):
        n, k = int(rng.integers(1, 8)), int(rng.integers(1, 4))
        scores = np.log(rng.dirichlet(np.full(k, 0.4), size=n) + 1e-9) if case % 2 else rng.normal(size=(n, k)) * 3
        if case % 5 == 0:
            scores = np.round(scores)  # ties
        labels = balanced_assignment(scores)
        counts = np.bincount(labels, minlength=k)
        assert counts.min() == n // k and counts.max() <= n // k + (n % k > 0)
        assert scores[np.arange(n), labels].sum() == pytest.approx(brute_force_best(scores), abs=1e-9)


def test_balance_leaves_no_improving_swap_on_a_larger_case():
    scores = np.log(np.random.default_rng(3).dirichlet(np.full(4, 0.5), size=61))
    labels = balanced_assignment(scores)
    own = scores[np.arange(61), labels]
    # Swapping the classes of any two images never raises the total.
    gain = scores[:, labels] + scores[:, labels].T - own[:, None] - own[None, :]
    assert gain.max() <= 1e-9


def test_balance_per_group_keeps_each_group_balanced():
    """The manipulated images all lean to camera 0 more than the unaltered ones do: one global
    assignment gives them all of camera 0's share; per group, each group splits evenly."""
    unaltered = [[0.7, 0.3], [0.65, 0.35], [0.3, 0.7], [0.35, 0.65]]
    manipulated = [[0.95, 0.05], [0.94, 0.06], [0.9, 0.1], [0.88, 0.12]]
    probabilities = np.array(unaltered + manipulated)
    truth = [0, 0, 1, 1] * 2
    assert balanced_labels(probabilities).tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    groups = ["unaltered"] * 4 + ["manipulated"] * 4
    assert balanced_labels(probabilities, groups).tolist() == truth


def slot_assignment_best(scores: np.ndarray) -> float:
    """The optimum by a linear assignment over n class slots (camlit's method before: O(n^2) memory)."""
    n, k = scores.shape
    base, extra = divmod(n, k)
    slots = np.concatenate(
        [scores[:, np.repeat(np.arange(k), base)] + 1e6, scores[:, np.arange(k) if extra else []]], 1
    )
    rows, columns = linear_sum_assignment(slots, maximize=True)
    return slots[rows, columns].sum() - 1e6 * base * k


def test_balance_is_optimal_against_a_linear_assignment_on_larger_cases():
    rng = np.random.default_rng(4)
    for case in range(60):
        n, k = int(rng.integers(10, 120)), int(rng.integers(2, 11))
        scores = np.log(rng.dirichlet(np.full(k, 0.3), size=n))
        if case % 3 == 0:
            scores[:, 0] += 3  # most images prefer one class: long chains of moves
        if case % 4 == 0:
            scores = np.round(scores)  # ties
        labels = balanced_assignment(scores)
        counts = np.bincount(labels, minlength=k)
        assert counts.min() == n // k and counts.max() <= n // k + (n % k > 0)
        assert scores[np.arange(n), labels].sum() == pytest.approx(slot_assignment_best(scores), abs=1e-6)


def test_balance_memory_grows_with_images_times_classes():
    """5,000 images x 10 classes: an n x n slot matrix alone would take 200 MB."""
    scores = np.log(np.random.default_rng(5).dirichlet(np.full(10, 0.5), size=5000))
    scores[:, 0] += 2
    tracemalloc.start()
    try:
        labels = balanced_assignment(scores)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.bincount(labels).tolist() == [500] * 10
    assert peak < 40e6, peak
