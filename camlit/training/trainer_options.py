"""Options refused before a run folder is made: those Lightning takes and then fails on (a
ZeroDivisionError, a traceback after an epoch), and those that lose a run or its best.ckpt.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import StrategyRegistry

from camlit.atomic import require_writable
from camlit.errors import CamlitError
from camlit.training.runconfig import CHECKPOINTS, TENSORBOARD, is_plain_name


def refuse_trainer_options(config) -> None:
    """Trainer options that Lightning takes and then fails on (a ZeroDivisionError, a traceback
    after the run folder was made), or that lose a run: without a logger the checkpoints and
    config.yaml go straight into the working folder, where the next such run writes over them."""
    trainer = config.trainer
    if trainer.logger is False and trainer.enable_checkpointing is not False:
        raise CamlitError(
            "--trainer.logger false: camlit keeps each run in the logger's lightning_logs/version_N; without one, the "
            "next run writes over this one's checkpoints (with --trainer.enable_checkpointing false nothing is kept)"
        )
    limit = trainer.limit_val_batches
    if trainer.enable_checkpointing is not False and limit == 0 and not isinstance(limit, bool):
        for checkpoint in ("best_checkpoint", "periodic_checkpoint"):
            monitor = config.get(f"{checkpoint}.monitor")
            if monitor and str(monitor).startswith("val/"):
                # Lightning only warned, each epoch, that the metric was missing.
                raise CamlitError(
                    f"--trainer.limit_val_batches {limit:g}: validation is off, so --{checkpoint}.monitor {monitor} "
                    "is never logged and the checkpoint it chooses never written (best.ckpt needs validation); let "
                    f"validation run, or give --{checkpoint}.monitor null to keep the latest epoch's instead"
                )
    refuse_launch_options(trainer)
    precision = str(trainer.precision)
    if precision.startswith("transformer-engine") or precision in ("16-true", "bf16-true"):
        # The network takes float32 crops: a half-precision model failed on them in a traceback.
        raise CamlitError(
            f"--trainer.precision {precision}: camlit trains in 32-true, 64-true, 16-mixed or bf16-mixed "
            "(the default picks one)"
        )
    if trainer.overfit_batches:
        # It swaps camlit's per-epoch crop sampler for plain indices, which the crops dataset cannot read.
        raise CamlitError(
            f"--trainer.overfit_batches {trainer.overfit_batches}: not with camlit's crop sampler; "
            "use --trainer.limit_train_batches N with --data.load_ratio for a small run"
        )
    for name in ("accumulate_grad_batches", "check_val_every_n_epoch"):
        value = getattr(trainer, name)
        if value is not None and value < 1:
            raise CamlitError(f"--trainer.{name} must be at least 1, got {value}")
    interval = trainer.val_check_interval  # also a time ("00:00:10:00") or a timedelta: Lightning checks those
    if isinstance(interval, int | float) and not isinstance(interval, bool) and interval <= 0:
        raise CamlitError(f"--trainer.val_check_interval must be above 0, got {interval}")
    root = trainer.default_root_dir
    if root is not None and Path(root).exists() and not Path(root).is_dir():
        raise CamlitError(f"--trainer.default_root_dir {root}: a file; name a folder")
    if root is not None:
        # A link that leads nowhere on the way failed in mkdir with a traceback.
        require_writable(root, "--trainer.default_root_dir", folder=True)
    seed = config.get("seed_everything")
    if isinstance(seed, int) and not isinstance(seed, bool) and not 0 <= seed < 2**32:
        raise CamlitError(f"--seed_everything must be in [0, 2**32), got {seed}")


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


def refuse_launch_options(trainer) -> None:
    """An accelerator camlit does not run on (`tpu` needs torch_xla: a traceback), and a strategy
    that trains in spawned or forked children: camlit's run folder, stop-line and resume state live
    in the launching process, which saw no training and removed the trained run's folder."""
    accelerator = trainer.accelerator
    if isinstance(accelerator, str) and accelerator not in ACCELERATORS:
        raise CamlitError(f"--trainer.accelerator {accelerator}: camlit trains on {', '.join(ACCELERATORS)}")
    strategy = trainer.strategy
    if isinstance(strategy, str):
        entry = dict.get(StrategyRegistry, strategy) or {}  # its own get() builds the strategy
        name, start_method = strategy, entry.get("init_params", {}).get("start_method")
    else:
        init = strategy.get("init_args") or {}
        name, start_method = strategy.get("class_path"), init.get("start_method")
    if start_method in ("spawn", "fork", "forkserver"):
        raise CamlitError(
            f"--trainer.strategy {name}: starts its processes with {start_method}; camlit runs each rank as a "
            "process of its own: give --trainer.strategy ddp"
        )


