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
    # Prediction only, where each image gives several crops or none:
    image_index: torch.Tensor | None = None  # (N,) int64 the input image each crop is of
    problems: tuple[tuple[int, Exception], ...] = ()  # (image index, why) of the images that gave no crops


class Item(NamedTuple):
    """One crop as a dataset yields it; `collate` stacks a list of them into a Batch."""

    image: torch.Tensor  # (3, H, W) uint8
    label: int
    manipulation: int
    manipulated: bool


def collate(items: list[Item]) -> Batch:
    images, labels, manipulation, manipulated = zip(*items, strict=True)
    return Batch(
        torch.stack(images),
        torch.tensor(labels, dtype=torch.long),
        torch.tensor(manipulation, dtype=torch.long),
        torch.tensor(manipulated, dtype=torch.bool),
    )
