"""Stopping a run: when its loss turns non-finite, when SIGTERM asks it to, and before it trains
for a checkpoint monitor that can never be logged."""

from __future__ import annotations

import os
import signal
import sys
import threading

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import Timer
from lightning.pytorch.utilities.exceptions import SIGTERMException

from camlit.data.datasets import group_order
from camlit.errors import CamlitError
from camlit.termination import SigtermWatch, Terminated
from camlit.training.metrics import logged_metrics, require_group_metric, require_logged_metric
from camlit.training.resume import LatestCheckpoint
from camlit.workers import RANK_START_SIGNALS, started_by_launcher


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


def stopped_by_sigterm(watch: SigtermWatch, exception: BaseException) -> bool:
    """Whether `exception` is how SIGTERM ended the run: at once before training, Lightning's stop at
    a batch end, or a loader finding its workers gone because the signal reached them too."""
    if isinstance(exception, Terminated):
        return True
    if not watch.received:
        return False
    return isinstance(exception, SIGTERMException) or worker_killed(exception)


class CheckpointOnSigterm(Callback):
    """Saves last.ckpt where SIGTERM stopped training, so that `--resume` continues from that step.

    Until training starts, `watch` raises at once (nothing to keep; the run folder is put back as
    it was). From then on it only notes the signal: Lightning's handler, which runs first, stops
    its loops after the current batch with SIGTERMException, and this saves the state there. When
    the signal reached the loader workers too, the loader's error at the next batch saves it instead.
    Under DDP the ranks decide together at each batch end instead, so that all stop after the same one.
    """

    def __init__(self, watch: SigtermWatch):
        self.watch = watch
        self.saved: str | None = None
        self.handler = None  # the SIGTERM handler put aside while a validation runs
        self.received_before = False

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.watch.defer()
        if trainer.world_size > 1 and threading.current_thread() is threading.main_thread():
            # Lightning's handler raises its stop on each rank after that rank's own batch, so the
            # ranks stop at different steps and the next collective hangs (Lightning #20806). Under
            # DDP only the watch notes the signal, and the ranks agree at each batch end (below).
            signal.signal(signal.SIGTERM, self.watch)

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        # One scalar all-reduce a step: every rank stops after the same batch, however many got the signal.
        if trainer.world_size > 1 and trainer.strategy.reduce_boolean_decision(self.watch.received, all=False):
            self.watch.received = True
            raise SIGTERMException

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Lightning stops a validation after the batch a SIGTERM came in; the run resumed from there
        # went on with the next epoch, and that validation never ran (nor was its epoch a candidate
        # for best.ckpt). While one runs, only the watch notes the signal; Lightning gets it as the
        # validation ends and stops the run where it would have. (Under DDP the watch alone takes
        # it throughout, and the ranks agree after a training batch.)
        if (
            trainer.sanity_checking
            or trainer.world_size > 1
            or threading.current_thread() is not threading.main_thread()
        ):
            return
        self.handler = signal.signal(signal.SIGTERM, self.watch)
        self.received_before = self.watch.received

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.handler is None:
            return
        signal.signal(signal.SIGTERM, self.handler)
        self.handler = None
        if self.watch.received and not self.received_before:
            os.kill(os.getpid(), signal.SIGTERM)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if isinstance(exception, Terminated) or not stopped_by_sigterm(self.watch, exception):
            return
        latest = [c for c in trainer.checkpoint_callbacks if isinstance(c, LatestCheckpoint)]
        if latest and latest[0].dirpath:
            path = latest[0].format_checkpoint_name({})
            trainer.save_checkpoint(path, weights_only=False)  # the whole state, to resume from
            self.saved = path


