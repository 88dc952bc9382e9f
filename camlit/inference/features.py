"""The classifier's predict step, also giving each crop's logits and features of one layer.

Tile maps, splice clustering and the open-set scores need more than the softmax: `WithFeatures`
wraps a trained CameraClassifier so that `Trainer.predict` (camlit.inference.running) returns
(softmax, [logits | features]) per crop, which running's CropRows files under each image as
`Predictions.extras`. The features are those of one `layer`:

- ``pooled``: the last stage's pooled features, what the classifier's head reads;
- ``stem``: the stem's channel means, low-level statistics (noise, demosaicing, JPEG) that a
  ten-way head need not keep apart for cameras it was not trained on.

With `quantization`, each crop's row ends with its whole photo's JPEG quantization steps and the
manipulation undone to read them (camlit.data.undo.camera_table), estimated in the loader's
workers from the photo as read.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from camlit.data.undo import TABLE_COLUMNS, camera_table
from camlit.training.module import CameraClassifier

LAYERS = ("pooled", "stem")


class WithFeatures(L.LightningModule):
    """A CameraClassifier whose predict step returns (softmax, logits and `layer`'s features side by
    side, then the photo's camera_table with `quantization`)."""

    def __init__(self, classifier: CameraClassifier, layer: str = "pooled", quantization: bool = False):
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"unknown feature layer {layer!r}; choose one of {', '.join(LAYERS)}")
        self.classifier = classifier
        self.layer = layer
        # What camlit.inference.running reads of the model it predicts with.
        self.classes = classifier.classes
        self.manipulated_fc = classifier.manipulated_fc
        self.describe_photo = camera_table if quantization else None

    def predict_step(self, batch, batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        classifier = self.classifier
        stem = classifier.net.stem(classifier.preprocess(batch.images))
        pooled = classifier.net.stages(stem)
        logits = classifier.camera_logits(pooled, batch.manipulated).float()
        features = pooled if self.layer == "pooled" else stem.mean(dim=(2, 3))
        rows = [logits, features.float()]
        if self.describe_photo is not None:
            # None where no image of the batch was usable: no crops, no rows.
            described = batch.photo_features
            rows.append(features.new_zeros((0, TABLE_COLUMNS)) if described is None else described.float())
        return logits.softmax(dim=1), torch.cat(rows, dim=1)


def split_extras(extras: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A (crops, classes + features) block of `WithFeatures` rows as (logits, features)."""
    return extras[:, :num_classes], extras[:, num_classes:]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in NumPy (the rows come back from Trainer.predict as arrays)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
