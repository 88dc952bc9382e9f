"""The classifier's predict step, also giving each crop's logits and pooled features.

Tile maps, splice clustering and the open-set scores need more than the softmax: `WithFeatures`
wraps a trained CameraClassifier so that `Trainer.predict` (camlit.inference.running) returns
(softmax, [logits | pooled features]) per crop, which running's CropRows files under each image
as `Predictions.extras`.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch

from camlit.training.module import CameraClassifier


class WithFeatures(L.LightningModule):
    """A CameraClassifier whose predict step returns (softmax, logits and pooled features side by side)."""

    def __init__(self, classifier: CameraClassifier):
        super().__init__()
        self.classifier = classifier
        # What camlit.inference.running reads of the model it predicts with.
        self.classes = classifier.classes
        self.manipulated_fc = classifier.manipulated_fc

    def predict_step(self, batch, batch_idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        classifier = self.classifier
        features = classifier.net.forward_features(classifier.preprocess(batch.images))
        logits = classifier.net.fc(features)
        if classifier.manipulated_fc is not None:
            logits = torch.where(batch.manipulated.view(-1, 1), classifier.manipulated_fc(features), logits)
        logits = logits.float()
        return logits.softmax(dim=1), torch.cat([logits, features.float()], dim=1)


def split_extras(extras: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A (crops, classes + features) block of `WithFeatures` rows as (logits, pooled features)."""
    return extras[:, :num_classes], extras[:, num_classes:]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in NumPy (the rows come back from Trainer.predict as arrays)."""
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)