class RequireMonitoredMetric(Callback):
    """Refuses, once the data is set up and before training, a checkpoint monitor that validation
    cannot log under these options (Lightning would only say so after a whole epoch)."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        require_monitors_logged(trainer.checkpoint_callbacks, pl_module, trainer.datamodule)
        require_monitors_in_the_limited_validation(trainer)


def require_monitors_in_the_limited_validation(trainer: Trainer) -> None:
    """`--trainer.limit_val_batches` validates the loader's first batches, in the val set's order
    (a prepared tree's folder by folder): a monitor of groups past them trained a whole epoch
    before Lightning's own error that it was never logged."""
    limit, val_set = trainer.limit_val_batches, getattr(trainer.datamodule, "val_set", None)
    batch_size = getattr(getattr(trainer.datamodule, "hparams", None), "batch_size", None)
    if val_set is None or not hasattr(val_set, "items") or not batch_size:
        return
    per_batch = batch_size * trainer.world_size  # each rank takes every world_size-th item
    batches = limit if isinstance(limit, int) else int(-(-len(val_set) // per_batch) * limit)
    if not batches or batches * per_batch >= len(val_set):  # no validation, or all of it
        return
    count = batches * per_batch
    seen = sorted({name for _, name in val_set.items[:count]}, key=group_order)
    for callback in trainer.checkpoint_callbacks:
        monitor = getattr(callback, "monitor", None)
        try:
            require_group_metric(monitor, seen)
        except CamlitError:
            raise CamlitError(
                f"--trainer.limit_val_batches {limit} validates the first {count} crops only, all in "
                f"{', '.join(seen) or 'no group'}, so --best_checkpoint.monitor {monitor} could never be logged; "
                "validate more batches, or choose --best_checkpoint.monitor val/acc"
            ) from None


def require_monitors_logged(checkpoint_callbacks: list, pl_module: LightningModule, datamodule) -> None:
    """Each checkpoint's monitor is a metric that training and validation of `datamodule` log."""
    groups = list(getattr(datamodule, "val_group_names", []))
    val_set = getattr(datamodule, "val_set", None)
    for callback in checkpoint_callbacks:
        monitor = getattr(callback, "monitor", None)
        if val_set is not None and not len(val_set) and monitor and monitor.startswith("val/"):
            # The run trained on and wrote no best.ckpt; Lightning only warned, once per epoch.
            fraction = getattr(datamodule.hparams, "val_fraction", None)
            raise CamlitError(
                f"--data.val_fraction {fraction} holds out no photo of so few, so --best_checkpoint.monitor "
                f"{monitor} could never be logged and no best checkpoint written; add photos of each camera, "
                "or name a --data.val_dir"
            )
        logged = logged_metrics(list(pl_module.classes), pl_module.manipulation_fc is not None)
        require_logged_metric(monitor, groups, logged)


def require_options_fit_the_folders(trainer: Trainer, pl_module: LightningModule, datamodule) -> None:
    """The checks made once the data is set up, made before on the folders' listing alone: a
    refusal then comes before any image is decoded or cached."""
    preview = datamodule.preview() if hasattr(datamodule, "preview") else None
    if preview is not None:
        require_monitors_logged(trainer.checkpoint_callbacks, pl_module, preview)
        pl_module.require_manipulated_crops(preview.unaltered_crop_share)


def say_if_out_of_time(trainer: Trainer) -> None:
    """A run that --trainer.max_time stopped; resumed as it is, it trains nothing and said nothing."""
    timers = [callback for callback in trainer.callbacks if isinstance(callback, Timer)]
    remaining = timers[0].time_remaining() if timers else None
    if remaining is not None and remaining <= 0 and trainer.is_global_zero:
        print(
            f"note: stopped by --trainer.max_time ({timers[0].time_elapsed():.0f} s of training); "
            "a resume trains further only with a larger --trainer.max_time",
            file=sys.stderr,
        )


def worker_killed(exception: BaseException) -> bool:
    """Whether torch stopped the run because a data loader worker was killed (kill -9, out of memory)."""
    return isinstance(exception, RuntimeError) and str(exception).startswith("DataLoader worker (pid")


def peer_lost(exception: BaseException) -> bool:
    """Whether a collective failed because another process of the DDP run ended (gloo's words)."""
    return isinstance(exception, RuntimeError) and "Connection closed by peer" in str(exception)


class RanksMet(Callback):
    """Once the ranks of a DDP run have met, the stop signals a starting rank held
    (`camlit.workers.bind_to_launcher`) reach its handlers: a stop from here on is the run's own."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if started_by_launcher():
            signal.pthread_sigmask(signal.SIG_UNBLOCK, RANK_START_SIGNALS)
