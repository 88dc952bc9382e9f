"""`camlit fit`: LightningCLI around CameraClassifier and CameraDataModule.

A new run claims its own version folder under `--trainer.default_root_dir` (default: here); a run
that fails before training leaves the folder as it was. One process at a time runs in a run folder
(camlit.training.runfolder). `--resume lightning_logs/version_N` continues a run: see
camlit.training.resume. SIGTERM or Ctrl-C saves where training stopped and exits 143 or 130
(camlit.termination).
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
from contextlib import suppress
from pathlib import Path

import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.trainer.trainer import Trainer
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from camlit.atomic import make_folders
from camlit.data.datamodule import CameraDataModule
from camlit.errors import (
    CamlitError,
    OneLineErrors,
    disk_full_as_user_error,
    exit_on_user_error,
    lightning_deprecation_ignored,
    underscored,
)
from camlit.termination import SigtermWatch, exit_terminated, interrupt_handled, on_sigterm, speaks_for_the_run
from camlit.training.callbacks import (
    CheckpointOnSigterm,
    NonFiniteLossGuard,
    RanksMet,
    RequireMonitoredMetric,
    peer_lost,
    require_options_fit_the_folders,
    say_if_out_of_time,
    stopped_by_sigterm,
    worker_killed,
)
from camlit.training.checkpointing import AtomicCheckpointIO, load_plain, require_checkpoint_files
from camlit.training.config_base import NamedConfigErrors, expand_config_bases
from camlit.training.messages import ShowStartupLines, StartupLines, fit_messages
from camlit.training.module import CameraClassifier
from camlit.training.precision import default_precision
from camlit.training.resume import (
    LatestCheckpoint,
    ReplanSchedule,
    RunCheckpoint,
    require_same_network,
    resume_arguments,
    resume_target,
)
from camlit.training.runconfig import DEFAULT_LOGGER, record_data_paths, resume_command
from camlit.training.runfolder import RunLock, claim_version, writable
from camlit.training.trainer_options import (
    refuse_checkpoint_options,
    refuse_logger_options,
    refuse_trainer_options,
    trainer_mistakes_as_user_errors,
)
from camlit.workers import launching_ranks

STOPPED_BEFORE_TRAINING = "before training began; the run folder is as it was (a new one is removed)"


class SaveConfigOnceTraining(SaveConfigCallback):
    """Writes config.yaml when training starts, after a resumed checkpoint has been restored.

    A resume whose overrides do not fit the checkpoint then leaves the run's config as it was.
    """

    training_began = False

    def setup(self, trainer: Trainer, pl_module, stage: str) -> None:
        self.stage = stage

    def on_train_start(self, trainer: Trainer, pl_module) -> None:
        self.training_began = True
        # How this run was started, not its options: a saved config given as --config carried the
        # checkpoint it was resumed from, and the step from which TensorBoard hid what was logged.
        self.config = self.config.clone()
        self.config.resume = self.config.ckpt_path = None
        logger = self.config.trainer.logger
        if getattr(logger, "init_args", None) is not None and "purge_step" in logger.init_args:
            logger.init_args.purge_step = None
        super().setup(trainer, pl_module, self.stage)


class CamlitArgumentParser(NamedConfigErrors, OneLineErrors, LightningArgumentParser):
    """Lightning's parser, ending a mistake in one `error:` line as every camlit command does,
    naming the config file where the mistake is in one."""


class CamlitCLI(LightningCLI):
    def __init__(
        self,
        args: list[str] | None = None,
        sigterm: SigtermWatch | None = None,
        startup_lines: StartupLines | None = None,
        **kwargs,
    ):
        self.run_dir: Path | None = None
        self.files_before: set[Path] = set()
        self.claimed = False
        self.created_folders: list[Path] = []  # the root's folders this run made, deepest first
        self.lock: RunLock | None = None
        self.sigterm = sigterm or SigtermWatch()
        self.startup_lines = startup_lines
        super().__init__(
            CameraClassifier,
            CameraDataModule,
            parser_class=CamlitArgumentParser,
            parser_kwargs={"prog": "camlit fit"},
            run=False,
            args=args,
            seed_everything_default=0,
            save_config_callback=SaveConfigOnceTraining,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={
                "precision": None,  # set from the accelerator once it is parsed
                "benchmark": torch.cuda.is_available(),
                "max_epochs": 30,
                "log_every_n_steps": 10,
                "logger": DEFAULT_LOGGER,
            },
            **kwargs,
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: list[str]) -> None:
        # main() passes the whole command line, so there is no mix of `args` and sys.argv for
        # LightningCLI to warn about.
        resolved = resume_arguments(args)
        self.config = parser.parse_args(resolved)
        from_file = "--resume" if self.config.resume else "--ckpt_path" if self.config.ckpt_path else None
        if from_file and resume_target(args) is None:
            # Named in a --config file: the checks and the run they name on the command line. Read
            # as it was, `resume:` started a new run, and a run's earlier checkpoint trained over its later ones.
            value = self.config.resume or self.config.ckpt_path
            resolved = resume_arguments([*args, from_file, value])
            self.config = parser.parse_args(resolved)
        if self.config.trainer.logger is True:
            # Lightning's TensorBoardLogger, made where camlit's lock and --resume could not follow.
            self.config = parser.parse_args([*resolved, "--trainer.logger", json.dumps(DEFAULT_LOGGER)])
        if self.config.trainer.precision is None:
            self.config.trainer.precision = default_precision(self.config.trainer.accelerator)
        refuse_trainer_options(self.config)  # before LightningCLI seeds, makes a run folder or trains
        refuse_checkpoint_options(self.config)
        refuse_logger_options(self.config)
        record_data_paths(self.config)  # config.yaml then names the same data from any folder

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--resume", type=str | None, default=None,
            help="continue a run: its folder (lightning_logs/version_N), or one of its checkpoints; the run's "
            "config.yaml (plain values only) gives the options, and the options given here override them",
        )  # fmt: skip
        parser.add_argument("--ckpt_path", type=str | None, default=None, help="checkpoint to continue from")
        parser.link_arguments("data.classes", "model.classes")
        # Plain argument groups, not Lightning callback arguments: instantiate_trainer decides
        # which of them the run gets.
        parser.add_class_arguments(RunCheckpoint, "best_checkpoint", fail_untyped=False, sub_configs=True)
        parser.set_defaults(
            {
                "best_checkpoint.monitor": "val/acc",
                "best_checkpoint.mode": "max",
                "best_checkpoint.filename": "best",
                "best_checkpoint.enable_version_counter": False,
            }
        )
        # The seed notebook saved the model every 5 epochs; keep every one of those.
        parser.add_class_arguments(RunCheckpoint, "periodic_checkpoint", fail_untyped=False, sub_configs=True)
        parser.set_defaults(
            {
                "periodic_checkpoint.every_n_epochs": 5,
                "periodic_checkpoint.save_top_k": -1,
                "periodic_checkpoint.filename": "epoch{epoch:03d}",
                "periodic_checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_class_arguments(LearningRateMonitor, "lr_monitor", fail_untyped=False, sub_configs=True)

    def before_instantiate_classes(self) -> None:
        """Give a new run a version folder of its own (TensorBoardLogger's own choice races), lock
        the run's folder, and note what it holds, so that a failed start can leave it as it was."""
        logger = self.config.trainer.logger
        init = getattr(logger, "init_args", None)
        if init is None or not str(logger.class_path).endswith("TensorBoardLogger"):
            return
        if init.save_dir in (None, ".") and self.config.trainer.default_root_dir:
            init.save_dir = self.config.trainer.default_root_dir
        if rank_zero_only.rank != 0:
            return  # rank 0 claims and locks; Lightning gives every rank its log and checkpoint folder
        root = Path(init.save_dir) / (init.name or "")
        if init.version is None:
            # --trainer.default_root_dir new/runs: each of new/runs/lightning_logs goes again on a failed start.
            init.version, self.created_folders, self.lock = claim_version(root)
            self.claimed = True
        version = init.version if isinstance(init.version, str) else f"version_{init.version}"
        run_dir = root / version
        if not self.claimed and self.config.ckpt_path is None and any((run_dir / "checkpoints").glob("*.ckpt")):
            # A new run there would write over the run's checkpoints and config.yaml, and a saved
            # config.yaml given as --config names its run's version.
            raise CamlitError(
                f"--trainer.logger.init_args.version {init.version}: {run_dir} holds a run's checkpoints; "
                f"continue it with --resume {run_dir}, or leave the version out for a new run folder"
            )
        require_checkpoint_files(run_dir / "checkpoints")  # a --ckpt_path inside the run, too
        with writable(root, "--trainer.default_root_dir"):
            made = make_folders(run_dir)  # a version named on the command line
        if not run_dir.is_dir():
            raise CamlitError(
                f"--trainer.logger.init_args.version {init.version}: {run_dir} is not a folder; name another"
            )
        self.run_dir = run_dir
        self.created_folders = self.created_folders or made
        # Before the lock (a claimed version holds it already): a failed start takes it away with
        # what else it added, and the folder if it made it.
        self.files_before = set(self.run_dir.rglob("*"))
        self.lock = self.lock or RunLock(self.run_dir)

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except BaseException:
            self.undo_run_folder(failed=True)
            self.release()
            raise

    def instantiate_trainer(self, **kwargs) -> Trainer:
        """The Trainer with camlit's callbacks and its atomic, hashed checkpoint writer."""
        trainer = self.config_init["trainer"]
        callbacks = as_list(trainer.get("callbacks"))
        callbacks += [
            NonFiniteLossGuard(),
            ReplanSchedule(),
            CheckpointOnSigterm(self.sigterm),
            RequireMonitoredMetric(),
            RanksMet(),
        ]
        if self.startup_lines is not None:
            callbacks.append(ShowStartupLines(self.startup_lines))
        # Switching checkpoints or logging off switches off the callbacks that need them.
        if trainer.get("enable_checkpointing") is not False:
            callbacks += [self.config_init["best_checkpoint"], self.config_init["periodic_checkpoint"]]
            callbacks.append(LatestCheckpoint())
        if trainer.get("logger") not in (False, None):
            callbacks.append(self.config_init["lr_monitor"])
        plugins = [*as_list(trainer.get("plugins")), AtomicCheckpointIO(self.run_dir)]
        return super().instantiate_trainer(callbacks=callbacks, plugins=plugins, **kwargs)

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def stopped(self) -> str:
        """What a SIGTERM left behind, for the line printed as the run exits."""
        saved = [c.saved for c in self.callbacks() if isinstance(c, CheckpointOnSigterm) and c.saved]
        if saved:
            step = self.trainer.global_step
            return f"saved {saved[0]} at step {step}; continue with {self.resume_command(Path(saved[0]).parent.parent)}"
        if self.training_began():
            return f"no checkpoint saved (checkpointing is off); the run's logs are in {self.run_dir}"
        return STOPPED_BEFORE_TRAINING

    def stopped_at_once(self) -> str:
        """What a second Ctrl-C, which stops without saving, left behind."""
        if self.run_dir is not None and any((self.run_dir / "checkpoints").glob("*.ckpt")):
            return f"at once, not saved at this step; continue from its last checkpoint with {self.resume_command()}"
        return "at once, before its first checkpoint; nothing kept"

    def resume_command(self, run_dir: Path | None = None) -> str:
        return resume_command(run_dir or self.run_dir, self.config)

    def callbacks(self) -> list:
        trainer = getattr(self, "trainer", None)
        return trainer.callbacks if trainer is not None else []

    def checkpointing(self) -> bool:
        trainer = getattr(self, "trainer", None)
        return trainer is not None and trainer.checkpoint_callback is not None

    def training_began(self) -> bool:
        return any(getattr(c, "training_began", False) for c in self.callbacks())

    def undo_run_folder(self, failed: bool = False) -> None:
        """After a failure before training began: the run folder as it was before, or none if new.
        A new run that failed before its first checkpoint leaves none either: nothing in it could be
        resumed (`--resume` found no checkpoint), and the next run took version_N+1 beside it."""
        if self.run_dir is None:
            return
        # (A folder moved away mid-run is not removed: the error names it.)
        # With checkpointing off the run's logs are all it makes: a run that trained keeps them.
        nothing_saved = (
            failed
            and self.claimed
            and self.checkpointing()
            and self.run_dir.is_dir()
            and not any((self.run_dir / "checkpoints").glob("*.ckpt"))
        )
        if self.training_began() and not nothing_saved:
            return
        if self.claimed:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            for folder in self.created_folders:
                with suppress(OSError):  # another run may have made a version there meanwhile
                    folder.rmdir()
        else:
            # Deepest first, so that a folder is empty when its turn comes.
            for path in sorted(set(self.run_dir.rglob("*")) - self.files_before, reverse=True):
                with suppress(OSError):
                    path.rmdir() if path.is_dir() else path.unlink()
            for folder in self.created_folders:
                with suppress(OSError):  # not empty: something else is there, and stays
                    folder.rmdir()
        self.run_dir = None


def second_interrupt(watch: SigtermWatch, exception: BaseException) -> bool:
    """Whether a second Ctrl-C ended the run: its KeyboardInterrupt, or Lightning's exit(1) after
    its own handling of it (which printed no line of camlit's and exited 1)."""
    if not watch.received or watch.signum != signal.SIGINT:
        return False
    return isinstance(exception, KeyboardInterrupt) or (isinstance(exception, SystemExit) and exception.code == 1)


def as_list(value) -> list:
    return [] if value is None else list(value) if isinstance(value, list) else [value]


def main(args: list[str] | None = None) -> CamlitCLI:
    """Train; `args` as on the command line. Input mistakes exit with one line, status 2; SIGTERM
    and Ctrl-C with one line and status 143 or 130."""
    # Spelt as camlit spells options before --resume, the run's config.yaml or a stop line reads them.
    args = underscored(list(sys.argv[1:] if args is None else args))
    cli: CamlitCLI | None = None
    with fit_messages() as startup_lines, on_sigterm() as sigterm, interrupt_handled(sigterm):
        try:
            # Lightning's MisconfigurationException is its own users' mistake, e.g. --trainer.max_epochs -5.
            with (
                lightning_deprecation_ignored(),
                exit_on_user_error(MisconfigurationException),
                disk_full_as_user_error("the run's checkpoints are whole (each is written whole or not at all)"),
            ):
                cli = CamlitCLI(args=expand_config_bases(args), sigterm=sigterm, startup_lines=startup_lines)
                try:
                    if cli.config.ckpt_path:
                        # Before the data work (a synthetic set generated, a cache built), which the
                        # Trainer does first; on_load_checkpoint asks again for other callers.
                        require_same_network(cli.model, load_plain(Path(cli.config.ckpt_path), mmap=True))
                    require_options_fit_the_folders(cli.trainer, cli.model, cli.datamodule)
                    with launching_ranks(), trainer_mistakes_as_user_errors():
                        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.ckpt_path)
                except BaseException:
                    cli.undo_run_folder(failed=True)
                    raise
                # A run that never trained (--trainer.max_epochs 0) leaves no folder without a config.
                cli.undo_run_folder()
                say_if_out_of_time(cli.trainer)
        except BaseException as exception:
            moved = cli is not None and cli.run_dir is not None and not cli.run_dir.is_dir()
            if moved and not isinstance(exception, SystemExit):
                # The checkpoint save refuses to make it again; the logger then fails on its file.
                print(f"error: {cli.run_dir}: moved or removed while the run wrote into it", file=sys.stderr)
                raise SystemExit(1) from None
            stopped = stopped_by_sigterm(sigterm, exception)
            if not stopped and second_interrupt(sigterm, exception):
                exit_terminated(cli.stopped_at_once() if cli is not None else STOPPED_BEFORE_TRAINING, signal.SIGINT)
            if not stopped and (worker_killed(exception) or peer_lost(exception)):
                # The OOM killer's usual victim: torch's RuntimeError came with a traceback. In
                # another rank it is the first that says so, once, for the run it holds.
                if not speaks_for_the_run():
                    raise SystemExit(1) from None
                kept = f"continue with {cli.resume_command()}" if cli is not None and cli.run_dir else "nothing kept"
                cause = str(exception) if worker_killed(exception) else "another process of the DDP run ended"
                print(
                    f"error: {cause}; out of memory? The run's checkpoints are as last saved; {kept}", file=sys.stderr
                )
                raise SystemExit(1) from None
            if not stopped:
                raise
            exit_terminated(cli.stopped() if cli is not None else STOPPED_BEFORE_TRAINING, sigterm.signum)
        finally:
            if cli is not None:
                cli.release()
    return cli
