"""Prediction through Lightning's `Trainer.predict`: crops in, one class distribution per image out.

The Trainer places the model (`--device`), sets the precision (bf16 where the GPU has it natively,
as for training) and shows the progress; CameraClassifier.predict_step gives each crop's softmax.
A callback files those rows under their images and keeps the images that could not be used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch import Callback

from camlit.data.batch import Batch
from camlit.errors import CamlitError, lightning_deprecation_ignored
from camlit.imageio import UnreadableImage, read_rgb
from camlit.inference.aggregate import AGGREGATES, aggregate
from camlit.inference.balance import balanced_labels
from camlit.inference.tta import CropPlan, crop_loader
from camlit.training.callbacks import RanksMet
from camlit.training.precision import default_precision
from camlit.workers import launching_ranks


@dataclass
class Predictions:
    """Per image (in `paths` order): aggregated probabilities and labels; NaN rows / -1 labels for
    images in `problems` (index -> reason)."""

    paths: list[str]
    classes: list[str]
    probabilities: np.ndarray
    labels: np.ndarray
    problems: dict[int, UnreadableImage] = field(default_factory=dict)
    # Per image, the (crops, k) extra rows of a model whose predict_step also returns them
    # (camlit.inference.features: logits and one layer's features); empty otherwise.
    extras: dict[int, np.ndarray] = field(default_factory=dict)
    crops: int = 0
    left_out_copies: int = 0  # manipulated copies (--tta_manipulations) smaller than the crop
    seconds: float = 0.0
    primary: bool = True  # False in the other processes of a several-device run; they write nothing

    @property
    def usable(self) -> np.ndarray:
        return self.labels >= 0

    def rate_line(self) -> str:
        images = int(self.usable.sum())
        rate = images / self.seconds if self.seconds > 0 else float("inf")
        line = f"{images} images ({self.crops} crops) in {self.seconds:.2f} s: {rate:.1f} images/s"
        if self.left_out_copies:
            line += f"; {self.left_out_copies} manipulated copies smaller than the crop left out"
        return line


class CropRows(Callback):
    """Collects each image's crop probabilities (CPU float32 (crops, classes)), any extra rows the
    predict step returns beside them ((probabilities, extras)), and the problems."""

    def __init__(self):
        self.by_image: dict[int, torch.Tensor] = {}
        self.extras: dict[int, torch.Tensor] = {}
        self.problems: dict[int, UnreadableImage] = {}

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch: Batch, batch_idx, dataloader_idx=0):
        self.problems.update(batch.problems)
        if not len(batch.image_index):
            return
        probabilities, extras = outputs if isinstance(outputs, tuple) else (outputs, None)
        indices, counts = torch.unique_consecutive(batch.image_index.cpu(), return_counts=True)
        for index, rows in zip(indices.tolist(), probabilities.float().cpu().split(counts.tolist()), strict=True):
            self.by_image[index] = rows
        if extras is not None:
            for index, rows in zip(indices.tolist(), extras.float().cpu().split(counts.tolist()), strict=True):
                self.extras[index] = rows

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        # Several devices: each process saw its share of the images; every one gets all of them.
        if trainer.world_size > 1:
            shares = [None] * trainer.world_size
            torch.distributed.all_gather_object(shares, (self.by_image, self.extras, self.problems))
            for by_image, extras, problems in shares:
                self.by_image.update(by_image)
                self.extras.update(extras)
                self.problems.update(problems)


class SameImagesOnEveryRank(Callback):
    """Each process of a several-device run lists its images itself (Lightning starts the others
    with the first's command line): a folder that changed meanwhile gave one image's rows to its
    neighbour. The processes compare their lists before predicting; rank 0 names a difference."""

    def __init__(self, paths: Sequence[str | os.PathLike], flags: Sequence[bool | None]):
        listed = json.dumps([[str(path) for path in paths], [None if flag is None else bool(flag) for flag in flags]])
        self.listed = (len(paths), hashlib.sha256(listed.encode()).hexdigest())

    def on_predict_start(self, trainer, pl_module) -> None:
        if trainer.world_size == 1:
            return
        lists = [None] * trainer.world_size
        torch.distributed.all_gather_object(lists, self.listed)
        if len(set(lists)) == 1:
            return
        if not trainer.is_global_zero:
            raise SystemExit(2)  # rank 0 says why, once
        counts = ", ".join(str(count) for count, _ in lists)
        raise CamlitError(
            f"the images changed while the {trainer.world_size} processes started (they listed {counts} images "
            "in all); nothing was predicted: run again once the input stays as it is"
        )


def trainer_devices(name: str, count: int = 1) -> tuple[str, int | list[int]]:
    """`--device` (auto, cpu, cuda, cuda:N) and `--devices` as the Trainer's (accelerator, devices)."""
    if count < 1:
        raise CamlitError(f"--devices must be at least 1, got {count}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, number = name.partition(":")
    if kind not in ("cpu", "cuda") or (number and not number.isdigit()) or (kind == "cpu" and number):
        # cpu:1 is no device of its own: the Trainer would run on the CPU as it was given.
        raise CamlitError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    if number and count > 1:
        raise CamlitError(f"--device {name} names one device; use --device cuda with --devices {count}")
    if kind == "cpu":
        return "cpu", count
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not available:
        raise CamlitError(f"--device {name}: no CUDA device here")
    if max(count, int(number or 0) + 1) > available:
        raise CamlitError(f"--device {name}: this machine has {available} CUDA device(s)")
    return "gpu", [int(number)] if number else count


@contextmanager
def quiet_lightning():
    """Prediction's own output only: no 'GPU available' or tip lines from the Trainer, nor the
    deprecation its loop raises on every call."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with lightning_deprecation_ignored():
            yield
    finally:
        logger.setLevel(level)


def build_trainer(device: str = "auto", count: int = 1, progress: bool = False) -> L.Trainer:
    """A Trainer for prediction: one process per device when there are several (DDP)."""
    accelerator, devices = trainer_devices(device, count)
    precision = default_precision(accelerator)
    with quiet_lightning():
        return L.Trainer(
            accelerator=accelerator,
            devices=devices,
            strategy="ddp" if count > 1 else "auto",
            precision=precision,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=progress,
        )


def predict_paths(
    model,
    paths: Sequence[str | os.PathLike],
    plan: CropPlan,
    rule: str = "mean",
    balance: bool = False,
    batch_size: int = 128,
    num_workers: int = 0,
    device: str = "auto",
    devices: int = 1,
    progress: bool = False,
    reader: Callable = read_rgb,
    manipulated: Sequence[bool | None] | None = None,
) -> Predictions:
    """Crops, model, aggregation (and optionally the balanced assignment) for every path.

    `manipulated` says, per path, whether the image is manipulated (None: not known). A model
    trained with the manipulation flag needs it for every image; `balance` assigns within each
    group separately when every image's group is known and both groups are present.
    """
    if rule not in AGGREGATES:
        raise CamlitError(f"--aggregate {rule}: choose from {', '.join(AGGREGATES)}")
    classes = list(model.classes)
    flags = list(manipulated) if manipulated is not None else [None] * len(paths)
    known = None not in flags
    if model.manipulated_fc is not None and not known:
        unknown = [Path(path).name for path, flag in zip(paths, flags, strict=True) if flag is None]
        raise CamlitError(
            "the checkpoint's model was trained with --model.manipulation_flag and needs to know whether each "
            f"image is manipulated, but the name of {few(unknown)} says neither _manip nor _unalt; "
            "pass --manipulated yes or --manipulated no"
        )
    # A model that scores whole photos as well as crops says how to describe one (WithFeatures).
    describe = getattr(model, "describe_photo", None)
    loader = crop_loader(paths, plan, batch_size, num_workers, reader, flags if known else None, describe)
    # Each process needs an image of its own (Lightning's sampler refuses an empty share).
    trainer = build_trainer(device, min(devices, max(1, len(paths))), progress)
    collected = CropRows()
    trainer.callbacks += [RanksMet(), SameImagesOnEveryRank(paths, flags), collected]
    start = time.perf_counter()
    with quiet_lightning(), launching_ranks():
        trainer.predict(model, dataloaders=loader, return_predictions=False)
    seconds = time.perf_counter() - start
    probabilities = np.full((len(paths), len(classes)), np.nan)
    labels = np.full(len(paths), -1, dtype=np.int64)
    for index, rows in collected.by_image.items():
        combined, label = aggregate(rows, rule)
        probabilities[index] = combined.double().numpy()
        labels[index] = label
    if balance:
        usable = labels >= 0
        groups = [flag for flag, ok in zip(flags, usable, strict=True) if ok]
        per_group = known and len(set(groups)) > 1
        labels[usable] = balanced_labels(probabilities[usable], groups if per_group else None)
    crops = [len(rows) for rows in collected.by_image.values()]
    # Random crops come `count` to a copy of the image (a grid gives a small image fewer anyway).
    left_out = 0 if plan.grid else sum(plan.most_crops - count for count in crops) // plan.count
    return Predictions(
        [str(p) for p in paths],
        classes,
        probabilities,
        labels,
        collected.problems,
        {index: rows.numpy() for index, rows in collected.extras.items()},
        crops=sum(crops),
        left_out_copies=left_out,
        seconds=seconds,
        primary=trainer.is_global_zero,
    )


def few(names: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
