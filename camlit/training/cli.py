"""`camlit fit`: LightningCLI around CameraClassifier and CameraDataModule.

A new run claims its own version folder; a run that fails before training leaves the folder as it
was. `--resume lightning_logs/version_N` continues a run: see camlit.training.resume.
"""

from __future__ import annotations

import logging
import shutil
import sys
from contextlib import suppress
from pathlib import Path

import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.trainer.trainer import Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from camlit.data.datamodule import CameraDataModule
from camlit.errors import disk_full_as_user_error, exit_on_user_error
from camlit.training.callbacks import NonFiniteLossGuard
from camlit.training.checkpointing import AtomicCheckpointIO
from camlit.training.module import CameraClassifier
from camlit.training.precision import default_precision
from camlit.training.resume import LatestCheckpoint, ReplanSchedule, RunCheckpoint, resume_arguments


class SaveConfigOnceTraining(SaveConfigCallback):
    """Writes config.yaml when training starts, after a resumed checkpoint has been restored.

    A resume whose overrides do not fit the checkpoint then leaves the run's config as it was.
    """

    training_began = False

    def setup(self, trainer: Trainer, pl_module, stage: str) -> None:
        self.stage = stage

    def on_train_start(self, trainer: Trainer, pl_module) -> None:
        self.training_began = True
        super().setup(trainer, pl_module, self.stage)


class CamlitCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None, **kwargs):
        self.run_dir: Path | None = None
        self.files_before: set[Path] = set()
        self.claimed = self.created_root = False
        super().__init__(
            CameraClassifier,
            CameraDataModule,
            run=False,
            args=args,
            seed_everything_default=0,
            save_config_callback=SaveConfigOnceTraining,
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
        parser.add_lightning_class_args(RunCheckpoint, "best_checkpoint")
        parser.set_defaults(
            {
                "best_checkpoint.monitor": "val/acc",
                "best_checkpoint.mode": "max",
                "best_checkpoint.filename": "best",
                "best_checkpoint.enable_version_counter": False,
            }
        )
        # The seed notebook saved the model every 5 epochs; keep every one of those.
        parser.add_lightning_class_args(RunCheckpoint, "periodic_checkpoint")
        parser.set_defaults(
            {
                "periodic_checkpoint.every_n_epochs": 5,
                "periodic_checkpoint.save_top_k": -1,
                "periodic_checkpoint.filename": "epoch{epoch:03d}",
                "periodic_checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")

    def before_instantiate_classes(self) -> None:
        """Give a new run a version folder of its own (TensorBoardLogger's own choice races), and
        note what a resumed run's folder holds, so that a failed start can leave it as it was."""
        logger = self.config.trainer.logger
        init = getattr(logger, "init_args", None)
        if init is None or not str(logger.class_path).endswith("TensorBoardLogger"):
            return
        root = Path(init.save_dir or ".") / (init.name or "")
        if init.version is None:
            if rank_zero_only.rank != 0:
                return  # rank 0 claims; Lightning gives every rank its log and checkpoint folder
            self.created_root = not root.exists()
            init.version = claim_version(root)
            self.claimed = True
        version = init.version if isinstance(init.version, str) else f"version_{init.version}"
        self.run_dir = root / version
        self.files_before = set(self.run_dir.rglob("*"))

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except BaseException:
            self.undo_run_folder()
            raise

    def undo_run_folder(self) -> None:
        """After a failure before training began: the run folder as it was before, or none if new."""
        trainer = getattr(self, "trainer", None)
        began = trainer is not None and any(getattr(c, "training_began", False) for c in trainer.callbacks)
        if self.run_dir is None or began:
            return
        if self.claimed:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            if self.created_root:
                with suppress(OSError):  # another run may have made a version there meanwhile
                    self.run_dir.parent.rmdir()
        else:
            # Deepest first, so that a folder is empty when its turn comes.
            for path in sorted(set(self.run_dir.rglob("*")) - self.files_before, reverse=True):
                with suppress(OSError):
                    path.rmdir() if path.is_dir() else path.unlink()
        self.run_dir = None

    def _instantiate_trainer(self, config: dict, callbacks: list) -> Trainer:
        callbacks = [*callbacks, NonFiniteLossGuard(), LatestCheckpoint(), ReplanSchedule()]
        # Switching checkpoints or logging off switches off the callbacks that need them.
        if config.get("enable_checkpointing") is False:
            callbacks = [c for c in callbacks if not isinstance(c, ModelCheckpoint)]
        if config.get("logger") in (False, None):
            callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
        trainer = super()._instantiate_trainer(config, callbacks)
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer


def claim_version(root: Path) -> int:
    """The next free N for `root`/version_N, created here: mkdir fails when another run took it first."""
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(p.name[8:]) for p in root.glob("version_*") if p.name[8:].isdigit()]
    version = max(taken, default=-1) + 1
    while True:
        try:
            (root / f"version_{version}").mkdir()
            return version
        except FileExistsError:
            version += 1


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
    # Lightning's MisconfigurationException is its own users' mistake, e.g. --trainer.max_epochs -5.
    with (
        exit_on_user_error(MisconfigurationException),
        disk_full_as_user_error("the run's checkpoints are whole (each is written whole or not at all)"),
    ):
        cli = CamlitCLI(args=resume_arguments(args))
        try:
            cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.ckpt_path)
        except BaseException:
            cli.undo_run_folder()
            raise
    return cli
