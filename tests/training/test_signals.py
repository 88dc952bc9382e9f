"""SIGTERM, as SLURM and Kubernetes send it, and Ctrl-C: a fit saves where it stopped and exits 143 (130), a second
process cannot run in the same run folder, and a stop before training leaves no run folder."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import CLASSES, fit_args, live_members, one_error_line, start_paused, wait_for

from camlit.termination import EXIT_STATUS
from camlit.training.checkpointing import is_valid_checkpoint
from camlit.training.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("camlit_messages_on_stderr")]

# Kept from a shared run folder's hparams.yaml, it would run code if anything loaded it unsafely.
HOSTILE_HPARAMS = "classes: !!python/object/apply:os.system ['touch {marker}']\n"


def test_sigterm_saves_the_step_and_resume_finishes_the_run(flat_tree, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    version = tmp_path / "lightning_logs" / "version_0"
    last = version / "checkpoints" / "last.ckpt"
    args = fit_args(flat_tree, "--trainer.max_epochs", "3", "--trainer.limit_val_batches", "1")
    process, training = start_paused(
        tmp_path, "camlit.training.module.CameraClassifier.training_step", "camlit.training.cli", args, 0.3
    )
    assert wait_for(last.exists, timeout=240), process.communicate()[1][-2000:]

    # The run folder is taken: a second process is refused, naming the one that holds it.
    line = one_error_line(capsys, lambda: main(["--resume", str(version)]))
    assert f"in use by process {process.pid}" in line

    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == EXIT_STATUS, stderr[-2000:]
    assert "Traceback" not in stderr and "lightning_logs/version_0/checkpoints/last.ckpt at step" in stderr
    assert is_valid_checkpoint(last)
    stopped_at = torch.load(last, weights_only=True)["global_step"]
    assert stopped_at > 0

    marker = tmp_path / "pwned"
    (version / "hparams.yaml").write_text(HOSTILE_HPARAMS.format(marker=marker))
    resumed = main(["--resume", str(version)])
    steps_per_epoch = 3  # 15 training images in batches of 4, the last part batch dropped
    assert resumed.trainer.global_step == 3 * steps_per_epoch > stopped_at
    assert resumed.model.classes == CLASSES
    assert not marker.exists()
    assert [p.name for p in (tmp_path / "lightning_logs").iterdir()] == ["version_0"]


def test_sigterm_before_training_leaves_no_run_folder(flat_tree, tmp_path):
    """A stop while the data is prepared (the cache is built there) undoes the claimed folder."""
    args = fit_args(flat_tree, "--trainer.max_epochs", "1")
    process, preparing = start_paused(
        tmp_path, "camlit.data.datamodule.CameraDataModule.prepare_data", "camlit.training.cli", args, 60
    )
    assert wait_for(preparing.exists, timeout=240), process.communicate()[1][-2000:]
    assert (tmp_path / "lightning_logs" / "version_0").is_dir()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_STATUS, stderr[-2000:]
    assert "Traceback" not in stderr and "before training began" in stderr
    assert not (tmp_path / "lightning_logs").exists()


def test_a_fit_killed_before_it_wrote_anything_leaves_its_folder_to_the_next_run(flat_tree, tmp_path):
    """SIGKILL runs no undo: the claimed folder keeps only the lock, which the next run takes over
    instead of leaving an empty version_0 beside its version_1."""
    args = fit_args(flat_tree, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1")
    process, preparing = start_paused(
        tmp_path, "camlit.data.datamodule.CameraDataModule.prepare_data", "camlit.training.cli", args, 60
    )
    assert wait_for(preparing.exists, timeout=240), process.communicate()[1][-2000:]
    process.kill()
    process.communicate(timeout=60)
    runs = tmp_path / "lightning_logs"
    assert [p.name for p in (runs / "version_0").iterdir()] == [".camlit.lock"]
    rerun = subprocess.run(
        [sys.executable, "-m", "camlit", "fit", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert [p.name for p in runs.iterdir()] == ["version_0"]
    assert (runs / "version_0" / "checkpoints" / "last.ckpt").is_file()


def fit_with_workers(flat_tree, tmp_path, epochs: int, workers: int):
    """(a fit in its own session with loader workers, pausing in each training step; its last.ckpt),
    once the first epoch has saved it."""
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    args = fit_args(flat_tree, "--trainer.max_epochs", str(epochs), "--trainer.limit_val_batches", "1")
    args[args.index("--data.num_workers") + 1] = str(workers)
    process, _ = start_paused(
        tmp_path, "camlit.training.module.CameraClassifier.training_step", "camlit.training.cli", args, 0.3, True
    )
    assert wait_for(last.exists, timeout=240), process.communicate()[1][-2000:]
    return process, last


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl_c"])
def test_a_signal_to_the_whole_process_group_still_saves_the_step(flat_tree, tmp_path, signum):
    """SLURM and `timeout` signal every process of the job, the loader workers too, and so does a
    terminal's Ctrl-C: both stop after the batch and save there."""
    process, last = fit_with_workers(flat_tree, tmp_path, epochs=3, workers=2)
    os.killpg(process.pid, signum)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 128 + signum, stderr[-2000:]
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert f"stopped by {signal.Signals(signum).name}:" in stderr and "last.ckpt at step" in stderr
    assert "Received SIG" not in stderr  # Lightning's echo of the signal, above camlit's line
    assert torch.load(last, weights_only=True)["global_step"] > 0


def test_a_second_ctrl_c_stops_at_once_and_keeps_the_last_whole_checkpoint(flat_tree, tmp_path):
    last = tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    args = fit_args(flat_tree, "--trainer.max_epochs", "3", "--trainer.limit_val_batches", "1")
    process, training = start_paused(
        tmp_path, "camlit.training.module.CameraClassifier.training_step", "camlit.training.cli", args, 2.0
    )
    assert wait_for(last.exists, timeout=240), process.communicate()[1][-2000:]
    saved_at = torch.load(last, weights_only=True)["global_step"]
    # Both land in one paused step, the next to begin: the first asks for a stop after it, the
    # second stops at once.
    training.unlink()
    assert wait_for(training.exists, timeout=240), process.communicate()[1][-2000:]
    process.send_signal(signal.SIGINT)
    time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=240)
    # It exited 1 after Lightning's own "Detected KeyboardInterrupt", or, landing while the first
    # stop unwound, with an 80-line traceback.
    assert process.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert stderr.splitlines()[-1].startswith(
        "stopped by SIGINT: at once, not saved at this step; continue from its last checkpoint with "
    )
    assert is_valid_checkpoint(last) and torch.load(last, weights_only=True)["global_step"] == saved_at


def test_a_killed_loader_worker_is_one_line_naming_the_resume(flat_tree, tmp_path):
    """The OOM killer's usual victim: torch's RuntimeError ended the run in a traceback."""
    process, last = fit_with_workers(flat_tree, tmp_path, epochs=20, workers=1)
    workers = [pid for pid in live_members(process.pid) if pid != process.pid]
    assert workers, "no loader worker to kill"
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 1, stderr[-2000:]
    assert "Traceback" not in stderr
    line = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(line) == 1 and "DataLoader worker (pid" in line[0] and "killed by signal" in line[0]
    assert f"continue with --resume {Path('lightning_logs') / 'version_0'}" in line[0]
    assert is_valid_checkpoint(last)
