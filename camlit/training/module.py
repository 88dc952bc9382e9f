"""CameraClassifier: the hand-built ResNet50 as a LightningModule."""

from __future__ import annotations

import logging
import math
from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from camlit.cameras import KAGGLE_CAMERAS, require_class_names
from camlit.data.batch import UNKNOWN, Batch
from camlit.data.manipulations import NAMES
from camlit.errors import CamlitError
from camlit.models.filters import InputFilter, build_input_filter
from camlit.models.resnet import build_resnet, load_pretrained
from camlit.training.callbacks import record_nonfinite
from camlit.training.metrics import GroupedAccuracy, kaggle_weighted_accuracy
from camlit.training.plots import confusion_matrix_image
from camlit.training.resume import require_same_network, require_same_optimizer

log = logging.getLogger(__name__)

# ImageNet statistics, so that torchvision's pretrained weights see the inputs they were trained on.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FLOAT32_MAX = torch.finfo(torch.float32).max


class CameraClassifier(L.LightningModule):
    """Which camera took this crop: a ResNet behind an optional forensic front end.

    Args:
        classes: class names in label order; set from the data's class list by the CLI.
        arch: resnet50 (default), resnet101, resnet152, or resnet_tiny for tests and smoke runs.
        input_filter: `none`, `highpass` (fixed RGB noise residual), `srm` (fixed SRM bank on luma,
            which JPEG's chroma subsampling leaves intact), `constrained` (Bayar & Stamm) or
            `highpass_dct` (highpass plus luma's 8x8 DCT magnitudes, which survive re-compression).
        manipulation_flag: the head is told whether each crop is manipulated, as strong Kaggle
            solutions fed the test file names' `_manip`/`_unalt`: manipulated crops are classified
            by a head of their own on the shared features. Prediction then needs the flag.
        manipulation_head_weight: above 0, an auxiliary linear head on the pooled features learns
            which of the nine manipulations (unaltered included) each training crop went through,
            its cross-entropy added at this weight (Torrubia's Kaggle solution). 0: no head.
        optimizer: `adam` (the seed's; `weight_decay` is Adam's own L2 term, added to the gradient),
            `adamw` (decay decoupled from the gradient, Loshchilov & Hutter) or `sgd` (with `momentum`, Nesterov).
        schedule: `none`, `cosine` (with linear warmup) or `onecycle`; stepped every iteration.
        warmup_epochs: linear warmup length for `cosine`, in epochs (fractions allowed).
        pretrained: path to a torchvision ResNet state_dict, e.g. resnet50-11ad3fa6.pth.
        stride_on_3x3: torchvision's v1.5 placement; False for the paper's (and the seed's).
    """

    def __init__(
        self,
        classes: list[str] = list(KAGGLE_CAMERAS),
        arch: Literal["resnet50", "resnet101", "resnet152", "resnet_tiny"] = "resnet50",
        input_filter: InputFilter = "none",
        manipulation_flag: bool = False,
        manipulation_head_weight: float = 0.0,
        optimizer: Literal["adam", "adamw", "sgd"] = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        schedule: Literal["none", "cosine", "onecycle"] = "none",
        warmup_epochs: float = 0.0,
        label_smoothing: float = 0.0,
        pretrained: str | None = None,
        stride_on_3x3: bool = True,
        zero_init_residual: bool = False,
        channels_last: bool = True,
        compile: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        # Also here: a checkpoint carries its class list, and predict names its columns by it.
        require_class_names(classes)
        for name, value, valid, rule in (
            # Above a float32's range the optimizer's step fails on it (OneCycleLR's first step at once).
            ("lr", lr, 0 < lr <= FLOAT32_MAX, f"above 0 and at most {FLOAT32_MAX:.3g}"),
            ("weight_decay", weight_decay, weight_decay >= 0, "0 or more"),
            ("momentum", momentum, 0 <= momentum < 1, "in [0, 1)"),
            ("warmup_epochs", warmup_epochs, warmup_epochs >= 0, "0 or more"),
            ("label_smoothing", label_smoothing, 0 <= label_smoothing < 1, "in [0, 1)"),
            ("manipulation_head_weight", manipulation_head_weight, manipulation_head_weight >= 0, "0 or more"),
        ):
            if not valid:
                raise CamlitError(f"--model.{name} must be {rule}, got {value}")
        self.classes = list(classes)
        num_classes = len(classes)
        self.input_filter = build_input_filter(input_filter, IMAGENET_STD)
        self.net = build_resnet(
            arch, num_classes=num_classes, stride_on_3x3=stride_on_3x3, zero_init_residual=zero_init_residual
        )
        # Concatenating a 0/1 flag to the pooled features before one linear layer would only shift
        # the logits; a head per flag lets each group weigh the shared features its own way.
        self.manipulated_fc = nn.Linear(self.net.fc.in_features, num_classes) if manipulation_flag else None
        self.manipulation_fc = nn.Linear(self.net.fc.in_features, len(NAMES)) if manipulation_head_weight > 0 else None
        if pretrained:
            load_pretrained(self.net, pretrained)
        if compile:
            self.net.compile()
        self.register_buffer("mean", 255 * torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", 255 * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # validate_args would check the labels with torch.unique, a host sync on every step.
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_class_acc = GroupedAccuracy(num_classes)
        self.val_loss = MeanMetric()
        self.val_confusion = MulticlassConfusionMatrix(num_classes, validate_args=False)
        # One group per manipulation, by Batch.manipulation; those without validation items are not logged.
        self.val_group_acc = GroupedAccuracy(len(NAMES))
        self.register_buffer("first_nonfinite_step", torch.tensor(-1), persistent=False)
        self.val_manipulation_acc = MulticlassAccuracy(
            len(NAMES), average="micro", ignore_index=UNKNOWN, validate_args=False
        )

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Before Lightning loads the weights, so that a mismatch is named rather than a shape error.
        require_same_network(self, checkpoint)
        require_same_optimizer(self, checkpoint)

    def configure_model(self) -> None:
        if self.hparams.channels_last:
            self.to(memory_format=torch.channels_last)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW on the device -> normalised float, in channels_last when asked."""
        x = (images.float() - self.mean) / self.std
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.input_filter(x)

    def forward(self, images: torch.Tensor, manipulated: torch.Tensor | None = None) -> torch.Tensor:
        """Logits; `manipulated` (bool per image) is required by a manipulation-aware model."""
        if self.manipulated_fc is None:
            return self.net(self.preprocess(images))
        return self.camera_logits(self.net.forward_features(self.preprocess(images)), manipulated)

    def camera_logits(self, features: torch.Tensor, manipulated: torch.Tensor | None) -> torch.Tensor:
        if self.manipulated_fc is None:
            return self.net.fc(features)
        if manipulated is None:
            raise CamlitError(
                "this model was trained with --model.manipulation_flag and needs to know "
                "whether each image is manipulated"
            )
        return torch.where(manipulated.view(-1, 1), self.manipulated_fc(features), self.net.fc(features))

    def logits_and_manipulation(
        self, images: torch.Tensor, manipulated: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Camera logits, and the auxiliary head's manipulation logits (None without the head)."""
        if self.manipulation_fc is None:
            return self(images, manipulated), None
        features = self.net.forward_features(self.preprocess(images))
        return self.camera_logits(features, manipulated), self.manipulation_fc(features)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        if self.global_step == 0 and batch_idx == 0:
            self.log_crop_grid(batch.images)
        logits, manipulation_logits = self.logits_and_manipulation(batch.images, batch.manipulated)
        loss = F.cross_entropy(logits, batch.labels, label_smoothing=self.hparams.label_smoothing)
        self.train_acc(logits, batch.labels)
        size = len(batch.labels)
        # train/loss stays the camera loss, comparable with runs without the auxiliary head. Synced:
        # under DDP the epoch's figure was rank 0's batches alone (one scalar per step to reduce).
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=size, sync_dist=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=size)
        if manipulation_logits is not None:
            manipulation_loss = masked_cross_entropy(manipulation_logits, batch.manipulation)
            self.log(
                "train/loss_manipulation", manipulation_loss, on_step=True, on_epoch=True, batch_size=size,
                sync_dist=True,
            )  # fmt: skip
            loss = loss + self.hparams.manipulation_head_weight * manipulation_loss
        record_nonfinite(self.first_nonfinite_step, loss, self.global_step)
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        labels = batch.labels
        logits, manipulation_logits = self.logits_and_manipulation(batch.images, batch.manipulated)
        if manipulation_logits is not None:
            self.val_manipulation_acc(manipulation_logits, batch.manipulation)
            self.log("val/acc_manipulation", self.val_manipulation_acc, on_epoch=True, batch_size=len(labels))
        self.val_loss(F.cross_entropy(logits, labels), weight=len(labels))
        predictions = logits.argmax(dim=1)
        self.val_acc(predictions, labels)
        self.val_class_acc(predictions, labels, labels)
        self.val_confusion(predictions, labels)
        self.val_group_acc(predictions, labels, batch.manipulation)
        self.log("val/loss", self.val_loss, on_epoch=True, batch_size=len(labels))
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True, batch_size=len(labels))

    def on_validation_epoch_end(self) -> None:
        # A camera with no validation crops (a one-photo class split by photo, a val_dir without
        # it) has no accuracy: logged as 0 it read as a camera never recognised.
        per_class = zip(self.classes, self.val_class_acc.compute(), strict=True)
        self.log_dict({f"val/acc_class/{name}": float(acc) for name, acc in per_class if not math.isnan(acc)})
        self.val_class_acc.reset()
        per_group = {
            name: float(acc)
            for name, acc in zip(NAMES, self.val_group_acc.compute(), strict=True)
            if not math.isnan(acc)
        }
        self.val_group_acc.reset()
        if len(per_group) > 1:
            self.log_dict({f"val/acc/{name}": acc for name, acc in per_group.items()})
        weighted = kaggle_weighted_accuracy(per_group)
        if weighted is not None:
            self.log("val/acc_weighted", weighted)
        matrix = self.val_confusion.compute().cpu().numpy()
        self.val_confusion.reset()
        experiment = self.tensorboard()
        if experiment is not None and not self.trainer.sanity_checking:
            picture = confusion_matrix_image(matrix, self.classes)
            # At the step of the validation's metrics: Lightning logs them before it counts the
            # step validation followed, and a resume hides what was logged from its checkpoint's step on.
            step = max(self.global_step - 1, 0)
            experiment.add_image("val/confusion_matrix", picture, step, dataformats="HWC")

    def predict_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """Softmax per crop, in float32 whatever the precision."""
        return self(batch.images, batch.manipulated).float().softmax(dim=1)

    def log_crop_grid(self, images: torch.Tensor, count: int = 16) -> None:
        experiment = self.tensorboard()
        if experiment is None:
            return
        crops = images[:count].detach().cpu()
        side = math.ceil(math.sqrt(len(crops)))
        height, width = crops.shape[2:]
        grid = torch.zeros(3, side * height, side * width, dtype=torch.uint8)
        for index, crop in enumerate(crops):
            row, col = divmod(index, side)
            grid[:, row * height : (row + 1) * height, col * width : (col + 1) * width] = crop
        experiment.add_image("train/crops", grid, self.global_step)

    def tensorboard(self):
        logger = self.logger
        experiment = getattr(logger, "experiment", None) if logger is not None else None
        return experiment if hasattr(experiment, "add_image") else None

    def setup(self, stage: str) -> None:
        # After the DataModule's setup, which counts the training crops.
        if stage == "fit":
            self.require_manipulated_crops(getattr(self.trainer.datamodule, "unaltered_crop_share", None))

    def require_manipulated_crops(self, unaltered_crop_share: float | None) -> None:
        if self.manipulated_fc is not None and unaltered_crop_share == 1.0:
            # The head for manipulated photos would never train, and predict would use it as initialised.
            raise CamlitError(
                "--model.manipulation_flag: no training crop is manipulated (--data.manipulation_p 0 and no "
                "manipulation folders), so its head for manipulated photos would stay untrained; give "
                "--data.manipulation_p above 0, or train on a prepared data-512/"
            )

    def configure_optimizers(self):
        hp = self.hparams
        decay, no_decay = [], []
        for name, parameter in self.named_parameters():
            # Weight decay on batch-norm scales and biases only hurts (timm, torchvision references).
            (no_decay if parameter.ndim <= 1 or name.endswith(".bias") else decay).append(parameter)
        groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=True)
        else:
            optimizer = (torch.optim.AdamW if hp.optimizer == "adamw" else torch.optim.Adam)(groups, lr=hp.lr)
        if hp.schedule == "none":
            return optimizer
        # Resuming, the checkpoint's scheduler state brings its plan (a longer run's is made again
        # as training starts, camlit.training.resume). Counting the steps here would build the
        # training loader before the checkpoint's place in the epoch is restored: a run stopped
        # mid-epoch trained the epoch's first batches again and never its last.
        total = 2 if self.trainer.ckpt_path is not None else int(self.trainer.estimated_stepping_batches)
        scheduler = self.build_scheduler(optimizer, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def build_scheduler(self, optimizer: torch.optim.Optimizer, total: int):
        hp = self.hparams
        if hp.schedule == "cosine":
            steps_per_epoch = total / max(1, self.trainer.max_epochs or 1)
            warmup = int(min(total - 1, hp.warmup_epochs * steps_per_epoch))  # an infinite warmup: the whole run
            return torch.optim.lr_scheduler.LambdaLR(optimizer, CosineWithWarmup(total, warmup))
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=hp.lr, total_steps=total)


def masked_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the targets that are known; 0 when none is (no NaN, no host sync)."""
    known = targets != UNKNOWN
    losses = F.cross_entropy(logits, targets.clamp(min=0), reduction="none")
    return (losses * known).sum() / known.sum().clamp(min=1)


class CosineWithWarmup:
    """LR factor: linear from 0 over `warmup` steps, then half a cosine to 0 at `total`."""

    def __init__(self, total: int, warmup: int):
        self.total, self.warmup = max(1, total), max(0, warmup)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))
