import itertools
import math

import numpy as np
import pytest

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
