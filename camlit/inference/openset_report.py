"""The open-set figures `camlit evaluate` reports: how well a score tells unknown cameras from known
ones (AUROC), and what its calibrated threshold (camlit.inference.openset) accepts and rejects."""

from __future__ import annotations

import numpy as np

from camlit.inference.openset import ACCEPT, OpenSetModel


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of `positives` scoring above `negatives` (ties count half), by
    counting pairs: exact for any scores (torchmetrics' binary_auroc reads scores outside [0, 1]
    as logits and computes in float32)."""
    negatives, positives = np.asarray(negatives, float), np.asarray(positives, float)
    if not len(negatives) or not len(positives):
        return float("nan")
    above = (positives[:, None] > negatives[None, :]).sum() + 0.5 * (positives[:, None] == negatives[None, :]).sum()
    return float(above / (len(negatives) * len(positives)))


def unknown_report(
    known: np.ndarray,
    known_manipulated: np.ndarray,
    unknown: np.ndarray,
    unknown_manipulated: np.ndarray,
    model: OpenSetModel,
) -> dict:
    """Open-set figures, unaltered and manipulated photos apart: AUROC of unknown against known
    cameras; at the calibrated threshold of the group, the share of known photos rejected (false
    alarms) and of unknown photos accepted; and the share of unknown photos accepted where 95% of
    these known photos would be (FPR at 95% acceptance)."""
    report = {}
    for name, flag in (("unaltered", False), ("manipulated", True)):
        k, u = known[known_manipulated == flag], unknown[unknown_manipulated == flag]
        at_95 = np.quantile(k, ACCEPT, method="higher") if len(k) else float("nan")
        threshold = float(model.thresholds([flag], 1)[0])
        report[name] = {
            "known": int(len(k)),
            "unknown": int(len(u)),
            "threshold": threshold,
            "auroc": auroc(k, u),
            "known_rejected": float(np.mean(k > threshold)) if len(k) else None,
            "unknown_accepted": float(np.mean(u <= threshold)) if len(u) else None,
            "unknown_accepted_at_95": float(np.mean(u <= at_95)) if len(u) else None,
        }
    return report
