"""Callbacks that keep a run's checkpoints trustworthy."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from camlit.errors import CamlitError


class NonFiniteLossError(CamlitError):
    """The training loss became NaN or infinite."""


class RunCheckpoint(ModelCheckpoint):
    """A ModelCheckpoint that restores its best-k tracking when its run is resumed from any folder.

    Lightning restores that state only when the saved folder path is the same string, so resuming
    from another working directory, or by an absolute path, would forget the best score and let a
    worse checkpoint replace best.ckpt. When the checkpoint resumed from lies in this callback's own
    folder, the run is the same, and the saved paths are moved to the folder as named now.
    """

    resumed_here = False

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        # Called just before load_state_dict, with the path being restored in trainer.ckpt_path.
        resumed = trainer.ckpt_path
        if resumed and self.dirpath:
            self.resumed_here = Path(resumed).resolve().parent == Path(self.dirpath).resolve()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.resumed_here:
            state_dict = {**state_dict, "dirpath": self.dirpath}
            for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
                state_dict[key] = self.here(state_dict.get(key))
            state_dict["best_k_models"] = {self.here(p): v for p, v in state_dict.get("best_k_models", {}).items()}
        super().load_state_dict(state_dict)

    def here(self, path: str | None) -> str | None:
        return os.path.join(self.dirpath, os.path.basename(path)) if path else path


class LatestCheckpoint(RunCheckpoint):
    """`last.ckpt`, rewritten at every epoch end whatever the monitored metrics did.

    Lightning's own `save_last` only writes when a top-k save happens in that epoch.
    """

    def __init__(self, dirpath: str | None = None):
        super().__init__(dirpath=dirpath, filename="last", monitor=None, save_top_k=1, enable_version_counter=False)

    @property
    def state_key(self) -> str:
        # Distinct from a periodic checkpoint that also saves every epoch with no monitor.
        return self._generate_state_key(role="latest")


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
