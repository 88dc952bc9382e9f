"""Resuming a run, from the command line to the first step, in the order it happens.

1. `--resume lightning_logs/version_N` (or `--ckpt_path` to a file in such a run) becomes the
   run's saved config.yaml (plain values only: camlit.training.runconfig), its checkpoint, and its
   version folder for the logs (resume_arguments).
2. The checkpoint: the furthest trained of those that load and match their hash, last.ckpt at a
   tie, with a warning when passing over a corrupt one; none at all is an error, never a silent
   fresh start.
3. The network built from the config must be the one saved: same classes, same shapes
   (CameraClassifier.on_load_checkpoint asks require_same_network), and so must the optimizer
   options its saved state holds (require_same_optimizer).
4. The checkpoints the run goes on writing keep their best-k scores (RunCheckpoint), and
   last.ckpt is rewritten every epoch (LatestCheckpoint).
5. A run made longer (`--trainer.max_epochs`) gets its learning-rate schedule planned again over
   the new length, from the step it stopped at (ReplanSchedule).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from camlit.atomic import stale_temporaries
from camlit.errors import CamlitError
from camlit.training.checkpointing import (
    is_lightning_checkpoint,
    load_plain,
    loaded_checkpoint,
    progress_of,
    require_checkpoint_files,
    training_progress,
)
from camlit.training.config_base import ConfigText
from camlit.training.runconfig import DEFAULT_LOGGER, logged_run_dir, read_run_config

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# 1. The command line


def resume_target(args: list[str]) -> tuple[str, str] | None:
    """(option, value) of `--resume` or `--ckpt_path`, as the full parser will read them; both at
    once is refused, as the run's own checkpoint would silently replace the one named."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--resume")
    options.add_argument("--ckpt_path")
    known, _ = options.parse_known_args(args)
    if known.resume and known.ckpt_path:
        raise CamlitError(
            f"--resume {known.resume} --ckpt_path {known.ckpt_path}: give one; --resume takes the run's own checkpoint"
        )
    if known.resume:
        return "--resume", known.resume
    return ("--ckpt_path", known.ckpt_path) if known.ckpt_path else None


def resume_arguments(args: list[str]) -> list[str]:
    """`args` with the run's saved config (read once, plain values only), checkpoint and log folder
    added when `--resume DIR` or `--ckpt_path FILE` names a run; the options given win."""
    found = resume_target(args)
    if found is None:
        return args
    option, target = found
    target_path = Path(target)
    # Where the run is, whatever the spelling: `.`, `..`, `last.ckpt` from inside checkpoints/, a
    # link to the run folder. Read as written, `last.ckpt` there started a new run inside the old
    # one's checkpoints/, and `--resume .` failed on an empty logger name.
    if target_path.is_dir():
        version_dir, checkpoint = target_path.resolve(), find_resume_checkpoint(target_path)
    elif target_path.is_file():
        checkpoint = checked_checkpoint(target_path)
        # Only a checkpoint in a run's checkpoints/ folder names a run: a config.yaml of the user's
        # two folders up was taken for one, written over, and the folder made a run's.
        folder = Path(os.path.abspath(target_path)).parent
        in_run = folder.name == "checkpoints" and (folder.parent / "config.yaml").is_file()
        if not in_run:
            return [*args, "--ckpt_path", str(checkpoint)]
        version_dir = folder.parent.resolve()
        require_furthest(option, checkpoint, version_dir)
    else:
        found = "not a regular file" if target_path.exists() else "no such run folder or checkpoint file"
        raise CamlitError(f"{option} {target}: {found}")
    config_file = version_dir / "config.yaml"
    if not config_file.is_file():
        if target_path.is_dir():
            # A run folder without its options would start on the defaults, not continue the run.
            raise CamlitError(
                f"{option} {target}: no config.yaml in the run folder, so its options are unknown; "
                "give them with --config and its checkpoint with --ckpt_path"
            )
        # A checkpoint from elsewhere: continue its state under the config given here.
        return [*args, "--ckpt_path", str(checkpoint)]
    text, config = read_run_config(config_file, args)
    step = (training_progress(checkpoint) or (0, 0))[0]
    return [
        "--config", ConfigText(text, str(config_file)),
        *args,
        "--ckpt_path", str(checkpoint),
        *log_dir_arguments(config, version_dir),
        # What a killed run logged after its checkpoint is logged again, from the checkpoint's
        # step on (Lightning logs a step before counting it): TensorBoard hides the first.
        "--trainer.logger.init_args.purge_step", str(step),
        # The weights come from the checkpoint; the pretrained file may be long gone.
        "--model.pretrained", "null",
    ]  # fmt: skip