def refuse_checkpoint_options(config) -> None:
    """Checkpoint options that lose checkpoints or the run: a `filename` of `last` or a `save_last`
    wrote over camlit's last.ckpt (`link` made it a link, and last.ckpt then overwrote best.ckpt
    through it, its hash rewritten to match); a `dirpath`, or a `filename` that is a path, put
    checkpoints outside the run folder, and its own `--resume` refused it."""
    for checkpoint in CHECKPOINTS:
        filename, dirpath = config.get(f"{checkpoint}.filename"), config.get(f"{checkpoint}.dirpath")
        if dirpath is not None:
            raise CamlitError(f"--{checkpoint}.dirpath {dirpath}: checkpoints stay in the run folder's checkpoints/")
        if filename is not None and not is_plain_name(str(filename)):
            raise CamlitError(f"--{checkpoint}.filename {filename}: a path; give a file name (checkpoints/ holds it)")
        if filename is not None and str(filename) == "last":
            raise CamlitError(f"--{checkpoint}.filename last: the name of the checkpoint camlit writes every epoch")
        if config.get(f"{checkpoint}.save_last"):
            raise CamlitError(
                f"--{checkpoint}.save_last {config.get(f'{checkpoint}.save_last')}: camlit writes last.ckpt itself "
                "at every epoch end; leave it out"
            )
    # Both saving under one name (`best`, or `epoch{epoch:03}` beside `epoch{epoch:03d}`) gave `-v1`
    # files, and which was the best hung on the order they saved in.
    for epoch, step in ((0, 0), (7, 1234), (12, 99)):
        best, periodic = (checkpoint_name(config, checkpoint, epoch, step) for checkpoint in CHECKPOINTS)
        if best == periodic:
            raise CamlitError(
                f"--{CHECKPOINTS[1]}.filename {config.get(f'{CHECKPOINTS[1]}.filename')}: names its checkpoints as "
                f"--{CHECKPOINTS[0]}.filename {config.get(f'{CHECKPOINTS[0]}.filename')} does ({best} at epoch "
                f"{epoch}); give each its own"
            )


def checkpoint_name(config, checkpoint: str, epoch: int, step: int) -> str:
    """The file name a checkpoint callback of these options gives at `epoch` and `step` (its other
    metrics at 0, as Lightning fills them)."""
    filename = config.get(f"{checkpoint}.filename")
    callback = ModelCheckpoint(
        filename=filename, auto_insert_metric_name=config.get(f"{checkpoint}.auto_insert_metric_name", True)
    )
    try:
        return callback.format_checkpoint_name({"epoch": torch.tensor(epoch), "step": torch.tensor(step)})
    except (ValueError, KeyError, IndexError) as error:  # `best{`, `{epoch:q}`: str.format's own errors
        raise CamlitError(f"--{checkpoint}.filename {filename}: not a name Lightning can fill in ({error})") from None


def refuse_logger_options(config) -> None:
    """Logger options that put the run's files where its `--resume` cannot follow: another logger
    than TensorBoard's or a list of them, a `sub_dir` (config.yaml and the events in
    version_N/sub/), a `version` or `name` leading out of lightning_logs, a `filename_suffix` that
    is a path (a traceback at the first event)."""
    logger = config.trainer.logger
    if isinstance(logger, bool) or logger is None:
        return  # Lightning's TensorBoardLogger, or none (refuse_trainer_options)
    # camlit claims, locks and resumes a run by its TensorBoard version folder: under a list of
    # loggers or another logger nothing claimed the folder, and the run's --resume refused it.
    class_path = logger.get("class_path") if not isinstance(logger, list) else None
    if class_path not in TENSORBOARD:
        given = "a list of loggers" if isinstance(logger, list) else class_path
        raise CamlitError(
            f"--trainer.logger: {given}; camlit keeps each run in one TensorBoardLogger's version folder, "
            "which --resume continues"
        )
    init = logger.get("init_args") or {}
    option = "--trainer.logger.init_args"
    if init.get("sub_dir") is not None:
        raise CamlitError(f"{option}.sub_dir {init.sub_dir}: a run's logs stay in its version folder; leave it out")
    suffix = init.get("filename_suffix")
    if suffix and not is_plain_name(str(suffix)):
        raise CamlitError(f"{option}.filename_suffix {suffix}: a path; give the end of a file name")
    version = init.get("version")
    if isinstance(version, str) and not is_plain_name(version):
        raise CamlitError(f"{option}.version {version}: a path; give a folder name (version_N, or one of yours)")
    name = init.get("name")
    if name and (Path(str(name)).is_absolute() or ".." in Path(str(name)).parts):
        raise CamlitError(f"{option}.name {name}: leads out of the save folder; give a folder name")


@contextmanager
def trainer_mistakes_as_user_errors() -> Iterator[None]:
    """Lightning's own ValueError for a `val_check_interval` longer than an epoch, found only once
    the data is loaded, as the one line it is (it was a traceback)."""
    try:
        yield
    except ValueError as error:
        if "`val_check_interval`" not in str(error):
            raise
        raise CamlitError(f"--trainer.val_check_interval: {' '.join(str(error).split())}") from None
