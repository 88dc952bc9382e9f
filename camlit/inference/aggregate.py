"""Aggregation of the crop predictions of one image into its class probabilities and label."""

from __future__ import annotations

import torch

AGGREGATES = ("mean", "geomean", "max")


def aggregate(probabilities: torch.Tensor, rule: str = "mean") -> tuple[torch.Tensor, int]:
    """Combine the (crops, classes) softmax rows of one image into class probabilities and a label.

    - mean: the average of the rows;
    - geomean: the average of the log-probabilities, renormalised (a product of experts);
    - max: the seed notebook's rule: the single most confident crop prediction wins. The label is
      the flat argmax over the (crops x classes) matrix modulo the class count, and the returned
      probabilities are that crop's row.
    """
    if probabilities.ndim != 2 or probabilities.shape[0] == 0:
        raise ValueError(f"expected a non-empty (crops, classes) matrix, got shape {tuple(probabilities.shape)}")
    num_classes = probabilities.shape[1]
    if rule == "mean":
        combined = probabilities.mean(dim=0)
    elif rule == "geomean":
        tiny = torch.finfo(probabilities.dtype).tiny
        combined = probabilities.clamp_min(tiny).log().mean(dim=0).softmax(dim=0)
    elif rule == "max":
        flat = int(probabilities.flatten().argmax())
        # flat // num_classes is the crop, flat % num_classes the label, as in the seed.
        return probabilities[flat // num_classes], flat % num_classes
    else:
        raise ValueError(f"unknown aggregate {rule!r}; choose from {', '.join(AGGREGATES)}")
    return combined, int(combined.argmax())
