"""Accuracy per manipulation, and Kaggle's weighted score."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torchmetrics import Metric

from camlit.data.manipulations import UNALTERED
from camlit.errors import CamlitError

UNALTERED_WEIGHT = 0.7


def kaggle_weighted_accuracy(per_group: Mapping[str, float]) -> float | None:
    """0.7 x unaltered + 0.3 x the mean over manipulated groups; None unless both kinds exist."""
    manipulated = [value for name, value in per_group.items() if name != UNALTERED]
    if UNALTERED not in per_group or not manipulated:
        return None
    return UNALTERED_WEIGHT * per_group[UNALTERED] + (1 - UNALTERED_WEIGHT) * sum(manipulated) / len(manipulated)


def logged_metrics(classes: list[str], manipulation_head: bool) -> set[str]:
    """The names CameraClassifier logs other than the groups' (train/loss also as _step and _epoch)."""
    names = {"train/loss", "train/loss_step", "train/loss_epoch", "train/acc", "val/loss", "val/acc"}
    names |= {f"val/acc_class/{name}" for name in classes}
    if manipulation_head:
        names |= {"train/loss_manipulation", "train/loss_manipulation_step", "train/loss_manipulation_epoch"}
        names |= {"val/acc_manipulation"}
    return names


def require_logged_metric(monitor: str | None, group_names: list[str], logged: set[str]) -> None:
    """Refuse a best-checkpoint monitor that training and validation over `group_names` can never
    log: a misspelt one trained a whole epoch before Lightning stopped the run, or, with
    max_steps, ran to the end without a best.ckpt."""
    if monitor is None or monitor in logged:
        return
    if monitor != "val/acc_weighted" and not monitor.startswith("val/acc/"):
        raise CamlitError(
            f"--best_checkpoint.monitor {monitor}: not a metric camlit logs; choose val/acc, val/loss, "
            "val/acc_weighted, val/acc/<manipulation>, val/acc_class/<camera>, train/acc or train/loss"
        )
    require_group_metric(monitor, group_names)


def require_group_metric(monitor: str | None, group_names: list[str]) -> None:
    """Refuse a best-checkpoint monitor that validation over `group_names` can never log."""
    if monitor == "val/acc_weighted":
        missing = UNALTERED not in group_names or not set(group_names) - {UNALTERED}
        needs = "an unaltered and at least one manipulated validation group"
    elif monitor is not None and monitor.startswith("val/acc/"):
        missing = monitor.removeprefix("val/acc/") not in group_names or len(group_names) < 2
        needs = f"a validation group {monitor.removeprefix('val/acc/')!r} beside another"
    else:
        return
    if missing:
        raise CamlitError(
            f"--best_checkpoint.monitor {monitor} needs {needs}, and validation has {', '.join(group_names)}: "
            "list manipulations in --data.val_manipulations, train on a prepared tree with manipulation "
            "folders, or choose --best_checkpoint.monitor val/acc"
        )


class GroupedAccuracy(Metric):
    """Accuracy within each of `num_groups` groups; summed across processes under DDP."""

    full_state_update = False

    def __init__(self, num_groups: int, **kwargs):
        super().__init__(**kwargs)
        self.add_state("correct", torch.zeros(num_groups, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(num_groups, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predictions: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor) -> None:
        """`groups` (N,) int64 in [0, num_groups), or negative (UNKNOWN) for an item of no group."""
        count = len(self.total)
        known = groups >= 0
        self.correct += torch.bincount(groups[known & (predictions == targets)], minlength=count)
        self.total += torch.bincount(groups[known], minlength=count)

    def compute(self) -> torch.Tensor:
        """Per-group accuracy; NaN for a group with no samples."""
        return self.correct.double() / self.total.double()
