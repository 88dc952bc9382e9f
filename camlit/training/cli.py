"""`python scripts/fit.py`: LightningCLI around CameraClassifier and CameraDataModule.

`--resume lightning_logs/version_N` (or `--ckpt_path` to a file in such a run) continues that run:
its saved config, its newest valid checkpoint, and the same version directory for the logs.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch
import yaml
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.trainer.trainer import Trainer

from camlit.data.datamodule import CameraDataModule
from camlit.errors import CamlitError
from camlit.training.callbacks import LatestCheckpoint, NonFiniteLossGuard
from camlit.training.checkpointing import AtomicCheckpointIO, checked_checkpoint, find_resume_checkpoint
from camlit.training.module import CameraClassifier
from camlit.training.precision import default_precision


class CamlitCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None, **kwargs):
        super().__init__(
            CameraClassifier,
            CameraDataModule,
            run=False,
            args=args,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={
                "precision": default_precision(),
                "benchmark": torch.cuda.is_available(),
                "max_epochs": 30,
                "log_every_n_steps": 10,
                "logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    # No placeholder hp_metric of -1 on TensorBoard's HPARAMS tab.
                    "init_args": {"save_dir": ".", "name": "lightning_logs", "default_hp_metric": False},
                },
            },
            **kwargs,
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: list[str]) -> None:
        # main() passes the whole command line, rewritten for --resume, so there is no mix of
        # `args` and sys.argv for LightningCLI to warn about.
        self.config = parser.parse_args(args)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--ckpt_path", type=str | None, default=None, help="checkpoint to continue from")
        parser.link_arguments("data.classes", "model.classes")
        parser.add_lightning_class_args(ModelCheckpoint, "best_checkpoint")
        parser.set_defaults(
            {
                "best_checkpoint.monitor": "val/acc",
                "best_checkpoint.mode": "max",
                "best_checkpoint.filename": "best",
                "best_checkpoint.enable_version_counter": False,
            }
        )
        # The seed notebook saved the model every 5 epochs; keep every one of those.
        parser.add_lightning_class_args(ModelCheckpoint, "periodic_checkpoint")
        parser.set_defaults(
            {
                "periodic_checkpoint.every_n_epochs": 5,
                "periodic_checkpoint.save_top_k": -1,
                "periodic_checkpoint.filename": "epoch{epoch:03d}",
                "periodic_checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")

    def _instantiate_trainer(self, config: dict, callbacks: list) -> Trainer:
        callbacks = [*callbacks, NonFiniteLossGuard(), LatestCheckpoint()]
        # Switching checkpoints or logging off switches off the callbacks that need them.
        if config.get("enable_checkpointing") is False:
            callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
        if config.get("logger") in (False, None):
            callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
        trainer = super()._instantiate_trainer(config, callbacks)
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer


def resume_arguments(args: list[str]) -> list[str]:
    """Turn `--resume DIR` or `--ckpt_path FILE` into the saved config, checkpoint and log version."""
    target = pop_option(args, "--resume") or pop_option(args, "--ckpt_path")
    if target is None:
        return args
    target_path = Path(target)
    if target_path.is_dir():
        version_dir, checkpoint = target_path, find_resume_checkpoint(target_path)
    elif target_path.is_file():
        version_dir, checkpoint = target_path.parent.parent, checked_checkpoint(target_path)
    else:
        raise CamlitError(f"--resume {target}: no such run folder or checkpoint file")
    config = version_dir / "config.yaml"
    if not config.is_file():
        # A checkpoint from elsewhere: continue its state under the config given here.
        return [*args, "--ckpt_path", str(checkpoint)]
    return [
        "--config", str(config),
        *args,
        "--ckpt_path", str(checkpoint),
        *log_dir_arguments(config, version_dir),
        # The weights come from the checkpoint; the pretrained file may be long gone.
        "--model.pretrained", "null",
    ]  # fmt: skip


def log_dir_arguments(config: Path, version_dir: Path) -> list[str]:
    """Point the logger at `version_dir`, keeping the saved paths when they already lead there.

    Keeping them matters: ModelCheckpoint restores its best-k scores only when its folder path
    is the same string as when it saved them.
    """
    logger = (yaml.safe_load(config.read_text()).get("trainer") or {}).get("logger") or {}
    saved = logger.get("init_args", {}) if isinstance(logger, dict) else {}
    arguments = ["--trainer.logger.init_args.version", version_dir.name]
    saved_dir = Path(saved.get("save_dir") or ".") / (saved.get("name") or "") / version_dir.name
    if saved_dir.resolve() != version_dir.resolve():
        arguments += [
            "--trainer.logger.init_args.save_dir", str(version_dir.parent.parent),
            "--trainer.logger.init_args.name", version_dir.parent.name,
        ]  # fmt: skip
    return arguments


def pop_option(args: list[str], name: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            value = args[index + 1]
            del args[index : index + 2]
            return value
        if arg.startswith(name + "="):
            del args[index]
            return arg.split("=", 1)[1]
    return None


def show_camlit_messages() -> None:
    """camlit's own progress and skip messages on stderr, as Lightning shows its own."""
    logger = logging.getLogger("camlit")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(args: list[str] | None = None) -> CamlitCLI:
    """Train; `args` as on the command line. Input mistakes exit with one line, status 2."""
    args = list(sys.argv[1:] if args is None else args)
    show_camlit_messages()
    try:
        cli = CamlitCLI(args=resume_arguments(args))
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.ckpt_path)
    # Lightning's MisconfigurationException is its own users' mistake, e.g. --trainer.max_epochs -5.
    except (CamlitError, MisconfigurationException) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    return cli