def log_dir_arguments(config: dict, version_dir: Path) -> list[str]:
    """Point the logger, and the run's root, at `version_dir`, keeping the saved paths when they
    already lead there.

    Keeping them matters: ModelCheckpoint restores its best-k scores only when its folder path
    is the same string as when it saved them.
    """
    root = version_dir.parent.parent
    arguments = ["--trainer.logger.init_args.version", version_dir.name, "--trainer.default_root_dir", str(root)]
    trainer = config.get("trainer")
    if isinstance(trainer, dict) and trainer.get("logger") is True:
        # Saved as Lightning's own choice of TensorBoardLogger: its options need camlit's, named.
        arguments = ["--trainer.logger", json.dumps(DEFAULT_LOGGER), *arguments]
    if logged_run_dir(config, version_dir).resolve() != version_dir.resolve():
        arguments += [
            "--trainer.logger.init_args.save_dir", str(root),
            "--trainer.logger.init_args.name", version_dir.parent.name,
        ]  # fmt: skip
    return arguments


# ---------------------------------------------------------------------------------------------
# 2. The checkpoint


def find_resume_checkpoint(version_dir: str | Path) -> Path:
    """Of a run's checkpoints that load and match their hash, the furthest trained (its global
    step, then its epoch), last.ckpt at a tie; say so when a corrupt one is passed over. Not the
    newest file: a copy or a restore writes files in any order, and a touched best.ckpt of an
    earlier epoch was resumed from, its later epochs lost when last.ckpt was written again."""
    folder = Path(version_dir) / "checkpoints"
    require_checkpoint_files(folder)  # before it is taken for a corrupt checkpoint, passed over with a warning
    if folder.is_dir():
        remove_stale_temporaries(folder)
    candidates = sorted(folder.glob("*.ckpt"))
    if not candidates:
        hint = ""
        if Path(version_dir).name == "checkpoints" and any(Path(version_dir).glob("*.ckpt")):
            hint = f"; name the run folder {Path(version_dir).parent}, or one checkpoint file"
        raise CamlitError(f"{version_dir}: no checkpoint in {folder} to resume from{hint}")
    progress, weights_only = {}, []
    for candidate in candidates:
        checkpoint = loaded_checkpoint(candidate)  # read and hashed once
        if checkpoint is None:
            log.warning("skipping corrupt checkpoint %s", candidate)
        elif is_weights_only(checkpoint):
            weights_only.append(candidate)
        else:
            progress[candidate] = progress_of(checkpoint)
    if weights_only:
        log.warning("skipping %s: weights only, no training state to resume", ", ".join(map(str, weights_only)))
    if not progress and weights_only:
        raise CamlitError(f"{version_dir}: no checkpoint in {folder} is whole and holds a training state to resume")
    if not progress:
        raise CamlitError(f"{version_dir}: every checkpoint in {folder} is corrupt")
    chosen = max(progress, key=lambda path: (progress[path], path.name == "last.ckpt"))
    last = folder / "last.ckpt"
    if last in candidates and last not in progress:
        log.warning("%s is corrupt; resuming from %s instead", last, chosen)
    return chosen


def is_weights_only(checkpoint: dict) -> bool:
    """Saved with `save_weights_only`: Lightning's loops but no optimizer state, on which a resume
    failed in a KeyError traceback."""
    return "loops" in checkpoint and "optimizer_states" not in checkpoint


