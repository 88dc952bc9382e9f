"""Balanced assignment: labels for a set of images with every class getting an equal share.

A transportation problem with K classes, solved exactly as a min-cost flow whose residual graph is
contracted to the K class nodes: O(n K) memory and O(n K (K^2 + log n)) time at worst, where a
linear assignment over n class slots takes O(n^2) memory and O(n^3) time (camlit.benchmark.balance
measures both shapes of input at N and 10N images).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

INF = float("inf")


def balanced_assignment(log_probabilities: np.ndarray) -> np.ndarray:
    """Labels maximising the total log-probability with every class getting an equal share.

    With n images and K classes every class receives n // K or n // K + 1 images (exactly n / K
    when K divides n), and which classes get the extra one is part of the optimisation.

    Images are inserted one at a time along a shortest augmenting path (successive shortest
    paths), which keeps the assignment of the images inserted so far optimal. A path runs from
    the new image to a class, possibly on through classes, each step moving one image to another
    class, and ends in a free place: each class has n // K required places, which carry a bonus
    larger than any difference in total score, so every optimum fills them first, and one
    optional place when K does not divide n. The cheapest move of an image between two classes
    comes from a heap per pair of classes. Most images go straight to their best class: those
    are placed at once, up to n // K per class, the most decided first.
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
    bonus = 1.0 + n * float(np.ptp(scores))

    def place_cost(count: int) -> float:
        """The cost of the next free place in a class holding `count` images."""
        return -bonus if count < base else 0.0 if count == base and extra else INF

    cost = -scores
    labels, counts = direct_places(scores, base)
    moves, heaps = cheapest_moves(cost, labels, classes)
    places = np.array([place_cost(count) for count in counts])
    rows, labels, counts = cost.tolist(), labels.tolist(), counts.tolist()
    for image in [i for i, label in enumerate(labels) if label < 0]:
        distance, step = distances_to_a_place(moves, places)
        path = [int(np.argmin(cost[image] + distance))]
        while step[path[-1]] >= 0:
            path.append(int(step[path[-1]]))
        moved = [(image, path[0])]
        for source, target in zip(path, path[1:], strict=False):
            heap = heaps[source][target]
            while labels[heap[0][1]] != source:  # entries of images that have moved since are stale
                heapq.heappop(heap)
            moved.append((heapq.heappop(heap)[1], target))
        for member, label in moved:
            labels[member] = label
        counts[path[-1]] += 1
        places[path[-1]] = place_cost(counts[path[-1]])
        for source in path[:-1]:  # each lost the image on top of one of its heaps
            for target, heap in enumerate(heaps[source]):
                while heap and labels[heap[0][1]] != source:
                    heapq.heappop(heap)
                moves[source, target] = heap[0][0] if heap else INF
        for member, label in moved:
            add_moves(rows[member], member, label, moves, heaps)
    return np.array(labels, dtype=np.int64)


def direct_places(scores: np.ndarray, base: int) -> tuple[np.ndarray, np.ndarray]:
    """Up to `base` images per class at their best class, the most decided first (-1: not placed),
    and the count per class. With every image at its best class and every class below `base`,
    each of these is where the shortest path would have put it."""
    n, classes = scores.shape
    best = scores.argmax(axis=1)
    ranked = np.sort(scores, axis=1)
    margin = ranked[:, -1] - ranked[:, -2] if classes > 1 else np.zeros(n)
    order = np.lexsort((-margin, best))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.searchsorted(best[order], np.arange(classes))[best[order]]
    placed = rank < base
    return np.where(placed, best, -1), np.bincount(best[placed], minlength=classes)


def cheapest_moves(cost: np.ndarray, labels: np.ndarray, classes: int) -> tuple[np.ndarray, list]:
    """moves[a, b], the least cost change of moving one image of class a to b, and the heaps of
    (change, image) per (a, b) it comes from."""
    moves = np.full((classes, classes), INF)
    heaps: list[list[list]] = [[[] for _ in range(classes)] for _ in range(classes)]
    for source in range(classes):
        members = np.flatnonzero(labels == source)
        for target in range(classes):
            if target != source and len(members):
                change = cost[members, target] - cost[members, source]
                heaps[source][target] = list(zip(change.tolist(), members.tolist(), strict=True))
                heapq.heapify(heaps[source][target])
                moves[source, target] = heaps[source][target][0][0]
    return moves, heaps


def add_moves(row: list[float], member: int, label: int, moves: np.ndarray, heaps: list) -> None:
    own = row[label]
    for target, heap in enumerate(heaps[label]):
        if target != label:
            change = row[target] - own
            heapq.heappush(heap, (change, member))
            moves[label, target] = min(moves[label, target], change)


def distances_to_a_place(moves: np.ndarray, places: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bellman-Ford over the K class nodes: each class's least cost to a free place, and the next
    class on the way there (-1: its own place). The graph has no negative cycle, since the
    assignment so far is optimal, so K rounds suffice."""
    distance, step = places.copy(), np.full(len(places), -1)
    every = np.arange(len(places))
    for _ in range(len(places)):
        through = moves + distance[None, :]
        best = through.argmin(axis=1)
        value = through[every, best]
        shorter = value < distance
        if not shorter.any():
            break
        distance[shorter] = value[shorter]
        step[shorter] = best[shorter]
    return distance, step


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
