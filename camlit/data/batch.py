"""The one batch that training, validation and prediction pass to the LightningModule."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

# Only for the annotations: data preparation's worker processes import the manipulations, which
# number themselves by this module, and need no torch.
if TYPE_CHECKING:
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
    # (N, F) float32 features of each crop's whole photo (the JPEG quantization steps that an
    # open-set score reads: camlit.data.undo.camera_table), or None.
    photo_features: torch.Tensor | None = None
