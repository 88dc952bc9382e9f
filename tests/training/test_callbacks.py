"""Stopping a run: a SIGTERM during validation lets that validation finish first."""

import os
import signal

import pytest
import torch
from conftest import events, fit_args

from camlit.training.cli import main
from camlit.training.module import CameraClassifier


def test_a_sigterm_during_validation_finishes_it_and_the_resume_goes_on(flat_tree, tmp_path, monkeypatch):
    """Lightning stopped the validation after the batch the signal came in; the resumed run went on
    with the next epoch, so that epoch was never validated nor a candidate for best.ckpt."""
    monkeypatch.chdir(tmp_path)
    step = CameraClassifier.validation_step
    signalled = []

    def validation_step_under_sigterm(self, *args, **kwargs):
        if not self.trainer.sanity_checking and not signalled:
            signalled.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
        return step(self, *args, **kwargs)

    monkeypatch.setattr(CameraClassifier, "validation_step", validation_step_under_sigterm)
    args = fit_args(flat_tree, "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2")
    args[args.index("--data.batch_size") + 1] = "2"  # several validation batches: the first is not the last
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 143
    version = tmp_path / "lightning_logs" / "version_0"
    assert [event.step for event in events(version).Scalars("val/acc")] == [1]
    assert torch.load(version / "checkpoints" / "best.ckpt", weights_only=True)["epoch"] == 0
    monkeypatch.setattr(CameraClassifier, "validation_step", step)
    resumed = main(["--resume", str(version)])
    assert resumed.trainer.current_epoch == 2
    assert [event.step for event in events(version).Scalars("val/acc")] == [1, 3]
