"""The figures of an evaluation (camlit.inference.evaluate): accuracy overall, per class, per
manipulation and Kaggle's weighted, the confusion matrix, and the text evaluate prints of them and
of the open-set and splice figures.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_confusion_matrix

from camlit.data.datasets import group_order
from camlit.data.manipulations import UNALTERED
from camlit.training.metrics import kaggle_weighted_accuracy


def accuracy_entry(correct: int, total: int) -> dict[str, Any]:
    return {"images": int(total), "correct": int(correct), "accuracy": correct / total if total else None}


def score(
    truth: Sequence[int], predicted: Sequence[int], groups: Sequence[str], classes: Sequence[str]
) -> dict[str, Any]:
    """Every figure of an evaluation, JSON-ready: accuracy overall, per class (of the true class),
    per group, the mean over the manipulated groups and Kaggle's weighted accuracy (each None
    without a manipulated group; weighted also without `unaltered`), and the confusion matrix
    (rows true, columns predicted)."""
    truth = np.asarray(truth, dtype=np.int64)
    predicted = np.asarray(predicted, dtype=np.int64)
    groups = np.asarray(list(groups), dtype=object)
    if not (len(truth) == len(predicted) == len(groups)):
        raise ValueError("truth, predicted and groups differ in length")
    correct = truth == predicted
    num_classes = len(classes)
    matrix = multiclass_confusion_matrix(torch.from_numpy(predicted), torch.from_numpy(truth), num_classes)
    per_class = {name: accuracy_entry(correct[truth == k].sum(), (truth == k).sum()) for k, name in enumerate(classes)}
    per_group = {
        name: accuracy_entry(correct[groups == name].sum(), (groups == name).sum())
        for name in sorted(set(groups.tolist()), key=group_order)
    }
    weighted = kaggle_weighted_accuracy({name: entry["accuracy"] for name, entry in per_group.items()})
    manipulated = [entry["accuracy"] for name, entry in per_group.items() if name != UNALTERED]
    return {
        "images": int(len(truth)),
        "correct": int(correct.sum()),
        "accuracy": float(correct.mean()) if len(truth) else None,
        "manipulated_mean": sum(manipulated) / len(manipulated) if manipulated else None,
        "weighted_accuracy": weighted,
        "per_class": per_class,
        "per_group": per_group,
        "classes": list(classes),
        "confusion_matrix": matrix.tolist(),
    }


def percent(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:6.2f}%"


def format_report(report: dict[str, Any]) -> str:
    """The figures as a plain-text table."""
    width = max(len(name) for name in [*report["per_class"], *report["per_group"], "overall"]) + 2
    lines = [
        f"{'':{width}}{'images':>8}{'correct':>9}{'accuracy':>10}",
        f"{'overall':{width}}{report['images']:>8}{report['correct']:>9}{percent(report['accuracy']):>10}",
    ]
    weighted = report["weighted_accuracy"]
    others = [name for name in report["per_group"] if name != UNALTERED]
    rule = f"0.7 x unaltered + 0.3 x mean of {len(others)} other group(s)"
    mean = report["manipulated_mean"]
    lines.append(f"{'manipulated':{width}}{'':17}{percent(mean):>10}   mean of {len(others)} manipulated group(s)")
    lines.append(f"{'weighted':{width}}{'':17}{percent(weighted):>10}   {rule if weighted is not None else 'n/a'}")
    for title, section in (("per class", report["per_class"]), ("per group", report["per_group"])):
        lines.append(f"{title}:")
        for name, entry in section.items():
            lines.append(f"{name:{width}}{entry['images']:>8}{entry['correct']:>9}{percent(entry['accuracy']):>10}")
    return "\n".join(lines)


def figure(value: float | None) -> str:
    """A figure to three places; "-" where it is undefined (an AUROC of one kind of photo only)."""
    return "-" if value is None or math.isnan(value) else f"{value:.3f}"


def format_forensics(report: dict[str, Any]) -> list[str]:
    """The open-set and splice figures, when asked for, as text lines."""
    lines = []
    for group, figures in (report.get("unknown_cameras") or {}).items():
        if isinstance(figures, dict):
            lines.append(
                f"unknown cameras, {group}: AUROC {figure(figures['auroc'])}; known rejected "
                f"{percent(figures['known_rejected'])}, unknown accepted {percent(figures['unknown_accepted'])}"
            )
    for group, figures in ((report.get("splices") or {}).get("groups") or {}).items():
        lines.append(
            f"splices, {group}: pixel F1 {figure(figures['pixel_f1'])}, MCC {figure(figures['pixel_mcc'])}, "
            f"photo AUROC {figure(figures['photo_auroc'])}, "
            f"clean photos given a foreign region {percent(figures['clean_with_foreign_region'])}"
        )
    return lines
