"""The one batch that training, validation and prediction pass to the LightningModule."""

from __future__ import annotations

from typing import NamedTuple

import torch

# `labels` and `manipulation` hold this where the value is not known (prediction of unlabelled photos).
UNKNOWN = -1


class Batch(NamedTuple):
    images: torch.Tensor  # (N, 3, H, W) uint8 RGB crops, never resized
    labels: torch.Tensor  # (N,) int64 class index, or UNKNOWN
    manipulation: torch.Tensor  # (N,) int64 index into manipulations.MANIPULATIONS (0 = unaltered), or UNKNOWN
    manipulated: torch.Tensor  # (N,) bool: whether the crop's photo is manipulated, even where the kind is UNKNOWN
