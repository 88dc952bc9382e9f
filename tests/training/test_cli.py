import logging

import pytest
import torch
from conftest import CLASSES, events, fit_args, one_error_line

from camlit.training.cli import main
from camlit.training.module import CameraClassifier


def test_fast_dev_run(flat_tree, tmp_path, monkeypatch, recwarn):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["fit.py", *fit_args(flat_tree, "--trainer.fast_dev_run", "true")])
    cli = main()
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert cli.model.classes == CLASSES and cli.model.net.fc.out_features == 3
    assert not [str(w.message) for w in recwarn if "args parameter" in str(w.message)]
    # torch's deprecation of what Lightning's combined loader builds: nothing a user can act on.
    assert not [str(w.message) for w in recwarn if "LeafSpec" in str(w.message)]


def test_fit_writes_logs_checkpoints_and_resumes_in_place(flat_tree, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    cli = main(
        fit_args(
            flat_tree,
            "--trainer.max_epochs",
            "2",
            "--periodic_checkpoint.every_n_epochs",
            "1",
            "--data.val_manipulations",
            "[jpeg70, resize0.5]",
        )
    )
    version = tmp_path / "lightning_logs" / "version_0"
    assert (version / "config.yaml").is_file()
    names = sorted(p.name for p in (version / "checkpoints").glob("*.ckpt"))
    assert names == ["best.ckpt", "epoch000.ckpt", "epoch001.ckpt", "last.ckpt"]
    assert sorted(p.name for p in (version / "checkpoints").glob("*.sha256")) == [n + ".sha256" for n in names]
    steps_after_first_run = cli.trainer.global_step
    logged = events(version)
    assert {
        "train/loss_step",
        "train/acc",
        "val/acc",
        "val/loss",
        "val/acc_class/HTC-1-M7",
        "val/acc/unaltered",
        "val/acc/jpeg70",
        "val/acc/resize0.5",
        "val/acc_weighted",
    } <= set(logged.Tags()["scalars"])
    assert {"val/confusion_matrix", "train/crops"} <= set(logged.Tags()["images"])
    assert "hp_metric" not in logged.Tags()["scalars"]

    restored = CameraClassifier.load_from_checkpoint(version / "checkpoints" / "last.ckpt")
    assert restored.classes == CLASSES and restored.hparams.input_filter == "highpass"

    resumed = main(["--resume", str(version), "--trainer.max_epochs", "3"])
    assert sorted(p.name for p in (tmp_path / "lightning_logs").iterdir()) == ["version_0"]
    assert resumed.trainer.current_epoch == 3
    assert resumed.trainer.global_step > steps_after_first_run
    checkpoint = torch.load(version / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == resumed.trainer.global_step and checkpoint["epoch"] == 2
    loss_steps = [event.step for event in events(version).Scalars("train/loss_step")]
    assert loss_steps == sorted(loss_steps) and len(set(loss_steps)) == len(loss_steps)

    reordered = str([CLASSES[1], CLASSES[0], CLASSES[2]]).replace("'", "")
    with pytest.raises(SystemExit) as exit_info:
        main(["--resume", str(version), "--trainer.max_epochs", "4", "--data.classes", reordered])
    assert exit_info.value.code == 2
    assert "the checkpoint was trained on classes HTC-1-M7, LG-Nexus-5x" in capsys.readouterr().err


def test_missing_data_says_how_to_get_some(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"), pytest.raises(SystemExit) as exit_info:
        main(fit_args(tmp_path / "nowhere", "--trainer.max_epochs", "1"))
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert exit_info.value.code == 2 and len(errors) == 1 and "Traceback" not in stderr
    assert "nowhere: no such folder" in errors[0] and "demo.yaml" in errors[0]
    # Lightning's start-up lines wait for training, which never began; so does its advert, for good.
    messages = [record.getMessage() for record in caplog.records]
    assert not any("GPU available" in m or "litlogger" in m for m in messages)


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        # Rejected by the parser: its usage text, then one error line.
        ("--model.optimizer", "rmsprop", "--model.optimizer: expected one of adam, adamw, sgd, got rmsprop"),
        ("--model.schedule", "step", "--model.schedule: expected one of none, cosine, onecycle, got step"),
        ("--data.crop_size", "big", "--data.crop_size: expected an integer, got big"),
        # Rejected by camlit or Lightning: just the error line.
        ("--data.crop_size", "-3", "--data.crop_size must be at least 4, got -3"),
        ("--data.load_ratio", "0", "--data.load_ratio must be in (0, 1], got 0.0"),
        ("--data.manipulation_p", "2", "--data.manipulation_p must be in [0, 1], got 2.0"),
        ("--model.lr", "-0.1", "--model.lr must be above 0 and at most 3.4e+38, got -0.1"),
        # Numbers too large for what reads them: tracebacks, one after the run folder was made.
        ("--model.lr", "1e300", "--model.lr must be above 0 and at most 3.4e+38, got 1e+300"),
        (
            "--data.manipulation_weights",
            "{jpeg70: 1e308, jpeg90: 1e308}",
            "--data.manipulation_weights: weights must be 0 or more, not all 0, and add up to a finite number",
        ),
        ("--data.crops_per_image", str(10**20), "--data.crops_per_image must be at least 1 and below 2**31, got 1"),
        ("--data.batch_size", str(10**20), "--data.batch_size must be at least 2 (batch norm needs 2 crops) and at"),
        ("--model.label_smoothing", "1", "--model.label_smoothing must be in [0, 1), got 1.0"),
        ("--data.classes", "[]", "--data.classes: empty class list"),
        ("--data.classes", "[HTC-1-M7]", "--data.classes: only 'HTC-1-M7'; one class is no classification"),
        ("--data.batch_size", "1", "--data.batch_size must be at least 2 (batch norm needs 2 crops)"),
        ("--trainer.max_epochs", "-5", "`max_epochs` must be a non-negative integer or -1. You passed in -5."),
        # Checkpoint options that lost checkpoints: `link` made last.ckpt a link, and the next
        # last.ckpt overwrote best.ckpt through it; a path put best.ckpt outside the run.
        ("--best_checkpoint.save_last", "link", "--best_checkpoint.save_last link: camlit writes last.ckpt itself"),
        # Tracebacks: a half-precision network fed float32 crops, Lightning's sampler in place of
        # camlit's, a validation interval longer than the epoch (found once the data was loaded).
        ("--trainer.precision", "16-true", "--trainer.precision 16-true: camlit trains in 32-true, 64-true"),
        ("--trainer.precision", "transformer-engine", "--trainer.precision transformer-engine: camlit trains in"),
        ("--trainer.overfit_batches", "1", "--trainer.overfit_batches 1: not with camlit's crop sampler"),
        ("--trainer.accelerator", "tpu", "--trainer.accelerator tpu: camlit trains on auto, cpu, gpu, cuda, mps"),
        # Trained in children; the launching process saw no training and removed the trained run.
        ("--trainer.strategy", "ddp_spawn", "--trainer.strategy ddp_spawn: starts its processes with spawn"),
        ("--trainer.strategy", "ddp_notebook", "--trainer.strategy ddp_notebook: starts its processes with fork"),
        (
            "--trainer.strategy",
            '{"class_path": "lightning.pytorch.strategies.DDPStrategy", "init_args": {"start_method": "fork"}}',
            "--trainer.strategy lightning.pytorch.strategies.DDPStrategy: starts its processes with fork",
        ),
        # Its head for manipulated photos never trained, and predict used it as initialised.
        ("--model.manipulation_flag", "true", "--model.manipulation_flag: no training crop is manipulated"),
        ("--trainer.val_check_interval", "50", "--trainer.val_check_interval: `val_check_interval` (50) must be"),
        ("--periodic_checkpoint.filename", "last", "--periodic_checkpoint.filename last: the name of the checkpoint"),
        ("--best_checkpoint.filename", "../../../escape", "--best_checkpoint.filename ../../../escape: a path"),
        ("--best_checkpoint.dirpath", "elsewhere", "--best_checkpoint.dirpath elsewhere: checkpoints stay in the run"),
        ("--best_checkpoint.filename", "best{", "--best_checkpoint.filename best{: not a name Lightning can fill in"),
        # One name for both: `-v1` files, and which was the best hung on the order they saved in.
        (
            "--periodic_checkpoint.filename",
            "best",
            "--periodic_checkpoint.filename best: names its checkpoints as --best_checkpoint",
        ),
        # Logs where the run's --resume cannot follow, or outside lightning_logs; a traceback.
        ("--trainer.logger.init_args.sub_dir", "sub", "--trainer.logger.init_args.sub_dir sub: a run's logs stay"),
        ("--trainer.logger", "CSVLogger", "--trainer.logger: lightning.pytorch.loggers.CSVLogger; camlit keeps each"),
        (
            "--trainer.logger",
            '[{"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"sub_dir": "sub"}}]',
            "--trainer.logger: a list of loggers; camlit keeps each run in one TensorBoardLogger's version folder",
        ),
        ("--trainer.logger.init_args.version", "../../vesc", "--trainer.logger.init_args.version ../../vesc: a path"),
        ("--trainer.logger.init_args.name", "../up", "--trainer.logger.init_args.name ../up: leads out of the save"),
        ("--trainer.logger.init_args.filename_suffix", "/x", "--trainer.logger.init_args.filename_suffix /x: a path"),
    ],
)
def test_bad_option_is_one_error_line(flat_tree, tmp_path, monkeypatch, capsys, flag, value, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(flat_tree, flag, value))
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert exit_info.value.code == 2 and "Traceback" not in stderr
    assert len(errors) == 1 and message in errors[0]
    assert not (tmp_path / "lightning_logs").exists()


def test_two_checkpoint_names_that_give_the_same_files_are_refused(flat_tree, tmp_path, monkeypatch, capsys):
    """`epoch{epoch:03}` for best.ckpt beside the periodic `epoch{epoch:03d}`: `-v1` files."""
    monkeypatch.chdir(tmp_path)
    same = ("--best_checkpoint.filename", "epoch{epoch:03}", "--best_checkpoint.auto_insert_metric_name", "false")
    line = one_error_line(capsys, lambda: main(fit_args(flat_tree, *same)))
    assert "names its checkpoints as --best_checkpoint.filename epoch{epoch:03} does (epoch000.ckpt at epoch 0)" in line
    assert not (tmp_path / "lightning_logs").exists()


def test_a_warmup_longer_than_the_run_warms_up_over_the_whole_run(flat_tree, tmp_path, monkeypatch):
    """--model.warmup_epochs 1e308 overflowed (int of an infinite step count) as the run began."""
    monkeypatch.chdir(tmp_path)
    options = ["--model.schedule", "cosine", "--model.warmup_epochs", "1e308", "--trainer.max_epochs", "1"]
    cli = main(fit_args(flat_tree, *options, "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"))
    scheduler = cli.trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.lr_lambdas[0].warmup == scheduler.lr_lambdas[0].total - 1


def test_fit_with_the_manipulation_head_logs_its_loss_and_accuracy(manipulation_tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = ["--model.manipulation_head_weight", "0.1", "--data.manipulation_p", "0.5", "--data.val_fraction", "0.25"]
    cli = main(fit_args(manipulation_tree, "--trainer.max_epochs", "1", *options))
    assert cli.model.manipulation_fc.out_features == 9
    logged = set(events(tmp_path / "lightning_logs" / "version_0").Tags()["scalars"])
    assert {"train/loss_manipulation_step", "val/acc_manipulation", "val/acc/jpeg70"} <= logged
