"""Stopping a run whose loss turned non-finite before a checkpoint can store the damage."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from camlit.errors import CamlitError
from camlit.training.resume import LatestCheckpoint


class NonFiniteLossError(CamlitError):
    """The training loss became NaN or infinite."""


class NonFiniteLossGuard(Callback):
    """Stops the run when the loss turns NaN or infinite, before a checkpoint can store the damage.

    The module records the first bad step in a device tensor without syncing; this reads it every
    `check_every_n_steps` steps and before every checkpoint save point, which costs one host sync
    per check instead of one per step.
    """

    def __init__(self, check_every_n_steps: int = 50):
        self.check_every_n_steps = check_every_n_steps

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step % self.check_every_n_steps == 0:
            self.check(trainer, pl_module)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.check(trainer, pl_module)

    def check(self, trainer: Trainer, pl_module: LightningModule) -> None:
        step = int(pl_module.first_nonfinite_step)
        if step < 0:
            return
        latest = [c for c in trainer.checkpoint_callbacks if isinstance(c, LatestCheckpoint)]
        saved = latest[0].best_model_path if latest else ""
        kept = f"; the last good checkpoint is {saved}" if saved else "; no checkpoint had been saved yet"
        raise NonFiniteLossError(f"training loss became non-finite at step {step}; stopped{kept}")


def record_nonfinite(first_step: torch.Tensor, loss: torch.Tensor, step: int) -> None:
    """Keep the first step whose loss is not finite in `first_step` (-1 while all are), on device."""
    first_step.copy_(torch.where((first_step < 0) & ~torch.isfinite(loss.detach()), step, first_step))