def require_furthest(option: str, checkpoint: Path, version_dir: Path) -> None:
    """Resuming a run from one of its earlier checkpoints wrote its later last.ckpt over, and
    restored the best score of then, so a worse epoch could replace best.ckpt."""
    furthest = find_resume_checkpoint(version_dir)
    named, reached = training_progress(checkpoint), training_progress(furthest)
    if named is not None and reached is not None and named < reached:
        raise CamlitError(
            f"{option} {checkpoint}: step {named[0]} of a run whose {furthest.name} reached step {reached[0]}; "
            f"continuing it here would write over the later checkpoints. Resume the run (--resume {version_dir}), "
            "or copy the checkpoint out of the run folder and start a new run from it with --ckpt_path"
        )


def checked_checkpoint(path: str | Path) -> Path:
    """`path`, once it proved whole and plain; code in it is refused by name, never run."""
    path = Path(path)
    try:
        checkpoint = load_plain(path, mmap=True)
    except CamlitError:
        raise
    except Exception:  # noqa: BLE001 - any failure to load means the file cannot be resumed from
        checkpoint = None
    if not is_lightning_checkpoint(checkpoint):
        raise CamlitError(f"{path}: corrupt or not a Lightning checkpoint; refusing to resume from it")
    return path


def remove_stale_temporaries(folder: Path) -> None:
    """Temporary files of saves that a kill interrupted; the checkpoints beside them are whole.
    A live run's save in progress is not stale (a second --resume is refused only later, at the lock)."""
    for temporary in stale_temporaries(folder, (".ckpt", ".ckpt.sha256")):
        temporary.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# 3. The same network

# The model options that decide what the saved weights compute.
NETWORK_OPTIONS = ("arch", "input_filter", "manipulation_flag", "stride_on_3x3")


def require_same_network(model: LightningModule, checkpoint: dict) -> None:
    """Refuse, naming the difference, a checkpoint whose classes or network shape are not `model`'s."""
    saved_hparams = checkpoint.get("hyper_parameters", {})
    saved = list(saved_hparams.get("classes", model.classes))
    if saved != model.classes:
        raise CamlitError(
            f"the checkpoint was trained on classes {', '.join(saved)}; the data has {', '.join(model.classes)}"
        )
    # Another input filter or stride placement computes something else with weights of the same
    # shapes (the filters are fixed, non-persistent buffers); another shape cannot take them at all.
    computes = [
        f"{k}={saved_hparams[k]} (here {model.hparams[k]})"
        for k in NETWORK_OPTIONS
        if k in saved_hparams and k in model.hparams and saved_hparams[k] != model.hparams[k]
    ]
    if computes:
        raise CamlitError("the checkpoint's network is not this one; it was trained with " + ", ".join(computes))
    mine = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    theirs = {name: tuple(value.shape) for name, value in checkpoint.get("state_dict", {}).items()}
    if mine != theirs:
        differ = [
            f"{k}={saved_hparams[k]} (here {v})" for k, v in model.hparams.items() if saved_hparams.get(k, v) != v
        ]
        raise CamlitError(
            "the checkpoint's network has another shape than this one's; it was trained with "
            + (", ".join(differ) or "other model options")
        )


# The model options the optimizer's saved state holds: torch's load_state_dict puts the saved
# values back (a new --model.lr was ignored), and another optimizer cannot take the state at all
# (SGD found no 'momentum' in Adam's and failed at the first step). The schedule sets its learning
# rates: `onecycle` added to a run saved without one failed on it (KeyError 'initial_lr'), after
# the run's config.yaml had been written, and so did every later resume.
OPTIMIZER_OPTIONS = ("optimizer", "lr", "weight_decay", "momentum", "schedule")


