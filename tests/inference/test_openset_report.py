import numpy as np

from camlit.inference.openset import OpenSetModel
from camlit.inference.openset_report import auroc, unknown_report


def test_auroc_counts_ties_as_half():
    assert auroc([0, 1], [2, 3]) == 1.0 and auroc([1], [1]) == 0.5
    assert auroc([2, 3], [0, 1]) == 0.0


def test_auroc_keeps_the_order_of_large_and_nearly_equal_scores():
    """Scores outside [0, 1] (ranks of hundreds of photos, distances) were read as logits by
    torchmetrics, whose float32 sigmoid tied them all at 1."""
    assert auroc([100.0, 200.0], [300.0, 400.0]) == 1.0
    assert auroc([1.0, 1.0 + 1e-12], [1.0 + 2e-12]) == 1.0
    negatives = np.arange(300.0)
    assert auroc(negatives, negatives + 0.5) == (300 * 301 / 2) / (300 * 300)


def test_the_report_counts_each_kind_of_photo_at_its_own_threshold():
    model = OpenSetModel("msp", threshold=0.5, threshold_manipulated=0.8)
    known, known_manipulated = np.array([0.1, 0.6, 0.7, 0.9]), np.array([False, False, True, True])
    unknown, unknown_manipulated = np.array([0.4, 0.9, 0.75, 0.95]), np.array([False, False, True, True])
    report = unknown_report(known, known_manipulated, unknown, unknown_manipulated, model)
    unaltered, manipulated = report["unaltered"], report["manipulated"]
    assert unaltered["threshold"] == 0.5 and manipulated["threshold"] == 0.8
    assert unaltered["known_rejected"] == 0.5 and unaltered["unknown_accepted"] == 0.5
    assert manipulated["known_rejected"] == 0.5 and manipulated["unknown_accepted"] == 0.5
    assert unaltered["auroc"] == 0.75 and manipulated["auroc"] == 0.75
    # Where 95% of these known photos are accepted: the higher of the two known scores.
    assert unaltered["unknown_accepted_at_95"] == 0.5 and manipulated["unknown_accepted_at_95"] == 0.5
