"""Crash safety of checkpoint saves, non-finite losses, and determinism."""

import lightning as L
import pytest
import torch
from conftest import CLASSES, fit_args

from camlit.data.datamodule import CameraDataModule
from camlit.training.callbacks import NonFiniteLossError, NonFiniteLossGuard
from camlit.training.checkpointing import AtomicCheckpointIO
from camlit.training.cli import main
from camlit.training.module import CameraClassifier
from camlit.training.resume import LatestCheckpoint


def test_atomic_save_keeps_the_old_file_when_a_save_dies(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)

    def dies_half_way(obj, file, *args, **kwargs):
        file.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt", "last.ckpt.sha256"]


class BlowsUpAtStep3(CameraClassifier):
    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("inf") if self.global_step >= 3 else loss

    def on_train_batch_end(self, outputs, batch, batch_idx):
        # Mirror what training_step recorded for the doctored loss.
        from camlit.training.callbacks import record_nonfinite

        record_nonfinite(self.first_nonfinite_step, outputs["loss"], self.global_step - 1)


def test_non_finite_loss_stops_with_the_step_and_keeps_the_good_checkpoint(flat_tree, tmp_path):
    datamodule = CameraDataModule(
        str(flat_tree), classes=CLASSES, crop_size=32, batch_size=4, num_workers=0, synthetic_root=None
    )
    model = BlowsUpAtStep3(CLASSES, input_filter="highpass", channels_last=False)
    latest = LatestCheckpoint(dirpath=str(tmp_path / "checkpoints"))
    trainer = L.Trainer(
        max_epochs=5,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[NonFiniteLossGuard(check_every_n_steps=100), latest],
        limit_train_batches=3,
    )
    expected = r"non-finite at step 3; stopped; the last good checkpoint is .*last.ckpt"
    with pytest.raises(NonFiniteLossError, match=expected):
        trainer.fit(model, datamodule=datamodule)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())


def test_same_seed_same_first_losses(flat_tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    losses = []
    for _ in range(2):
        cli = main(
            fit_args(
                flat_tree,
                "--trainer.max_steps",
                "3",
                "--trainer.limit_val_batches",
                "0",
                "--trainer.logger",
                "false",
                "--trainer.enable_checkpointing",
                "false",
                "--data.num_workers",
                "1",
                "--model.channels_last",
                "false",
            )
        )
        losses.append(cli.trainer.callback_metrics["train/loss_step"].item())
        losses.append(cli.model.net.fc.weight.detach().clone())
    assert losses[0] == losses[2]
    assert torch.equal(losses[1], losses[3])


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--trainer.logger", "false", "--trainer.logger false: camlit keeps each run in the logger's"),
        ("--trainer.accumulate_grad_batches", "0", "--trainer.accumulate_grad_batches must be at least 1, got 0"),
        ("--trainer.check_val_every_n_epoch", "0", "--trainer.check_val_every_n_epoch must be at least 1, got 0"),
        ("--trainer.val_check_interval", "0", "--trainer.val_check_interval must be above 0, got 0"),
        # Validation off: best.ckpt was never written, Lightning warning each epoch that val/acc was missing.
        (
            "--trainer.limit_val_batches",
            "0",
            "--trainer.limit_val_batches 0: validation is off, so "
            "--best_checkpoint.monitor val/acc is never logged and the checkpoint it chooses never written",
        ),
        ("--seed_everything", "-1", "--seed_everything must be in [0, 2**32), got -1"),
        ("--data.seed", "-1", "--data.seed must be in [0, 2**32), got -1"),
        ("--trainer.default_root_dir", "afile", "--trainer.default_root_dir afile: a file; name a folder"),
        # A FileExistsError traceback from mkdir.
        ("--trainer.default_root_dir", "gone/runs", "--trainer.default_root_dir gone/runs: gone is a link that leads"),
    ],
)
def test_trainer_options_that_fail_late_or_lose_a_run_are_refused_first(
    flat_tree, tmp_path, monkeypatch, capsys, option, value, message
):
    """Each ended in a traceback (a ZeroDivisionError, numpy's seed range, NotADirectoryError), some
    after a run folder was made; without a logger, a second run wrote over the first's checkpoints."""
    from conftest import one_error_line

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    line = one_error_line(capsys, lambda: main(fit_args(flat_tree, "--trainer.max_epochs", "1", option, value)))
    assert line == f"error: {message}" or line.startswith(f"error: {message}")
    assert sorted(p.name for p in tmp_path.iterdir() if p != flat_tree) == ["afile", "gone"]  # no run folder


def test_validation_may_be_off_where_no_checkpoint_monitors_it(flat_tree, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    off = ("--trainer.limit_val_batches", "0", "--best_checkpoint.monitor", "null")
    main(fit_args(flat_tree, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", *off))
    checkpoints = tmp_path / "lightning_logs" / "version_0" / "checkpoints"
    assert {p.name for p in checkpoints.glob("*.ckpt")} == {"best.ckpt", "last.ckpt"}