def require_same_optimizer(model: LightningModule, checkpoint: dict) -> None:
    """Refuse, naming each, optimizer options that differ from those the checkpoint's state holds."""
    saved = checkpoint.get("hyper_parameters", {})
    differ = [
        f"--model.{k} {model.hparams[k]} (saved: {saved[k]})"
        for k in OPTIMIZER_OPTIONS
        if k in saved and k in model.hparams and saved[k] != model.hparams[k]
    ]
    if differ and checkpoint.get("optimizer_states"):
        raise CamlitError(
            f"{', '.join(differ)}: a resumed run goes on with its optimizer's saved state, which holds the saved "
            "values; resume without changing them, or start a new run"
        )


# ---------------------------------------------------------------------------------------------
# 4. The checkpoints a resumed run keeps writing


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

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.forget_deleted()
        super().on_validation_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.forget_deleted()
        super().on_train_epoch_end(trainer, pl_module)

    def forget_deleted(self) -> None:
        """Checkpoints deleted during the run (their folder removed, say) stop counting as the best
        ones, so that the next check saves again instead of waiting for a better score."""
        gone = [path for path in self.best_k_models if not os.path.exists(path)]
        if not gone:
            return
        log.warning("%s deleted during the run; saving anew from the next check on", ", ".join(gone))
        for path in gone:
            del self.best_k_models[path]
        if not self.best_k_models:
            self.best_model_path, self.kth_best_model_path, self.best_model_score = "", "", None


class LatestCheckpoint(RunCheckpoint):
    """`last.ckpt`, rewritten at every epoch end whatever the monitored metrics did.

    Lightning's own `save_last` only writes when a top-k save happens in that epoch. This saves
    after each validation and, where none ran at the epoch's end (`check_val_every_n_epoch` 2 or
    more, a `val_check_interval` within the epoch), at the epoch's end as well: such runs ended
    with status 0 and no checkpoint, or with their last epochs unsaved.
    """

    def __init__(self, dirpath: str | None = None):
        super().__init__(dirpath=dirpath, filename="last", monitor=None, save_top_k=1, enable_version_counter=False)
        self.saved_at_step: int | None = None

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not trainer.sanity_checking:
            self.saved_at_step = trainer.global_step

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.saved_at_step != trainer.global_step and self.dirpath:
            trainer.save_checkpoint(os.path.join(self.dirpath, "last.ckpt"), weights_only=False)
            self.saved_at_step = trainer.global_step

    @property
    def state_key(self) -> str:
        # Distinct from a periodic checkpoint that also saves every epoch with no monitor.
        # The key Lightning's ModelCheckpoint would build, so that older checkpoints still match.
        return f"{type(self).__qualname__}{{'role': 'latest'}}"


# ---------------------------------------------------------------------------------------------
# 5. The schedule of a longer run


class ReplanSchedule(Callback):
    """A resumed run whose length changed (`--resume ... --trainer.max_epochs N`) gets its schedule
    planned again over the new length, from the step it stopped at; the restored one would end
    where the old run did (LR 0 from there on, or OneCycleLR's step-past-end error)."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if pl_module.hparams.schedule == "none" or not trainer.lr_scheduler_configs:
            return
        config = trainer.lr_scheduler_configs[0]
        total = int(trainer.estimated_stepping_batches)
        planned = planned_steps(config.scheduler)
        if planned == total:
            return
        step = config.scheduler.last_epoch
        scheduler = pl_module.build_scheduler(config.scheduler.optimizer, total)
        scheduler.last_epoch = step - 1
        with warnings.catch_warnings():
            # This step only moves the new schedule to where the run is; no optimizer step is skipped.
            warnings.filterwarnings("ignore", re.escape("Detected call of `lr_scheduler.step()` before"), UserWarning)
            scheduler.step()
        config.scheduler = scheduler
        log.info(
            "%s schedule planned again: %d steps instead of %d, continuing at step %d",
            pl_module.hparams.schedule,
            total,
            planned,
            step,
        )


def planned_steps(scheduler) -> int:
    if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR):
        return scheduler.total_steps
    return scheduler.lr_lambdas[0].total
